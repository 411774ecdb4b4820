"""Multi-head SAC ("Parameters only") and QMP on the multi-head network ("Parameters + Behaviors")."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import polyak_update

from sb3_qmp.common.batched import MemberLayout
from sb3_qmp.common.denormal import flushing_denormals
from sb3_qmp.common.finite import check_finite_update
from sb3_qmp.mtsac.mtsac import MultiTaskSAC
from sb3_qmp.mtsac.policies import squashed_gaussian_sample
from sb3_qmp.multihead.policies import MlpPolicy, MultiHeadActor, MultiHeadCritic, MultiHeadSACPolicy

BATCH_MODES = ("per_task", "mixed")


def check_batch_mode(batch_mode: Any) -> None:
    """Raise a clear error unless ``batch_mode`` is one of :data:`BATCH_MODES`."""
    if batch_mode not in BATCH_MODES:
        raise ValueError(
            f"batch_mode must be one of {BATCH_MODES}, got {batch_mode!r}: 'per_task' updates every task on "
            "batch_size samples of its own data per gradient step, 'mixed' uses one batch of batch_size "
            "samples in all drawn over every task's data (the authors' multi-head training)."
        )


class MultiHeadSAC(MultiTaskSAC):
    """Parameters only: one SAC network with a trunk shared by all tasks and one output head per task
    (actor and each critic), per-task entropy coefficients, every task collecting with its own head.

    Two training schedules (``batch_mode``):

    * ``"per_task"`` (default): MultiTaskSAC's. Every gradient step updates every task on ``batch_size``
      samples of its own buffer (``T * batch_size`` rows); the per-task losses are summed, so they share
      gradients in the trunk while head i only sees task i's loss.
    * ``"mixed"``: as the authors' code trained its multi-head SAC (paper Figure 5c). Every gradient step
      uses ONE batch of ``batch_size`` rows in all, drawn uniformly from all stored transitions of all
      tasks (one shared replay buffer: each task's share of the batch is its share of the data). Each
      row's loss uses its task's actor head, critic heads and entropy coefficient, and every loss is the
      mean over the batch's rows. ``learning_starts`` then plays the role of the authors' minimum buffer
      size in total (Maze: 3000), and ``gradient_steps`` counts mixed steps (Maze: 1000 per 6000 env steps).

    The paper widened the trunk to match the parameters of T networks (``policy_kwargs=dict(net_arch=[512,
    512])`` Reacher, ``[834, 834]`` Maze) and tuned the learning rate (1e-3 Reacher, 3e-4 Maze).

    :param policy: the policy (``"MlpPolicy"`` = :class:`MultiHeadSACPolicy`) or a multi-task env.
    :param env: the multi-task environment.
    :param batch_mode: ``"per_task"`` (``batch_size`` rows of every task per gradient step) or ``"mixed"``
        (``batch_size`` rows in all, drawn over all tasks' data; the authors' multi-head training).
    :param kwargs: the other keyword arguments of :class:`~sb3_qmp.mtsac.MultiTaskSAC` (``collector``,
        if given, must be ``"own"``); ``policy_kwargs`` may set ``head_arch``.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    default_collector: ClassVar[str] = "own"
    policy: MultiHeadSACPolicy
    actor: MultiHeadActor
    critic: MultiHeadCritic
    critic_target: MultiHeadCritic

    def __init__(self, policy: Any = "MlpPolicy", env: Any = None, batch_mode: str = "per_task", **kwargs: Any) -> None:
        check_batch_mode(batch_mode)
        self.batch_mode = batch_mode
        super().__init__(policy, env, **kwargs)

    def _setup_model(self) -> None:
        check_batch_mode(self.batch_mode)  # again here: load() sets it from the file or its keyword arguments
        super()._setup_model()

    @flushing_denormals
    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        if self.batch_mode == "per_task":
            super().train(gradient_steps, batch_size)
        else:
            self._train_mixed(gradient_steps, batch_size)

    def _train_mixed(self, gradient_steps: int, batch_size: int) -> None:
        """``gradient_steps`` SAC updates, each on ONE batch of ``batch_size`` rows mixed over tasks."""
        self.policy.set_training_mode(True)
        optimizers: list[th.optim.Optimizer] = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers.append(self.ent_coef_optimizer)
        self._update_learning_rate(optimizers)

        num_tasks = self.num_tasks
        # Per-task sums over every row of every step (logged as per-task means) and the batch means.
        task_sums = {key: th.zeros(num_tasks, device=self.device) for key in ("actor_loss", "critic_loss")}
        task_rows = th.zeros(num_tasks, device=self.device)
        batch_means: dict[str, list[th.Tensor]] = {"actor_loss": [], "critic_loss": []}
        if self.ent_coef_optimizer is not None:
            batch_means["ent_coef_loss"] = []
        for gradient_step in range(gradient_steps):
            data = self.replay_buffer.sample_mixed(batch_size, env=self._vec_normalize_env)
            features, _ = self.policy.split_obs(data.observations)
            next_features, _ = self.policy.split_obs(data.next_observations)
            # One layout for the whole step: a transition's next observation has the same task.
            layout = MemberLayout(data.tasks, num_tasks)

            actions_pi, log_prob = squashed_gaussian_sample(*self.actor.row_distribution_params(features, layout))
            ent_coef_loss = None
            if self.ent_coef_optimizer is not None:
                ent_coef = th.exp(self.log_ent_coef.detach())[data.tasks]
                # Each task's coefficient learns from its own rows (SB3's log-coefficient loss).
                ent_coef_loss = -(self.log_ent_coef[data.tasks] * (log_prob + self.target_entropy_value).detach()).mean()
            else:
                ent_coef = self.ent_coef_tensor[data.tasks]

            with th.no_grad():
                next_mean, next_log_std = self.actor.row_distribution_params(next_features, layout)
                next_actions, next_log_prob = squashed_gaussian_sample(next_mean, next_log_std)
                next_q = self.critic_target.row_q_values(next_features, next_actions, layout).min(dim=0).values
                target_q = data.rewards + (1.0 - data.dones) * self.gamma * (next_q - ent_coef * next_log_prob)

            current_q = self.critic.row_q_values(features, data.actions, layout)  # (C, N)
            critic_rows = 0.5 * (current_q - target_q).square().sum(dim=0)  # SB3: 0.5 * sum over critics of the MSE
            # Checked before any optimizer step (the shared trunk would carry one task's nan to every task); the
            # entropy step comes after the target, which uses the coefficient from before it either way.
            step = self._n_updates + gradient_step
            check_finite_update({"critic loss": critic_rows, "log-prob": log_prob}, step, type(self).__name__, data, num_tasks)
            if ent_coef_loss is not None:
                batch_means["ent_coef_loss"].append(self._step_entropy(ent_coef_loss))
            self.critic.optimizer.zero_grad()
            critic_rows.mean().backward()
            self.critic.optimizer.step()

            # The critic is frozen here: the actor loss must not spend time on critic weight gradients.
            self.critic.requires_grad_(False)
            q_pi = self.critic.row_q_values(features, actions_pi, layout).min(dim=0).values
            self.critic.requires_grad_(True)
            actor_rows = ent_coef * log_prob - q_pi
            check_finite_update({"actor loss": actor_rows}, step, type(self).__name__, data, num_tasks)
            self.actor.optimizer.zero_grad()
            actor_rows.mean().backward()
            self.actor.optimizer.step()

            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)

            for key, rows in (("actor_loss", actor_rows), ("critic_loss", critic_rows)):
                task_sums[key].index_add_(0, data.tasks, rows.detach())
                batch_means[key].append(rows.detach().mean())
            task_rows += th.bincount(data.tasks, minlength=num_tasks)

        self._n_updates += gradient_steps
        self._on_train_end(gradient_steps)
        self._log_mixed_stats(batch_means, task_sums, task_rows)

    def _log_mixed_stats(
        self, batch_means: dict[str, list[th.Tensor]], task_sums: dict[str, th.Tensor], task_rows: th.Tensor
    ) -> None:
        """The keys of the per-task mode: batch means, and per-task means over each task's rows (tasks that
        got no row in this update are not logged)."""
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for key, values in batch_means.items():
            if values:
                self.logger.record(f"train/{key}", float(th.stack(values).mean()))
        ent_coef = (th.exp(self.log_ent_coef.detach()) if self.ent_coef_optimizer is not None else self.ent_coef_tensor).cpu()
        self.logger.record("train/ent_coef", float(ent_coef.mean()))
        rows = task_rows.cpu().numpy()
        for task in range(self.num_tasks):
            self.logger.record(f"train/task_{task}/ent_coef", float(ent_coef[task]), exclude="stdout")
            self.logger.record(f"train/task_{task}/batch_frac", float(rows[task] / max(rows.sum(), 1)), exclude="stdout")
        for key, sums in task_sums.items():
            means = sums.cpu().numpy() / np.maximum(rows, 1)
            for task_idx in np.flatnonzero(rows > 0):
                self.logger.record(f"train/task_{task_idx}/{key}", float(means[task_idx]), exclude="stdout")


class QMPMultiHead(MultiHeadSAC):
    """Parameters + Behaviors: the multi-head network of :class:`MultiHeadSAC` with QMP's Q-switch collector.

    At every step all T heads propose from ONE trunk pass, the row's task critic head scores the
    proposals, and the best one acts. ``collector_kwargs`` configure the Q-switch as for
    :class:`~sb3_qmp.qmp.QMP`; ``batch_mode`` chooses the training schedule as for :class:`MultiHeadSAC`.

    :param policy: the policy (``"MlpPolicy"`` = :class:`MultiHeadSACPolicy`) or a multi-task env.
    :param env: the multi-task environment.
    :param kwargs: the other keyword arguments of :class:`MultiHeadSAC` (``collector``, if given, must
        be ``"qswitch"``).
    """

    default_collector: ClassVar[str] = "qswitch"
