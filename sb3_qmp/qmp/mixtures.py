"""The task-blind and state-blind mixtures of the paper's ablations: QMP-Uniform and QMP-Domain."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th

from sb3_qmp.common.collectors import Collector, register_collector
from sb3_qmp.common.interfaces import MixtureNetworks, Proposals
from sb3_qmp.common.presets import MIXTURE_PRESETS


@register_collector
class UniformCollector(Collector):
    """QMP-Uniform: the acting policy is drawn uniformly from all T policies."""

    name = "uniform"

    def _decide(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> th.Tensor:
        return th.randint(self.num_tasks, tasks.shape, device=tasks.device, generator=self._generator(tasks.device))


def check_mixture_matrix(matrix: Any, num_tasks: int) -> np.ndarray:
    """Validate a T x T behaviour-mixture matrix whose rows are probability vectors."""
    if isinstance(matrix, str):
        if matrix not in MIXTURE_PRESETS:
            raise ValueError(f"Unknown mixture preset {matrix!r}; known presets: {sorted(MIXTURE_PRESETS)}.")
        matrix = MIXTURE_PRESETS[matrix]
    try:
        arr = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"The mixture matrix must be a {num_tasks} x {num_tasks} array of numbers (tasks x policies); got {matrix!r}."
        ) from e
    if arr.shape != (num_tasks, num_tasks):
        raise ValueError(f"The mixture matrix must be {num_tasks} x {num_tasks} (tasks x policies), got {arr.shape}.")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError("The mixture matrix must hold finite, non-negative probabilities.")
    bad = np.flatnonzero(~np.isclose(arr.sum(axis=1), 1.0, atol=1e-6))
    if bad.size:
        raise ValueError(
            f"Every row of the mixture matrix must sum to 1; rows {bad.tolist()} sum to {arr.sum(axis=1)[bad].tolist()}."
        )
    return arr


@register_collector
class FixedMixtureCollector(Collector):
    """QMP-Domain: the acting policy for task i is drawn from row i of a fixed matrix.

    :param num_tasks: number of tasks T.
    :param matrix: T x T row-stochastic matrix (entry ``[i, j]`` = probability that policy j acts
        for task i), or the name of a preset (see :data:`sb3_qmp.common.presets.MIXTURE_PRESETS`).
    :param commit_steps: keep a choice for this many steps.
    :param own_prob: probability that a decision picks the row's own policy.
    :param warmup_steps: env steps of own-policy collection before the mixture starts.
    """

    name = "fixed"

    def __init__(
        self, num_tasks: int, matrix: Any = None, commit_steps: int = 1, own_prob: float = 0.0, warmup_steps: int = 0
    ) -> None:
        super().__init__(num_tasks, commit_steps, own_prob, warmup_steps)
        if matrix is None:
            raise ValueError("The 'fixed' collector needs collector_kwargs=dict(matrix=...) (a T x T matrix or preset).")
        self.matrix = check_mixture_matrix(matrix, num_tasks)
        self._probs = th.as_tensor(self.matrix, dtype=th.float32)

    def _decide(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> th.Tensor:
        probs = self._probs.to(tasks.device)[tasks]
        return th.multinomial(probs, 1, generator=self._generator(tasks.device)).squeeze(1)
