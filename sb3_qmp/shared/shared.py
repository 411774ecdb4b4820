"""SharedSAC: the paper's Fully-Shared-Behaviors baseline, one SAC agent for every task."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecNormalize

from sb3_qmp.common.buffers import MultiTaskReplayBuffer, MultiTaskReplayBufferSamples
from sb3_qmp.mtsac.mtsac import MultiTaskSAC
from sb3_qmp.shared.policies import MlpPolicy, SharedSACPolicy


class PooledReplayBuffer(MultiTaskReplayBuffer):
    """Per-task storage, pooled sampling: every sample is ONE batch (leading dimension 1) of all tasks'
    transitions, so a single agent trains on all tasks' data with every task equally represented.

    With ``batch_per_task=True`` (default) ``sample(n)`` takes ``n`` transitions of every task (``T * n``
    in all). With ``batch_per_task=False`` it takes ``n`` transitions in all: ``n // T`` of every task and
    one more of ``n % T`` distinct tasks drawn at random for every batch, so the batch is exactly ``n``
    and no task is favoured on average (the paper's single agent sampled its batch from one buffer that
    held the same amount of data of every task).

    :param args: the positional arguments of :class:`~sb3_qmp.common.buffers.MultiTaskReplayBuffer`.
    :param batch_per_task: whether ``sample``'s ``batch_size`` counts per task or in all.
    :param kwargs: the other keyword arguments of :class:`~sb3_qmp.common.buffers.MultiTaskReplayBuffer`.
    """

    def __init__(self, *args: Any, batch_per_task: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_per_task = batch_per_task

    def sample(  # type: ignore[override]
        self, batch_size: int, env: VecNormalize | None = None
    ) -> MultiTaskReplayBufferSamples:
        """``(1, N, ...)``: ``N = T * batch_size`` (per task) or ``N = batch_size`` (in all), uniform
        samples of each task's own buffer, concatenated task by task."""
        if not self.batch_per_task:
            return self.sample_total(batch_size, env)
        data = super().sample(batch_size, env)
        return MultiTaskReplayBufferSamples(*(x.reshape(1, -1, *x.shape[2:]) for x in data))

    def sample_total(self, total: int, env: VecNormalize | None = None) -> MultiTaskReplayBufferSamples:
        """``(1, total, ...)``: ``total // T`` transitions of every task, one more of ``total % T`` random tasks."""
        sizes = self.task_sizes()
        if (sizes == 0).any():
            raise RuntimeError(
                f"No transitions stored yet for task(s) {np.flatnonzero(sizes == 0).tolist()}: every task needs "
                "data before a gradient step."
            )
        counts = np.full(self.num_tasks, total // self.num_tasks)
        # The remainder goes to different tasks at every batch: exact size, no task favoured on average.
        counts[np.random.choice(self.num_tasks, total % self.num_tasks, replace=False)] += 1
        rows = np.repeat(np.arange(self.num_tasks), counts)
        idx = np.random.randint(0, sizes[rows])
        return self._get_samples_2d(rows[None], idx[None], env)


class SharedSAC(MultiTaskSAC):
    """Fully-Shared-Behaviors: ONE SAC agent (one actor, one twin critic, one entropy coefficient) for all
    tasks, acting on the task-free observation, so a state gets the same action whatever the task.

    It plugs into the same multi-task envs and tooling as :class:`~sb3_qmp.mtsac.MultiTaskSAC`: every
    env row still collects for its own task, transitions are stored per task (per-task success and return
    are logged), and ``predict`` takes observations with the one-hot suffix (which the network ignores).
    Every gradient step pools samples of every task into one batch (see :class:`PooledReplayBuffer`): by
    default ``batch_size`` of every task (``T * batch_size`` in all, as one step of the T-agent
    baselines), or, with ``batch_per_task=False``, exactly ``batch_size`` in all, spread evenly over the
    tasks. The loss is the mean over that pooled batch.

    Matching the paper (appendix A.3.3): the paper gave the single network the capacity of T networks
    (``policy_kwargs=dict(net_arch=[600, 600])`` Reacher, ``[834, 834]`` Maze, ``[512, 512]`` Meta-World),
    its own learning rate (3e-4 Reacher and Maze, 1e-3 Meta-World) and ``T x`` the env and gradient steps
    of one task's agent, each gradient step on one batch of the per-task batch size B (32 Reacher, 256
    Maze and Meta-World; the authors' code samples it from one buffer of all tasks' data). That is
    ``batch_size=B``, ``batch_per_task=False`` and ``gradient_steps_factor=T`` (which multiplies the
    gradient steps of every update) with the wider ``net_arch``, as in ``hyperparams/shared.yml``.

    :param policy: the policy (``"MlpPolicy"`` = :class:`SharedSACPolicy`) or a multi-task env.
    :param env: the multi-task environment.
    :param gradient_steps_factor: multiply the gradient steps of every update by this (``T`` reproduces the
        paper's step matching). With ``gradient_steps=-1`` (one step per env step of each task, see
        :class:`~sb3_qmp.mtsac.MultiTaskSAC`), ``T`` gives one step per env step of all tasks together, as one
        SB3 SAC with ``gradient_steps=-1`` on the pooled env.
    :param batch_per_task: ``True``: ``batch_size`` samples of every task per gradient step (``T * batch_size``
        in all); ``False``: ``batch_size`` samples in all, ``batch_size // T`` of every task and one more of
        ``batch_size % T`` tasks drawn at random at every step (the paper's setting, exact for any T).
    :param kwargs: the other keyword arguments of :class:`~sb3_qmp.mtsac.MultiTaskSAC` (``collector``, if
        given, must be ``"own"``).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    default_collector: ClassVar[str] = "own"
    buffer_class: ClassVar[type[MultiTaskReplayBuffer]] = PooledReplayBuffer
    single_agent: ClassVar[bool] = True
    policy: SharedSACPolicy
    replay_buffer: PooledReplayBuffer

    def __init__(
        self,
        policy: Any = "MlpPolicy",
        env: Any = None,
        gradient_steps_factor: int = 1,
        batch_per_task: bool = True,
        **kwargs: Any,
    ) -> None:
        if not isinstance(gradient_steps_factor, int) or gradient_steps_factor < 1:
            raise ValueError(f"gradient_steps_factor must be an int >= 1, got {gradient_steps_factor!r}.")
        if not isinstance(batch_per_task, bool):
            raise ValueError(f"batch_per_task must be a bool, got {batch_per_task!r}.")
        self.gradient_steps_factor = gradient_steps_factor
        self.batch_per_task = batch_per_task
        super().__init__(policy, env, **kwargs)

    def _setup_model(self) -> None:
        # Here, not in __init__: load() restores batch_per_task (or takes it as a keyword) before building.
        self.replay_buffer_kwargs = {**self.replay_buffer_kwargs, "batch_per_task": self.batch_per_task}
        super()._setup_model()

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        # A buffer restored with load_replay_buffer may have been saved under the other batch setting.
        self.replay_buffer.batch_per_task = self.batch_per_task
        super().train(gradient_steps * self.gradient_steps_factor, batch_size)
