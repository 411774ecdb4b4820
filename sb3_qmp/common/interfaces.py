"""What a collector needs from a policy: the typed interface every architecture (separate networks, the
shared network, shared trunk with heads) provides."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch as th


class Proposals(NamedTuple):
    """Every policy's proposal for every row, ``(T, N, A)`` each (squashed into ``[-1, 1]``)."""

    means: th.Tensor  # each policy's deterministic action
    samples: th.Tensor  # each policy's sampled action (its mean when proposals are deterministic)


class ProposingActor(Protocol):
    """The actors of all tasks: each row's own action, or every policy's proposal for every row."""

    def task_actions(self, obs: th.Tensor, tasks: th.Tensor, deterministic: bool = False) -> th.Tensor: ...

    def propose(self, obs: th.Tensor, deterministic: bool = False) -> Proposals: ...


class ScoringCritic(Protocol):
    """The critics of all tasks: each row's task critics score K candidate actions ``(N, K, A)``."""

    n_critics: int

    def score(self, obs: th.Tensor, actions: th.Tensor, tasks: th.Tensor, reduce: str = "q1") -> th.Tensor: ...

    def score_critics(self, obs: th.Tensor, actions: th.Tensor, tasks: th.Tensor) -> th.Tensor: ...


class MixtureNetworks(Protocol):
    """A multi-task policy as a collector sees it (``MultiTaskSACPolicy`` and its subclasses)."""

    @property
    def actor(self) -> ProposingActor: ...

    @property
    def critic(self) -> ScoringCritic: ...


__all__ = ["MixtureNetworks", "Proposals", "ProposingActor", "ScoringCritic"]
