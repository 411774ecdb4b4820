"""SharedSAC: the paper's Fully-Shared-Behaviors baseline, one SAC agent for every task."""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecNormalize

from sb3_qmp.common.buffers import MultiTaskReplayBuffer, MultiTaskReplayBufferSamples
from sb3_qmp.mtsac.mtsac import MultiTaskSAC
from sb3_qmp.separated.separated import check_collector
from sb3_qmp.shared.policies import MlpPolicy, SharedSACPolicy


class PooledReplayBuffer(MultiTaskReplayBuffer):
    """Per-task storage, pooled sampling: ``batch_size`` transitions from every task, returned as ONE
    batch of ``T * batch_size`` (leading dimension 1), so a single agent trains on all tasks' data with
    every task equally represented.

    Arguments are those of :class:`~sb3_qmp.common.buffers.MultiTaskReplayBuffer`.
    """

    def sample(  # type: ignore[override]
        self, batch_size: int, env: VecNormalize | None = None
    ) -> MultiTaskReplayBufferSamples:
        """``(1, T * batch_size, ...)``: ``batch_size`` uniform samples of each task's buffer, concatenated."""
        data = super().sample(batch_size, env)
        return MultiTaskReplayBufferSamples(*(x.reshape(1, -1, *x.shape[2:]) for x in data))


class SharedSAC(MultiTaskSAC):
    """Fully-Shared-Behaviors: ONE SAC agent (one actor, one twin critic, one entropy coefficient) for all
    tasks, acting on the task-free observation, so a state gets the same action whatever the task.

    It plugs into the same multi-task envs and tooling as :class:`~sb3_qmp.mtsac.MultiTaskSAC`: every
    env row still collects for its own task, transitions are stored per task (per-task success and return
    are logged), and ``predict`` takes observations with the one-hot suffix (which the network ignores).
    Every gradient step pools ``batch_size`` samples from every task into one batch of
    ``T * batch_size`` (see :class:`PooledReplayBuffer`): the loss is the mean over that pooled batch.

    Matching the paper (appendix A.3.3): the paper gave the single network the capacity of T networks
    (``policy_kwargs=dict(net_arch=[600, 600])`` Reacher, ``[834, 834]`` Maze, ``[512, 512]`` Meta-World)
    and ``T x`` the gradient steps of one task's agent at one task's batch size. Here one gradient step
    already consumes as many samples as one step of the T-agent baselines (``T * batch_size``); for the
    paper's exact setting pass ``batch_size=B // T`` and ``gradient_steps_factor=T`` (which multiplies the
    gradient steps of every update) with the wider ``net_arch``.

    :param policy: the policy (``"MlpPolicy"`` = :class:`SharedSACPolicy`) or a multi-task env.
    :param env: the multi-task environment.
    :param gradient_steps_factor: multiply the gradient steps of every update by this (``T`` reproduces the
        paper's step matching together with ``batch_size=B // T``).
    :param kwargs: the other keyword arguments of :class:`~sb3_qmp.mtsac.MultiTaskSAC` (``collector``, if
        given, must be ``"own"``; ``batch_size`` is per task, the pooled batch is ``T * batch_size``).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    default_collector: ClassVar[str] = "own"
    policy: SharedSACPolicy

    def __init__(
        self,
        policy: Any = "MlpPolicy",
        env: Any = None,
        gradient_steps_factor: int = 1,
        **kwargs: Any,
    ) -> None:
        check_collector(type(self).__name__, kwargs.get("collector"), self.default_collector)
        if not isinstance(gradient_steps_factor, int) or gradient_steps_factor < 1:
            raise ValueError(f"gradient_steps_factor must be an int >= 1, got {gradient_steps_factor!r}.")
        self.gradient_steps_factor = gradient_steps_factor
        super().__init__(policy, env, **kwargs)

    def _setup_model(self) -> None:
        if self.replay_buffer_class is None:
            self.replay_buffer_class = PooledReplayBuffer
        elif not issubclass(self.replay_buffer_class, PooledReplayBuffer):
            raise ValueError(
                f"SharedSAC trains one agent on a pooled batch: replay_buffer_class must subclass PooledReplayBuffer, "
                f"got {self.replay_buffer_class.__name__}."
            )
        super()._setup_model()
        if not isinstance(self.policy, SharedSACPolicy):
            raise ValueError(
                f"SharedSAC needs a SharedSACPolicy (one network for all tasks), got {type(self.policy).__name__}."
            )
        # One agent: one entropy coefficient (the base class made one per task).
        if self.ent_coef_optimizer is not None:
            self.log_ent_coef = self.log_ent_coef.detach()[:1].clone().requires_grad_(True)
            self.ent_coef_optimizer = th.optim.Adam([self.log_ent_coef], lr=self.lr_schedule(1))
        else:
            self.ent_coef_tensor = self.ent_coef_tensor[:1].clone()

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        super().train(gradient_steps * self.gradient_steps_factor, batch_size)
        # The pooled batch has one "task" row: drop the per-task train keys it would log as task 0.
        logger = self.logger
        for key in [k for k in logger.name_to_value if k.startswith("train/task_")]:
            logger.name_to_value.pop(key, None)
            logger.name_to_count.pop(key, None)
            logger.name_to_excluded.pop(key, None)
