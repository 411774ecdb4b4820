"""Policies for MultiTaskSAC: T SAC actors and T twin critics held as batched networks.

Shapes used throughout (T tasks, B samples, D observation features, A action dims, C critics):

* training: ``obs`` ``(T, B, D)`` where slice ``t`` is task t's own batch;
* collection / prediction: ``obs`` ``(N, D)`` for N env rows, each row with a task id.

Actors and critics expose the same small interface whatever their architecture
(:class:`MultiTaskActor`/:class:`MultiTaskCritic` here, multi-head variants elsewhere), which
is all the algorithm and the collectors use.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from sb3_qmp.common.batched import BatchedMLP, member_layout, run_rows
from sb3_qmp.common.interfaces import Proposals
from sb3_qmp.common.multitask_env import one_hot_error

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_TANH_EPS = 1e-6


def squashed_gaussian_sample(mean: th.Tensor, log_std: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor]:
    """Sample ``tanh(u)``, ``u ~ N(mean, exp(log_std))``; returns ``(action, log_prob)``.

    ``log_prob`` is summed over the last (action) dimension and includes the tanh correction,
    exactly as SB3's ``SquashedDiagGaussianDistribution``.
    """
    if deterministic:
        pre_tanh = mean
        log_prob_u = (-log_std - _HALF_LOG_2PI).sum(-1)
    else:
        eps = th.randn_like(mean)
        pre_tanh = mean + eps * log_std.exp()
        log_prob_u = (-0.5 * eps.square() - log_std - _HALF_LOG_2PI).sum(-1)
    action = th.tanh(pre_tanh)
    log_prob = log_prob_u - th.log(1.0 - action.square() + _TANH_EPS).sum(-1)
    return action, log_prob


def squashed_gaussian_action(mean: th.Tensor, log_std: th.Tensor, deterministic: bool = False) -> th.Tensor:
    """The action of :func:`squashed_gaussian_sample` without its log-probability (collection path);
    draws the same random numbers."""
    if deterministic:
        return th.tanh(mean)
    return th.tanh(th.randn_like(mean).mul_(log_std.exp()).add_(mean))


class MultiTaskActor(nn.Module):
    """T independent squashed-Gaussian SAC actors as one batched MLP.

    :param num_tasks: number of tasks T.
    :param features_dim: size of the network input D.
    :param action_dim: action size A.
    :param net_arch: hidden layer sizes.
    :param activation_fn: activation between hidden layers.
    """

    optimizer: th.optim.Optimizer

    def __init__(
        self,
        num_tasks: int,
        features_dim: int,
        action_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.action_dim = action_dim
        self.net = BatchedMLP(num_tasks, features_dim, net_arch, 2 * action_dim, activation_fn)

    def distribution_params(self, obs: th.Tensor, tasks: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor]:
        """Mean and log-std of the pre-tanh Gaussian, shapes ``(M, B, A)``.

        :param obs: ``(M, B, D)``; slice ``m`` goes through actor ``tasks[m]`` (all T in order if ``None``).
        """
        out = self.net(obs, tasks)
        mean, log_std = out.split(self.action_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def action_log_prob(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Training path: reparametrised actions ``(T, B, A)`` and log-probs ``(T, B)`` of every task on its batch."""
        return squashed_gaussian_sample(*self.distribution_params(obs))

    def task_actions(self, obs: th.Tensor, tasks: th.Tensor, deterministic: bool = False) -> th.Tensor:
        """Each row's own task policy: ``obs`` ``(N, D)``, ``tasks`` ``(N,)`` -> actions ``(N, A)``."""
        layout = member_layout(tasks, self.num_tasks)
        out = run_rows(self.net, obs, layout)[0]  # each row through its task's actor only
        mean, log_std = out.split(self.action_dim, dim=-1)
        # Noise is drawn in the member-major layout (T, slots, A), as it always was: the same random stream
        # gives the same actions (only A numbers per padded slot, never a network pass).
        packed = squashed_gaussian_action(
            layout.pack(mean), layout.pack(log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)), deterministic
        )
        return layout.unpack(packed)

    def propose(self, obs: th.Tensor, deterministic: bool = False) -> Proposals:
        """Every policy's proposal for every row: ``obs`` ``(N, D)`` -> ``(mean_actions, sampled_actions)``,
        both ``(T, N, A)`` (the mean is squashed too); ``deterministic``: the "sample" is the mean (no draw)."""
        mean, log_std = self.distribution_params(obs.unsqueeze(0).expand(self.num_tasks, -1, -1))
        means = th.tanh(mean)
        return Proposals(means, means if deterministic else squashed_gaussian_action(mean, log_std))


