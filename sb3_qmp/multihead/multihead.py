"""Multi-head SAC ("Parameters only") and QMP on the multi-head network ("Parameters + Behaviors")."""

from __future__ import annotations

from typing import Any, ClassVar

from stable_baselines3.common.policies import BasePolicy

from sb3_qmp.mtsac.mtsac import MultiTaskSAC
from sb3_qmp.multihead.policies import MlpPolicy, MultiHeadSACPolicy
from sb3_qmp.separated.separated import check_collector


class MultiHeadSAC(MultiTaskSAC):
    """Parameters only: one SAC network with a trunk shared by all tasks and one output head per task
    (actor and each critic), per-task entropy coefficients, every task collecting with its own head.

    Training is MultiTaskSAC's: each task's loss uses its own batch and its own head; the summed losses
    share gradients in the trunk. The paper widened the trunk to match the parameters of T networks
    (``policy_kwargs=dict(net_arch=[512, 512])`` Reacher, ``[834, 834]`` Maze) and tuned the learning
    rate (1e-3 Reacher, 3e-4 Maze).

    :param policy: the policy (``"MlpPolicy"`` = :class:`MultiHeadSACPolicy`) or a multi-task env.
    :param env: the multi-task environment.
    :param kwargs: the other keyword arguments of :class:`~sb3_qmp.mtsac.MultiTaskSAC` (``collector``,
        if given, must be ``"own"``); ``policy_kwargs`` may set ``head_arch``.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    default_collector: ClassVar[str] = "own"
    policy: MultiHeadSACPolicy

    def __init__(self, policy: Any = "MlpPolicy", env: Any = None, **kwargs: Any) -> None:
        check_collector(type(self).__name__, kwargs.get("collector"), self.default_collector)
        super().__init__(policy, env, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if not isinstance(self.policy, MultiHeadSACPolicy):
            raise ValueError(f"{type(self).__name__} needs a MultiHeadSACPolicy, got {type(self.policy).__name__}.")


class QMPMultiHead(MultiHeadSAC):
    """Parameters + Behaviors: the multi-head network of :class:`MultiHeadSAC` with QMP's Q-switch collector.

    At every step all T heads propose from ONE trunk pass, the row's task critic head scores the
    proposals, and the best one acts. ``collector_kwargs`` configure the Q-switch as for
    :class:`~sb3_qmp.qmp.QMP`.

    :param policy: the policy (``"MlpPolicy"`` = :class:`MultiHeadSACPolicy`) or a multi-task env.
    :param env: the multi-task environment.
    :param kwargs: the other keyword arguments of :class:`~sb3_qmp.mtsac.MultiTaskSAC` (``collector``,
        if given, must be ``"qswitch"``).
    """

    default_collector: ClassVar[str] = "qswitch"
