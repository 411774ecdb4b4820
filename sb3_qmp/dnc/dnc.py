"""Divide-and-Conquer RL (Ghosh et al., 2018) adapted to multi-task SAC as in the QMP paper: DnC and DnCReg.

Each task i keeps its own SAC agent, collecting with its own policy, and its actor loss gets the penalty

    beta * sum_{j != i} mean_{s, d} KL( pi_j(.|s) || pi_i(.|s) )

(KL of the pre-tanh diagonal Gaussians, averaged over action dimensions d and over states s drawn from
every task's batch, and *summed* over the T - 1 other policies, as the authors' code does), with ``pi_j``
held fixed: task i's penalty trains ``pi_i`` only. That is all of ``DnCReg`` (the paper's "regularization
only"); ``DnC`` adds the periodic *distillation* of all task policies into one central policy, which then
overwrites every task policy. See ``docs/algorithms.md`` for the design decisions.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.type_aliases import MaybeCallback

from sb3_qmp.common.denormal import flushing_denormals
from sb3_qmp.mtsac.mtsac import MultiTaskSAC
from sb3_qmp.mtsac.policies import MultiTaskActor

_ATANH_CLIP = 1.0 - 1e-6
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_kl(mean_p: th.Tensor, log_std_p: th.Tensor, mean_q: th.Tensor, log_std_q: th.Tensor) -> th.Tensor:
    """Element-wise ``KL(N(mean_p, std_p^2) || N(mean_q, std_q^2))`` of 1-D Gaussians (broadcasting).

    :return: the KL per action dimension (average it over the last axis for the diagonal-Gaussian mean KL).
    """
    var_ratio = th.exp(2.0 * (log_std_p - log_std_q))
    return log_std_q - log_std_p + 0.5 * (var_ratio + (mean_p - mean_q).square() * th.exp(-2.0 * log_std_q) - 1.0)


def pairwise_policy_kl(mean: th.Tensor, log_std: th.Tensor, detach_target: bool = True) -> th.Tensor:
    """``(T, T)`` matrix, entry ``[j, i]`` = ``mean_{s, d} KL(pi_j(.|s) || pi_i(.|s))``.

    :param mean: pre-tanh means ``(T, S, A)`` of the T policies on the same S states.
    :param log_std: pre-tanh log-stds ``(T, S, A)``.
    :param detach_target: detach the first argument (``pi_j``), so that column i's gradient reaches
        only ``pi_i`` (what the authors' per-policy optimisers amount to; DnC always detaches).
    """
    mean_p, log_std_p = (mean.detach(), log_std.detach()) if detach_target else (mean, log_std)
    kl = gaussian_kl(mean_p.unsqueeze(1), log_std_p.unsqueeze(1), mean.unsqueeze(0), log_std.unsqueeze(0))
    return kl.mean(dim=(2, 3))


class DnCReg(MultiTaskSAC):
    """DnC (regularization only): per-task SAC agents with a KL penalty toward the other tasks' policies.

    Penalty (added in :meth:`_actor_loss`): for task i, ``beta * sum_{j != i} mean KL(pi_j || pi_i)`` over
    the pooled states of all tasks' batches (the ``T * batch_size`` states of the gradient step, or a
    random subset of ``kl_states`` of them), with ``pi_j`` detached: each task's penalty moves only its
    own policy (mass-covering toward every other policy), like every other part of its loss, and
    ``pi_j`` gets no gradient from task i's penalty. This is the authors' choice: their code keeps one
    optimiser per task policy, and each zeroes its policy's gradients before its own backward pass and
    step, so whatever task i's penalty leaves on ``pi_j``'s gradients is discarded; the explicit detach
    gives the same update in one batched backward pass (without it, the summed loss would also pull
    ``pi_j`` toward ``pi_i``). The KLs to the other policies are summed, not averaged (the authors'
    code), so the penalty grows with T.

    :param policy: the policy (``"MlpPolicy"``) or a multi-task env.
    :param env: the multi-task environment.
    :param beta: weight of the KL penalty (paper: 1e-3 Reacher and Meta-World, 1e-4 Maze; searched in
        {1e-4, ..., 1}); ``0`` disables it.
    :param kl_states: number of pooled states for the penalty (``None``: all ``T * batch_size``).
    :param kwargs: the other keyword arguments of :class:`~sb3_qmp.mtsac.MultiTaskSAC` (``collector``, if
        given, must be ``"own"``).
    """

    default_collector: ClassVar[str] = "own"
    actor: MultiTaskActor

    def __init__(
        self,
        policy: Any = "MlpPolicy",
        env: Any = None,
        beta: float = 1e-3,
        kl_states: int | None = None,
        **kwargs: Any,
    ) -> None:
        # DnC takes its distillation arguments itself: any left here were given to DnCReg.
        distill_args = sorted(k for k in kwargs if k.startswith("distill") or k == "n_distillations")
        if distill_args:
            raise TypeError(f"{type(self).__name__} never distills; it takes no {distill_args}. Use DnC for distillation.")
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta (KL penalty weight) must be a finite float >= 0, got {beta!r}.")
        if kl_states is not None and (not isinstance(kl_states, int) or kl_states < 1):
            raise ValueError(f"kl_states must be an int >= 1 or None (all pooled states), got {kl_states!r}.")
        self.beta = float(beta)
        self.kl_states = kl_states
        self._kl_log: list[th.Tensor] = []
        super().__init__(policy, env, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if type(self.actor) is not MultiTaskActor:
            raise ValueError(
                f"{type(self).__name__} needs the separate per-task actors of MultiTaskSACPolicy, "
                f"got {type(self.actor).__name__}."
            )

    def kl_penalty(self, features: th.Tensor) -> th.Tensor:
        """Per-task penalty ``(T,)``: ``sum_{j != i} mean KL(pi_j || pi_i)`` (without ``beta``) on the pooled states.

        :param features: the gradient step's network inputs ``(T, B, D)``; all ``T * B`` states are pooled.
        """
        pooled = features.reshape(-1, features.shape[-1])
        if self.kl_states is not None and self.kl_states < pooled.shape[0]:
            pooled = pooled[th.randperm(pooled.shape[0], device=pooled.device)[: self.kl_states]]
        mean, log_std = self.actor.distribution_params(pooled.unsqueeze(0).expand(self.num_tasks, -1, -1))
        kl = pairwise_policy_kl(mean, log_std, detach_target=True)  # [j, i]
        return kl.sum(dim=0) - kl.diagonal()  # sum over j != i (the j = i term is 0 anyway)

    def _actor_loss(self, features: th.Tensor, ent_coef: th.Tensor, actions_pi: th.Tensor, log_prob: th.Tensor) -> th.Tensor:
        loss = super()._actor_loss(features, ent_coef, actions_pi, log_prob)
        if self.beta == 0.0 or self.num_tasks < 2:
            return loss
        penalty = self.kl_penalty(features)
        self._kl_log.append(penalty.detach())
        return loss + self.beta * penalty

    def _on_train_end(self, gradient_steps: int) -> None:
        super()._on_train_end(gradient_steps)
        if self._kl_log:
            per_task = th.stack(self._kl_log).mean(dim=0).cpu().numpy()
            self._kl_log.clear()
            self.logger.record("train/dnc_kl", float(per_task.mean()))
            for task, value in enumerate(per_task):
                self.logger.record(f"train/task_{task}/dnc_kl", float(value), exclude="stdout")

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_kl_log"]


class DnC(DnCReg):
    """Divide-and-Conquer: :class:`DnCReg`'s KL penalty, plus periodic distillation of the task policies
    into a central policy that then replaces every task policy.

    Distillation (in :meth:`_on_train_end`): a central actor with the same architecture as one task actor
    is trained for ``distill_epochs`` gradient steps on ``distill_batch_size`` states of every task's
    buffer, then copied into every task actor. ``distill_loss="mle"`` (default, as the authors' code)
    maximises the likelihood of the stored actions of task i on task i's states; ``"kl"`` (as the original
    DnC) minimises ``KL(pi_i || pi_central)`` on task i's states. The central actor is kept (warm start at
    the next distillation, saved with the model). Schedule: every ``distill_period`` env steps (all tasks
    together) or, if ``distill_period`` is ``None``, ``n_distillations`` evenly spaced distillations over
    each ``learn`` call's ``total_timesteps`` (the paper: 10 over training, 500 epochs). Training in
    chunks (``learn(..., reset_num_timesteps=False)`` repeatedly) gives ``n_distillations`` per chunk;
    use ``distill_period`` for a schedule that carries over chunks (and save/load).

    :param policy: the policy (``"MlpPolicy"``) or a multi-task env.
    :param env: the multi-task environment.
    :param beta: weight of the KL penalty (paper: 1e-3; searched in {1e-4, ..., 1}); ``0`` disables it.
    :param kl_states: number of pooled states for the penalty (``None``: all ``T * batch_size``).
    :param distill_period: env steps between distillations (``None``: use ``n_distillations``).
    :param n_distillations: distillations spread evenly over ``total_timesteps`` when ``distill_period`` is ``None``.
    :param distill_epochs: gradient steps of every distillation.
    :param distill_batch_size: states (and actions) per task in every distillation step.
    :param distill_loss: ``"mle"`` (likelihood of buffer actions) or ``"kl"`` (KL from each task policy).
    :param distill_learning_rate: learning rate of the central actor (``None``: the initial learning rate).
    :param distill_reset_optimizer: after copying the central actor into the task actors, reset the task
        actors' Adam state (moments and step counts). ``False`` keeps the stale state, as the authors' code.
    :param kwargs: the other keyword arguments of :class:`~sb3_qmp.mtsac.MultiTaskSAC` (``collector``, if
        given, must be ``"own"``).
    """

    central_actor: MultiTaskActor

    def __init__(
        self,
        policy: Any = "MlpPolicy",
        env: Any = None,
        beta: float = 1e-3,
        kl_states: int | None = None,
        distill_period: int | None = None,
        n_distillations: int = 10,
        distill_epochs: int = 500,
        distill_batch_size: int = 256,
        distill_loss: str = "mle",
        distill_learning_rate: float | None = None,
        distill_reset_optimizer: bool = True,
        **kwargs: Any,
    ) -> None:
        if distill_period is not None and (not isinstance(distill_period, int) or distill_period <= 0):
            raise ValueError(f"distill_period must be a positive number of env steps (or None), got {distill_period!r}.")
        if not isinstance(n_distillations, int) or n_distillations <= 0:
            raise ValueError(f"n_distillations must be an int > 0, got {n_distillations!r}.")
        if not isinstance(distill_epochs, int) or distill_epochs <= 0:
            raise ValueError(f"distill_epochs must be an int > 0, got {distill_epochs!r}.")
        if not isinstance(distill_batch_size, int) or distill_batch_size <= 0:
            raise ValueError(f"distill_batch_size must be an int > 0, got {distill_batch_size!r}.")
        if distill_loss not in ("mle", "kl"):
            raise ValueError(f"distill_loss must be 'mle' or 'kl', got {distill_loss!r}.")
        if distill_learning_rate is not None and not distill_learning_rate > 0:
            raise ValueError(f"distill_learning_rate must be > 0 (or None), got {distill_learning_rate!r}.")
        if not isinstance(distill_reset_optimizer, bool):
            raise ValueError(f"distill_reset_optimizer must be a bool, got {distill_reset_optimizer!r}.")
        self.distill_period = distill_period
        self.n_distillations = n_distillations
        self.distill_epochs = distill_epochs
        self.distill_batch_size = distill_batch_size
        self.distill_loss = distill_loss
        self.distill_learning_rate = distill_learning_rate
        self.distill_reset_optimizer = distill_reset_optimizer
        self.distill_count = 0
        self._next_distill_at: int | None = None
        self._distill_every: int | None = distill_period
        super().__init__(policy, env, beta=beta, kl_states=kl_states, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        policy = self.policy
        self.central_actor = MultiTaskActor(
            1, policy.features_dim, policy.action_dim, policy.pi_arch, policy.activation_fn
        ).to(self.device)
        lr = self.distill_learning_rate if self.distill_learning_rate is not None else self.lr_schedule(1)
        self.central_actor.optimizer = th.optim.Adam(self.central_actor.parameters(), lr=lr)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, Any]:
        total_timesteps, callback = super()._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        if self.distill_period is None:
            # Space n_distillations evenly between the start of learning (no distillation can happen
            # before learning_starts) and the end of this learn call; the last one falls on its end.
            start = max(self.num_timesteps, self.learning_starts)
            self._distill_every = max(1, (total_timesteps - start) // self.n_distillations)
            self._next_distill_at = start + self._distill_every
        elif reset_num_timesteps or self._next_distill_at is None:
            self._next_distill_at = self.distill_period
        return total_timesteps, callback

    def _on_train_end(self, gradient_steps: int) -> None:
        super()._on_train_end(gradient_steps)
        if self._distill_every is None or self._next_distill_at is None or self.num_timesteps < self._next_distill_at:
            return
        self.distill()
        # A nominal schedule (no drift from the train frequency); at most one distillation per update.
        while self._next_distill_at <= self.num_timesteps:
            self._next_distill_at += self._distill_every

    def _distill_loss(self, features: th.Tensor, actions: th.Tensor) -> th.Tensor:
        n_tasks, batch = features.shape[:2]
        # All tasks' states through the one central network.
        mean_c, log_std_c = self.central_actor.distribution_params(features.reshape(1, n_tasks * batch, -1))
        mean_c, log_std_c = mean_c.view(n_tasks, batch, -1), log_std_c.view(n_tasks, batch, -1)
        if self.distill_loss == "kl":
            with th.no_grad():
                mean_t, log_std_t = self.actor.distribution_params(features)  # pi_i on task i's states
            return gaussian_kl(mean_t, log_std_t, mean_c, log_std_c).mean()
        # Maximum likelihood of the stored (squashed) actions: the tanh Jacobian does not depend on the
        # parameters, so it is the Gaussian likelihood of atanh(a).
        pre_tanh = th.atanh(actions.clamp(-_ATANH_CLIP, _ATANH_CLIP))
        log_lik = -0.5 * ((pre_tanh - mean_c) * th.exp(-log_std_c)).square() - log_std_c - _HALF_LOG_2PI
        return -log_lik.sum(dim=-1).mean()

    @flushing_denormals
    def distill(self) -> float:
        """Distill every task policy into the central policy, then overwrite every task policy with it
        (and, with ``distill_reset_optimizer``, reset the task actors' optimizer state).

        :return: the final distillation loss.
        """
        self.central_actor.train(True)
        loss = th.zeros(())
        for _ in range(self.distill_epochs):
            data = self.replay_buffer.sample(self.distill_batch_size, env=self._vec_normalize_env)
            features, _ = self.policy.split_obs(data.observations, check=False)  # checked when stored
            loss = self._distill_loss(features, data.actions)
            self.central_actor.optimizer.zero_grad()
            loss.backward()
            self.central_actor.optimizer.step()
        with th.no_grad():
            for task_param, central_param in zip(self.actor.parameters(), self.central_actor.parameters()):
                task_param.copy_(central_param.expand_as(task_param))
        if self.distill_reset_optimizer:
            # Adam's moments (and bias-correction step) describe the replaced weights' gradient history:
            # drop them so the next actor step starts fresh from the distilled weights.
            for task_param in self.actor.parameters():
                self.actor.optimizer.state.pop(task_param, None)
        self.distill_count += 1
        final = float(loss.detach())
        self.logger.record("train/distill_loss", final)
        self.logger.record("train/n_distillations", self.distill_count)
        return final

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "central_actor"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        return [*state_dicts, "central_actor", "central_actor.optimizer"], variables