class MultiTaskCritic(nn.Module):
    """T tasks x C twin Q-networks as one batched MLP (member ``c * T + t`` is critic c of task t).

    :param num_tasks: number of tasks T.
    :param features_dim: size of the observation input D.
    :param action_dim: action size A.
    :param net_arch: hidden layer sizes.
    :param activation_fn: activation between hidden layers.
    :param n_critics: Q-networks per task (2 for clipped double-Q).
    """

    optimizer: th.optim.Optimizer

    def __init__(
        self,
        num_tasks: int,
        features_dim: int,
        action_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module] = nn.ReLU,
        n_critics: int = 2,
    ) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.n_critics = n_critics
        self.q_net = BatchedMLP(num_tasks * n_critics, features_dim + action_dim, net_arch, 1, activation_fn)

    def forward(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """Training path: ``obs`` ``(T, B, D)``, ``actions`` ``(T, B, A)`` -> Q-values ``(C, T, B)``."""
        x = th.cat([obs, actions], dim=-1).repeat(self.n_critics, 1, 1)
        return self.q_net(x).view(self.n_critics, self.num_tasks, -1)

    def score(self, obs: th.Tensor, actions: th.Tensor, tasks: th.Tensor, reduce: str = "q1") -> th.Tensor:
        """Score K candidate actions per row with that row's task critic.

        :param obs: ``(N, D)``.
        :param actions: ``(N, K, A)`` candidates for each row.
        :param tasks: ``(N,)`` the task whose critic scores row n.
        :param reduce: ``"q1"`` (first critic only) or ``"min"`` (min over the C critics).
        :return: ``(N, K)`` scores.
        """
        if reduce == "q1":
            return self._row_scores(obs, actions, tasks, 1)[0]
        return self._row_scores(obs, actions, tasks, self.n_critics).min(dim=0).values

    def score_critics(self, obs: th.Tensor, actions: th.Tensor, tasks: th.Tensor) -> th.Tensor:
        """Every critic's score of K candidate actions per row (the adaptive Q-switch reads their spread).

        :param obs: ``(N, D)``.
        :param actions: ``(N, K, A)`` candidates for each row.
        :param tasks: ``(N,)`` the task whose critics score row n.
        :return: ``(C, N, K)`` scores; ``[0]`` is what ``score(..., "q1")`` returns.
        """
        return self._row_scores(obs, actions, tasks, self.n_critics)

    def _row_scores(self, obs: th.Tensor, actions: th.Tensor, tasks: th.Tensor, n_critics: int) -> th.Tensor:
        """The first ``n_critics`` critics' scores ``(n_critics, N, K)``."""
        k = actions.shape[1]
        x = th.cat([obs.unsqueeze(1).expand(-1, k, -1), actions], dim=-1)  # (N, K, D + A)
        # Member c * T + t is critic c of task t: each row against its task's critics' weights in place.
        return run_rows(self.q_net, x, member_layout(tasks, self.num_tasks), copies=n_critics).squeeze(-1)


class MultiTaskSACPolicy(BasePolicy):
    """T SAC agents (actor, twin critics, target critics), one per task, in batched networks.

    Observations end with a one-hot task suffix of length ``num_tasks``; it routes every row to
    its task's networks and, by default, is removed from the networks' input (the tasks' nets are
    separate anyway; ``task_id_input=True`` keeps it).

    :param observation_space: observation space (base observation + one-hot task suffix).
    :param action_space: action space (Box).
    :param lr_schedule: learning-rate schedule (for the optimizers' initial rate).
    :param num_tasks: number of tasks T.
    :param net_arch: hidden sizes, a list for both actor and critic or ``dict(pi=[...], qf=[...])``.
    :param activation_fn: activation function.
    :param n_critics: Q-networks per task.
    :param task_id_input: feed the one-hot task suffix to the networks too.
    :param optimizer_class: optimizer class.
    :param optimizer_kwargs: extra optimizer keyword arguments.
    :param normalize_images: SB3's image scaling (observations here are flat vectors: it has no effect).
    """

    actor: MultiTaskActor
    critic: MultiTaskCritic
    critic_target: MultiTaskCritic

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        num_tasks: int,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        n_critics: int = 2,
        task_id_input: bool = False,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = False,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,
            normalize_images=normalize_images,
        )
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"MultiTaskSACPolicy needs a flat Box observation space, got {observation_space}.")
        if observation_space.shape[0] <= num_tasks:
            raise ValueError(
                f"The observation has {observation_space.shape[0]} entries, too few for a one-hot suffix of "
                f"{num_tasks} tasks plus a base observation. Build the env with sb3_qmp.make_multitask_vec_env."
            )
        if net_arch is None:
            net_arch = [256, 256]
        self.pi_arch, self.qf_arch = (
            (net_arch["pi"], net_arch["qf"]) if isinstance(net_arch, dict) else (list(net_arch), list(net_arch))
        )
        self.net_arch = net_arch
        self.num_tasks = num_tasks
        self.activation_fn = activation_fn
        self.n_critics = n_critics
        self.task_id_input = task_id_input
        if optimizer_class in (th.optim.Adam, th.optim.AdamW) and "fused" not in self.optimizer_kwargs:
            # Fused Adam is ~5x faster per step on CPU and numerically the same update.
            self.optimizer_kwargs = {**self.optimizer_kwargs, "fused": True}
        self.base_obs_dim = observation_space.shape[0] - num_tasks
        self.features_dim = observation_space.shape[0] if task_id_input else self.base_obs_dim
        self.action_dim = int(np.prod(action_space.shape))
        self._build(lr_schedule)

    def _make_actor(self) -> nn.Module:
        return MultiTaskActor(self.num_tasks, self.features_dim, self.action_dim, self.pi_arch, self.activation_fn)

    def _make_critic(self) -> nn.Module:
        return MultiTaskCritic(
            self.num_tasks, self.features_dim, self.action_dim, self.qf_arch, self.activation_fn, self.n_critics
        )

    def _make_optimizer(self, module: nn.Module, lr_schedule: Schedule) -> th.optim.Optimizer:
        return self.optimizer_class(module.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _build(self, lr_schedule: Schedule) -> None:
        self.actor = self._make_actor()  # type: ignore[assignment]
        self.actor.optimizer = self._make_optimizer(self.actor, lr_schedule)
        self.critic = self._make_critic()  # type: ignore[assignment]
        self.critic.optimizer = self._make_optimizer(self.critic, lr_schedule)
        self.critic_target = self._make_critic()  # type: ignore[assignment]
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.critic_target.train(False)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            num_tasks=self.num_tasks,
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            n_critics=self.n_critics,
            task_id_input=self.task_id_input,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            lr_schedule=self._dummy_schedule,  # optimizer states are restored from the saved file
        )
        return data

    def split_obs(self, obs: th.Tensor, check: bool = True) -> tuple[th.Tensor, th.Tensor]:
        """``(..., D + T)`` observations -> network input ``(..., D')`` and the task id of every row.

        :param obs: observations ending with a one-hot task suffix.
        :param check: raise ``ValueError`` if a row's suffix is not one-hot (it would be routed to a wrong
            task). Training skips it: the replay buffer checked every row when it stored it.
        """
        suffix = obs[..., self.base_obs_dim :]
        if check:
            valid = ((suffix == 0) | (suffix == 1)).all(dim=-1) & (suffix.sum(dim=-1) == 1)
            if not bool(valid.all()):
                raise one_hot_error(suffix.cpu().numpy(), valid.cpu().numpy())
        features = obs if self.task_id_input else obs[..., : self.base_obs_dim]
        return features, suffix.argmax(dim=-1)

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        features, tasks = self.split_obs(observation.float())  # type: ignore[union-attr]
        return self.actor.task_actions(features, tasks, deterministic)

    def set_training_mode(self, mode: bool) -> None:
        if mode == self.training:  # called every collection step by SB3: skip the module-tree walk
            return
        self.actor.train(mode)
        self.critic.train(mode)
        self.training = mode


MlpPolicy = MultiTaskSACPolicy
