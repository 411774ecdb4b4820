"""Multi-head SAC networks (the paper's "Parameters only" / "Parameters + Behaviors", section 6.4).

One trunk shared by all tasks and one output head per task, for the actor and for each critic. The
modules implement the interface of :class:`~sb3_qmp.mtsac.policies.MultiTaskActor` /
:class:`~sb3_qmp.mtsac.policies.MultiTaskCritic`, so MultiTaskSAC, its collectors and ``predict`` use
them unchanged. Because the trunk is shared, the per-task losses that MultiTaskSAC sums DO mix in the
trunk (that is the point of parameter sharing); each head only receives its own task's gradient.
"""

from __future__ import annotations

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from sb3_qmp.common.batched import BatchedMLP, MemberLayout, member_layout
from sb3_qmp.common.interfaces import Proposals
from sb3_qmp.mtsac.policies import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    MultiTaskActor,
    MultiTaskCritic,
    MultiTaskSACPolicy,
    squashed_gaussian_action,
)


def _check_trunk(net_arch: list[int]) -> None:
    if len(net_arch) == 0:
        raise ValueError("A multi-head network needs at least one shared trunk layer: net_arch must not be empty.")


class MultiHeadActor(MultiTaskActor):
    """Shared trunk + one squashed-Gaussian head per task.

    :param num_tasks: number of tasks (heads) T.
    :param features_dim: size of the network input D.
    :param action_dim: action size A.
    :param net_arch: hidden sizes of the shared trunk.
    :param activation_fn: activation between layers.
    :param head_arch: hidden sizes inside each task head (``[]``: the head is one linear layer).
    """

    def __init__(
        self,
        num_tasks: int,
        features_dim: int,
        action_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module] = nn.ReLU,
        head_arch: list[int] | None = None,
    ) -> None:
        # Not MultiTaskActor.__init__: that would allocate T full networks only to discard them.
        nn.Module.__init__(self)
        _check_trunk(net_arch)
        self.num_tasks = num_tasks
        self.action_dim = action_dim
        self.trunk = BatchedMLP(1, features_dim, net_arch, 0, activation_fn)
        self.heads = BatchedMLP(num_tasks, net_arch[-1], list(head_arch or []), 2 * action_dim, activation_fn)

    def trunk_features(self, obs: th.Tensor) -> th.Tensor:
        """Shared features ``(..., H)`` of observations ``(..., D)`` (one trunk pass for all rows)."""
        return self.trunk(obs.reshape(1, -1, obs.shape[-1])).view(*obs.shape[:-1], -1)

    def _heads(self, hidden: th.Tensor, tasks: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor]:
        mean, log_std = self.heads(hidden, tasks).split(self.action_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def distribution_params(self, obs: th.Tensor, tasks: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor]:
        """Pre-tanh mean and log-std ``(M, B, A)``; slice ``m`` of ``obs`` ``(M, B, D)`` goes through head
        ``tasks[m]`` (all T heads in order if ``None``)."""
        return self._heads(self.trunk_features(obs), tasks)

    def row_distribution_params(self, obs: th.Tensor, layout: MemberLayout) -> tuple[th.Tensor, th.Tensor]:
        """Pre-tanh mean and log-std ``(N, A)`` of ``(N, D)`` rows of mixed tasks: one trunk pass over all
        rows, then row n through the head of its task ``layout.member[n]`` (the mixed-batch training path).

        :param obs: network input of every row ``(N, D)``.
        :param layout: the rows' tasks as a :class:`~sb3_qmp.common.batched.MemberLayout` over the T heads.
        """
        mean, log_std = self._heads(layout.pack(self.trunk_features(obs)))
        return layout.unpack(mean), layout.unpack(log_std)

    def task_actions(self, obs: th.Tensor, tasks: th.Tensor, deterministic: bool = False) -> th.Tensor:
        """Each row's own head: one trunk pass over the ``(N, D)`` rows, then every row through its task's head."""
        layout = member_layout(tasks, self.num_tasks)
        mean, log_std = self._heads(layout.pack(self.trunk_features(obs)))
        return layout.unpack(squashed_gaussian_action(mean, log_std, deterministic))

    def propose(self, obs: th.Tensor, deterministic: bool = False) -> Proposals:
        """All T heads' proposals ``(T, N, A)`` (squashed means, samples) from ONE trunk pass over ``(N, D)``;
        ``deterministic``: the "sample" is the mean (no draw)."""
        hidden = self.trunk_features(obs)
        mean, log_std = self._heads(hidden.unsqueeze(0).expand(self.num_tasks, -1, -1))
        means = th.tanh(mean)
        return Proposals(means, means if deterministic else squashed_gaussian_action(mean, log_std))


class MultiHeadCritic(MultiTaskCritic):
    """``n_critics`` Q-networks, each a trunk shared by all tasks + one scalar head per task.

    Head member ``c * T + t`` is critic c's head of task t (the same layout as MultiTaskCritic).

    :param num_tasks: number of tasks T.
    :param features_dim: size of the observation input D.
    :param action_dim: action size A.
    :param net_arch: hidden sizes of each critic's shared trunk.
    :param activation_fn: activation between layers.
    :param n_critics: Q-networks (2 for clipped double-Q); each has its own trunk.
    :param head_arch: hidden sizes inside each head.
    """

    def __init__(
        self,
        num_tasks: int,
        features_dim: int,
        action_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module] = nn.ReLU,
        n_critics: int = 2,
        head_arch: list[int] | None = None,
    ) -> None:
        nn.Module.__init__(self)
        _check_trunk(net_arch)
        self.num_tasks = num_tasks
        self.n_critics = n_critics
        self.trunk = BatchedMLP(n_critics, features_dim + action_dim, net_arch, 0, activation_fn)
        self.heads = BatchedMLP(n_critics * num_tasks, net_arch[-1], list(head_arch or []), 1, activation_fn)

    def forward(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """``obs`` ``(T, B, D)``, ``actions`` ``(T, B, A)`` -> Q-values ``(C, T, B)`` (head t on slice t)."""
        t, b = obs.shape[:2]
        x = th.cat([obs, actions], dim=-1).reshape(1, t * b, -1).expand(self.n_critics, -1, -1)
        hidden = self.trunk(x).view(self.n_critics * t, b, -1)
        return self.heads(hidden).view(self.n_critics, t, b)

    def row_q_values(self, obs: th.Tensor, actions: th.Tensor, layout: MemberLayout) -> th.Tensor:
        """Q-values ``(C, N)`` of ``(N, D)`` rows of mixed tasks and their ``(N, A)`` actions: every critic's
        trunk runs once over all rows, then row n goes through critic c's head of its task
        ``layout.member[n]`` (the mixed-batch training path).

        :param obs: observation input of every row ``(N, D)``.
        :param actions: action of every row ``(N, A)``.
        :param layout: the rows' tasks as a :class:`~sb3_qmp.common.batched.MemberLayout` over the T tasks.
        """
        x = th.cat([obs, actions], dim=-1).unsqueeze(0).expand(self.n_critics, -1, -1)
        hidden = self.trunk(x)  # (C, N, H)
        # Rows into task slices, per critic: (T, S, C, H) -> (C * T, S, H), member c * T + t in place.
        packed = layout.pack(hidden.transpose(0, 1)).permute(2, 0, 1, 3)
        q = self.heads(packed.reshape(self.n_critics * self.num_tasks, layout.slots, -1))
        q = q.view(self.n_critics, self.num_tasks, layout.slots).permute(1, 2, 0)  # (T, S, C)
        return layout.unpack(q).transpose(0, 1)

    def _row_scores(self, obs: th.Tensor, actions: th.Tensor, tasks: th.Tensor, n_critics: int) -> th.Tensor:
        """The first ``n_critics`` critics' scores ``(n_critics, N, K)``, row n through its task's heads."""
        n, k = actions.shape[:2]
        x = th.cat([obs.unsqueeze(1).expand(-1, k, -1), actions], dim=-1).reshape(1, n * k, -1)
        hidden = self.trunk(x.expand(n_critics, -1, -1), slice(0, n_critics)).view(n_critics * n, k, -1)
        members = (th.arange(n_critics, device=tasks.device).unsqueeze(1) * self.num_tasks + tasks).reshape(-1)
        return self.heads(hidden, members).view(n_critics, n, k)


class MultiHeadSACPolicy(MultiTaskSACPolicy):
    """Multi-head SAC: actor and critics with a trunk shared by all tasks and one head per task.

    ``net_arch`` sets the shared trunk (the paper widened it to match T separate networks: hidden 512 on
    Reacher, 834 on Maze); ``head_arch`` adds per-task hidden layers to each head (default none: a linear
    head). ``task_id_input=True`` also feeds the one-hot task id to the trunk.

    :param observation_space: observation space (base observation + one-hot task suffix).
    :param action_space: action space (Box).
    :param lr_schedule: learning-rate schedule.
    :param num_tasks: number of tasks T.
    :param head_arch: hidden sizes inside every head.
    :param kwargs: the other keyword arguments of :class:`MultiTaskSACPolicy`.
    """

    actor: MultiHeadActor
    critic: MultiHeadCritic
    critic_target: MultiHeadCritic

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        num_tasks: int,
        head_arch: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        self.head_arch = list(head_arch or [])
        super().__init__(observation_space, action_space, lr_schedule, num_tasks, **kwargs)

    def _make_actor(self) -> nn.Module:
        return MultiHeadActor(
            self.num_tasks, self.features_dim, self.action_dim, self.pi_arch, self.activation_fn, self.head_arch
        )

    def _make_critic(self) -> nn.Module:
        return MultiHeadCritic(
            self.num_tasks,
            self.features_dim,
            self.action_dim,
            self.qf_arch,
            self.activation_fn,
            self.n_critics,
            self.head_arch,
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["head_arch"] = self.head_arch
        return data


MlpPolicy = MultiHeadSACPolicy
