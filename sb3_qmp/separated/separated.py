"""Separated (the paper's No-Shared-Behaviors baseline): T independent SAC agents."""

from __future__ import annotations

from typing import Any, ClassVar

from stable_baselines3.common.policies import BasePolicy

from sb3_qmp.mtsac.mtsac import MultiTaskSAC
from sb3_qmp.mtsac.policies import MlpPolicy


def check_collector(algo: str, collector: str | None, expected: str) -> None:
    """Named variants fix their collector: reject a different one early with a pointer to MultiTaskSAC.

    :param algo: the algorithm's class name (for the message).
    :param collector: the ``collector`` constructor argument.
    :param expected: the collector that defines the variant.
    """
    if collector is not None and collector != expected:
        raise ValueError(
            f"{algo} always collects with the {expected!r} collector (that is what defines it), got collector={collector!r}. "
            "Use sb3_qmp.MultiTaskSAC(collector=...) to combine other collectors freely."
        )


class Separated(MultiTaskSAC):
    """No-Shared-Behaviors: one SAC agent per task, each collecting its own data with its own policy.

    Identical to :class:`~sb3_qmp.mtsac.MultiTaskSAC` with the ``"own"`` collector; it exists so that the
    baseline has a name of its own in the registry, the zoo and saved files. All arguments are those of
    :class:`~sb3_qmp.mtsac.MultiTaskSAC` (``collector``, if given, must be ``"own"``).

    :param policy: the policy (``"MlpPolicy"``) or a multi-task env (meaning ``"MlpPolicy"``).
    :param env: the multi-task environment.
    :param kwargs: the other keyword arguments of :class:`~sb3_qmp.mtsac.MultiTaskSAC`.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    default_collector: ClassVar[str] = "own"

    def __init__(self, policy: Any = "MlpPolicy", env: Any = None, **kwargs: Any) -> None:
        check_collector(type(self).__name__, kwargs.get("collector"), self.default_collector)
        super().__init__(policy, env, **kwargs)
