"""Policy of the Fully-Shared-Behaviors baseline: ONE actor and ONE set of twin critics for every task.

The networks see the task-free observation (the one-hot suffix is stripped), so a state gets the same
action distribution whatever the task. They implement the same interface as
:class:`~sb3_qmp.mtsac.policies.MultiTaskActor` / :class:`~sb3_qmp.mtsac.policies.MultiTaskCritic`
(any leading "member" dimension is accepted and every slice goes through the one shared network), so
the algorithm, the collectors and ``predict`` work unchanged.
"""

from __future__ import annotations

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from sb3_qmp.common.interfaces import Proposals
from sb3_qmp.mtsac.policies import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    MultiTaskActor,
    MultiTaskCritic,
    MultiTaskSACPolicy,
    squashed_gaussian_action,
)

# Hidden sizes the paper gave its single shared network to match the parameter count of T separate
# 2 x 256 networks (appendix A.3.3); use e.g. ``policy_kwargs=dict(net_arch=[600, 600])``.
PAPER_SHARED_HIDDEN: dict[str, int] = {"reacher": 600, "maze": 834, "metaworld": 512}


class SharedActor(MultiTaskActor):
    """One squashed-Gaussian actor used for every task (a 1-member batched MLP).

    :param num_tasks: number of tasks T (only for the shapes of :meth:`propose`).
    :param features_dim: size of the network input D (the task-free observation).
    :param action_dim: action size A.
    :param net_arch: hidden layer sizes.
    :param activation_fn: activation between hidden layers.
    """

    def __init__(
        self,
        num_tasks: int,
        features_dim: int,
        action_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__(1, features_dim, action_dim, net_arch, activation_fn)
        self.num_tasks = num_tasks

    def distribution_params(self, obs: th.Tensor, tasks: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor]:
        """Mean and log-std ``(M, B, A)`` of the shared policy on ``obs`` ``(M, B, D)``; ``tasks`` is ignored."""
        out = self.net(obs.reshape(1, -1, obs.shape[-1])).view(*obs.shape[:-1], -1)
        mean, log_std = out.split(self.action_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def task_actions(self, obs: th.Tensor, tasks: th.Tensor, deterministic: bool = False) -> th.Tensor:
        """The shared policy's action for every row ``(N, A)``, whatever its task."""
        mean, log_std = self.distribution_params(obs.unsqueeze(0))
        return squashed_gaussian_action(mean, log_std, deterministic).squeeze(0)

    def propose(self, obs: th.Tensor, deterministic: bool = False) -> Proposals:
        """``(T, N, A)`` proposals (one forward pass; the T "policies" are the same network); ``deterministic``:
        the "sample" is the mean (no draw)."""
        mean, log_std = self.distribution_params(obs.unsqueeze(0))
        means = th.tanh(mean).expand(self.num_tasks, -1, -1)
        if deterministic:
            return Proposals(means, means)
        sampled = squashed_gaussian_action(mean.expand(self.num_tasks, -1, -1), log_std.expand(self.num_tasks, -1, -1))
        return Proposals(means, sampled)


class SharedCritic(MultiTaskCritic):
    """One set of ``n_critics`` Q-networks used for every task.

    :param num_tasks: number of tasks T (kept for the interface).
    :param features_dim: size of the observation input D.
    :param action_dim: action size A.
    :param net_arch: hidden layer sizes.
    :param activation_fn: activation between hidden layers.
    :param n_critics: Q-networks (2 for clipped double-Q).
    """

    def __init__(
        self,
        num_tasks: int,
        features_dim: int,
        action_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module] = nn.ReLU,
        n_critics: int = 2,
    ) -> None:
        super().__init__(1, features_dim, action_dim, net_arch, activation_fn, n_critics)
        self.num_tasks = num_tasks

    def forward(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """``obs`` ``(M, B, D)``, ``actions`` ``(M, B, A)`` -> Q-values ``(C, M, B)``."""
        x = th.cat([obs, actions], dim=-1)
        flat = x.reshape(1, -1, x.shape[-1]).expand(self.n_critics, -1, -1)
        return self.q_net(flat).view(self.n_critics, *x.shape[:-1])

    def _row_scores(self, obs: th.Tensor, actions: th.Tensor, tasks: th.Tensor, n_critics: int) -> th.Tensor:
        """The first ``n_critics`` critics' scores ``(n_critics, N, K)`` (one network: ``tasks`` is ignored)."""
        n, k = actions.shape[:2]
        x = th.cat([obs.unsqueeze(1).expand(-1, k, -1), actions], dim=-1).reshape(1, n * k, -1)
        return self.q_net(x.expand(n_critics, -1, -1), slice(0, n_critics)).view(n_critics, n, k)


class SharedSACPolicy(MultiTaskSACPolicy):
    """A single SAC agent (actor, twin critics, target critics) for all tasks, blind to the task id.

    The one-hot task suffix of the observation is still used to route statistics, but never reaches the
    networks. To match the capacity of T separate agents as the paper did, widen the hidden layers
    (``net_arch=[600, 600]`` Reacher, ``[834, 834]`` Maze, ``[512, 512]`` Meta-World; see
    :data:`PAPER_SHARED_HIDDEN`). Arguments are those of :class:`MultiTaskSACPolicy`, except that
    ``task_id_input`` must stay ``False`` (a task-conditioned network would not be fully shared behaviour).

    :param observation_space: observation space (base observation + one-hot task suffix).
    :param action_space: action space (Box).
    :param lr_schedule: learning-rate schedule.
    :param num_tasks: number of tasks T.
    :param kwargs: the other keyword arguments of :class:`MultiTaskSACPolicy`.
    """

    actor: SharedActor
    critic: SharedCritic
    critic_target: SharedCritic

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        num_tasks: int,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("task_id_input", False):
            raise ValueError(
                "SharedSACPolicy is the Fully-Shared-Behaviors baseline: its networks never see the task id "
                "(task_id_input must be False). For a task-conditioned shared network use MultiHeadSAC."
            )
        super().__init__(observation_space, action_space, lr_schedule, num_tasks, **kwargs)

    def _make_actor(self) -> nn.Module:
        return SharedActor(self.num_tasks, self.features_dim, self.action_dim, self.pi_arch, self.activation_fn)

    def _make_critic(self) -> nn.Module:
        return SharedCritic(
            self.num_tasks, self.features_dim, self.action_dim, self.qf_arch, self.activation_fn, self.n_critics
        )


MlpPolicy = SharedSACPolicy
