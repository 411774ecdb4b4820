"""Separated (the paper's No-Shared-Behaviors baseline): T independent SAC agents."""

from __future__ import annotations

from typing import ClassVar

from sb3_qmp.mtsac.mtsac import MultiTaskSAC


class Separated(MultiTaskSAC):
    """No-Shared-Behaviors: one SAC agent per task, each collecting its own data with its own policy.

    Identical to :class:`~sb3_qmp.mtsac.MultiTaskSAC` with the ``"own"`` collector; it exists so that the
    baseline has a name of its own in the registry, the zoo and saved files. All arguments are those of
    :class:`~sb3_qmp.mtsac.MultiTaskSAC` (``collector``, if given, must be ``"own"``).

    :param policy: the policy (``"MlpPolicy"``) or a multi-task env (meaning ``"MlpPolicy"``).
    :param env: the multi-task environment.
    :param kwargs: the other keyword arguments of :class:`~sb3_qmp.mtsac.MultiTaskSAC`.
    """

    default_collector: ClassVar[str] = "own"
