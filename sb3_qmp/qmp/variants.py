"""QMP's ablations of the Q-switch (paper section 6.4): task-blind and state-blind mixtures."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from sb3_qmp.mtsac.mtsac import MultiTaskSAC


class QMPUniform(MultiTaskSAC):
    """QMP-Uniform: at every step the acting policy for task i is drawn uniformly from all T policies.

    Task-blind and state-blind: it shares behaviour as much as possible, which tests whether the Q-switch's
    *selectivity* matters. Collected transitions still go to task i's buffer with task i's reward.
    All arguments are those of :class:`~sb3_qmp.mtsac.MultiTaskSAC`; ``collector_kwargs`` may set
    ``commit_steps`` and ``own_prob`` (see :class:`~sb3_qmp.qmp.mixtures.UniformCollector`).

    :param policy: the policy (``"MlpPolicy"``) or a multi-task env (meaning ``"MlpPolicy"``).
    :param env: the multi-task environment.
    :param kwargs: the other keyword arguments of :class:`~sb3_qmp.mtsac.MultiTaskSAC`.
    """

    default_collector: ClassVar[str] = "uniform"


class QMPDomain(MultiTaskSAC):
    """QMP-Domain: the acting policy for task i is drawn from row i of a fixed T x T matrix (domain knowledge).

    State-blind but task-selective. The matrix is given either as ``mixture=...`` or as
    ``collector_kwargs=dict(matrix=...)``: a T x T row-stochastic array (entry ``[i, j]`` = probability
    that policy j acts while collecting for task i) or a preset name from
    :data:`sb3_qmp.common.presets.MIXTURE_PRESETS` (``"reacher_domain"`` = the paper's Reacher matrix).
    It is validated when the model is built (shape, non-negative, rows sum to 1), and the validated matrix
    (not a preset name) replaces ``collector_kwargs["matrix"]`` as a nested list of floats: a saved model
    keeps its matrix even if a preset is edited later.

    :param policy: the policy (``"MlpPolicy"``) or a multi-task env (meaning ``"MlpPolicy"``).
    :param env: the multi-task environment.
    :param mixture: the mixture matrix or preset name (shortcut for ``collector_kwargs["matrix"]``).
    :param kwargs: the other keyword arguments of :class:`~sb3_qmp.mtsac.MultiTaskSAC`.
    """

    default_collector: ClassVar[str] = "fixed"

    def __init__(
        self,
        policy: Any = "MlpPolicy",
        env: Any = None,
        mixture: str | np.ndarray | list[list[float]] | None = None,
        **kwargs: Any,
    ) -> None:
        collector_kwargs = dict(kwargs.pop("collector_kwargs", None) or {})
        if mixture is not None:
            if "matrix" in collector_kwargs:
                raise ValueError("Give the mixture matrix once: either mixture=... or collector_kwargs=dict(matrix=...).")
            collector_kwargs["matrix"] = mixture
        if kwargs.get("_init_setup_model", True) and collector_kwargs.get("matrix") is None:
            raise ValueError(
                "QMPDomain needs a fixed mixture matrix: pass mixture=<T x T row-stochastic matrix or preset name, "
                "e.g. 'reacher_domain'> (or collector_kwargs=dict(matrix=...))."
            )
        super().__init__(policy, env, collector_kwargs=collector_kwargs, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        # Store the numbers, not the preset name: what is saved must not change with the presets module.
        self.collector_kwargs["matrix"] = self.mixture.tolist()

    @property
    def mixture(self) -> np.ndarray:
        """The validated T x T mixture matrix in use."""
        return self.collector.matrix  # type: ignore[attr-defined]
