"""QMP: multi-task SAC that collects every task's data with the Q-switch mixture of policies."""

from __future__ import annotations

from typing import ClassVar

from sb3_qmp.mtsac.mtsac import MultiTaskSAC


class QMP(MultiTaskSAC):
    """Q-switch Mixture of Policies (Zhang et al., "Efficient Multi-Task Reinforcement Learning via
    Selective Behavior Sharing").

    T SAC agents, one per task. To collect data for task i, every task's policy proposes an
    action, task i's critic scores the proposals, and the best-scoring proposal is executed. The
    transition is stored for task i with task i's reward, so each task still learns only from its
    own data. All arguments are those of :class:`~sb3_qmp.mtsac.MultiTaskSAC`; the Q-switch is
    configured with ``collector_kwargs`` (``score``, ``critic_reduce``, ``commit_steps``, ``own_prob``,
    ``switch_margin``; see :class:`~sb3_qmp.qmp.qswitch.QSwitchCollector`).
    """

    default_collector: ClassVar[str] = "qswitch"
