"""The Q-switch: QMP's rule for which task's policy acts while collecting data for a task."""

from __future__ import annotations

from typing import Any

import torch as th

from sb3_qmp.common.collectors import Collector, register_collector
from sb3_qmp.common.interfaces import MixtureNetworks, Proposals


@register_collector
class QSwitchCollector(Collector):
    """QMP's Q-switch: every task's policy proposes an action, the row's task critic scores the proposals,
    and the best-scoring proposal acts: ``j = argmax_j Q_i(s, a_j)`` for a row of task ``i``.

    A proposal (or its score) that is not finite never wins; a row without a finite one acts with its own
    policy. Ties go to the lowest policy index (``torch.argmax``). Commitment, the own-policy probability
    and the warm-up come from :class:`~sb3_qmp.common.collectors.Collector`; the switch margin and the
    adaptive switch are subclasses in :mod:`sb3_qmp.qmp.qswitch_variants`, chosen by their options.

    :param num_tasks: number of tasks T.
    :param score: which proposals the critic scores: ``"mean"`` (each policy's deterministic action, as the
        authors' code) or ``"sample"`` (a sampled action, as the paper's formula). The executed action is
        always the winner's *sampled* action, so exploration is SAC's.
    :param critic_reduce: ``"q1"`` (first critic, as the authors' code) or ``"min"`` (min of the critics).
    :param kwargs: ``commit_steps``, ``own_prob``, ``warmup_steps`` of :class:`~sb3_qmp.common.collectors.Collector`.
    """

    name = "qswitch"
    needs_proposals = True

    def __init__(self, num_tasks: int, score: str = "mean", critic_reduce: str = "q1", **kwargs: Any) -> None:
        super().__init__(num_tasks, **kwargs)
        if score not in ("mean", "sample"):
            raise ValueError(f"score must be 'mean' or 'sample', got {score!r}.")
        if critic_reduce not in ("q1", "min"):
            raise ValueError(f"critic_reduce must be 'q1' or 'min', got {critic_reduce!r}.")
        self.score = score
        self.critic_reduce = critic_reduce

    @classmethod
    def variant_for(cls, options: dict[str, Any]) -> type[Collector]:
        from sb3_qmp.qmp.qswitch_variants import qswitch_variant  # the variants subclass this class

        return qswitch_variant(cls, options)

    def candidates(self, proposals: Proposals) -> th.Tensor:
        """The proposals the critics score, ``(N, T, A)``."""
        return (proposals.means if self.score == "mean" else proposals.samples).transpose(0, 1)

    def scores(self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals) -> th.Tensor:
        """Task critics' scores of every proposal ``(N, T)``; ``-inf`` where the proposal (mean or sample) or its
        score is not finite, so that one task's broken policy or critic never wins another task's rows."""
        scores = policy.critic.score(features, self.candidates(proposals), tasks, self.critic_reduce)
        return scores.masked_fill(~(th.isfinite(scores) & finite_proposals(proposals)), -th.inf)

    def _decide(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> th.Tensor:
        assert proposals is not None  # needs_proposals: select() passes them
        return argmax_or_own(self.scores(policy, features, tasks, proposals), tasks)


def finite_proposals(proposals: Proposals) -> th.Tensor:
    """``(N, T)``: whether policy ``j``'s proposal for row ``n`` (mean and sample) is finite."""
    return (th.isfinite(proposals.means).all(dim=2) & th.isfinite(proposals.samples).all(dim=2)).T


def argmax_or_own(scores: th.Tensor, tasks: th.Tensor) -> th.Tensor:
    """The best-scoring policy of every row; its own policy where no score is finite."""
    return th.where(th.isfinite(scores).any(dim=1), scores.argmax(dim=1), tasks)
