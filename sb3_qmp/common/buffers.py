"""Per-task replay storage that is still an SB3 ``ReplayBuffer`` (so save/load_replay_buffer work)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize

from sb3_qmp.common.multitask_env import task_ids_from_one_hot
from sb3_qmp.common.normalize import VecNormalizePerTask


class MultiTaskReplayBufferSamples(NamedTuple):
    """A batch per task: leading dimension T, then ``batch_size``."""

    observations: th.Tensor  # (T, B, obs_dim)
    actions: th.Tensor  # (T, B, action_dim)
    next_observations: th.Tensor  # (T, B, obs_dim), one-hot suffix included
    dones: th.Tensor  # (T, B)
    rewards: th.Tensor  # (T, B)


class MixedReplayBufferSamples(NamedTuple):
    """ONE batch of N transitions mixed over tasks, with the task of every row."""

    observations: th.Tensor  # (N, obs_dim)
    actions: th.Tensor  # (N, action_dim)
    next_observations: th.Tensor  # (N, obs_dim)
    dones: th.Tensor  # (N,)
    rewards: th.Tensor  # (N,)
    tasks: th.Tensor  # (N,) int64


class MultiTaskReplayBuffer(ReplayBuffer):
    """T ring buffers of ``buffer_size`` transitions each, one per task.

    Every transition goes to the buffer of the task named by the one-hot suffix of its
    observation, whichever policy acted: that is what keeps each task's learning on its own
    data (and its own reward) while the behaviour policy is shared.

    :param buffer_size: capacity **per task**.
    :param observation_space: observation space (base observation + one-hot task suffix).
    :param action_space: action space.
    :param device: PyTorch device of the sampled tensors.
    :param n_envs: number of parallel envs.
    :param optimize_memory_usage: not supported (must be ``False``).
    :param handle_timeout_termination: treat time-limit truncation as non-terminal.
    :param num_tasks: number of tasks T (set by the algorithm).
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        num_tasks: int | None = None,
    ) -> None:
        # ReplayBuffer.__init__ would allocate (buffer_size, n_envs) storage; ours is (T, buffer_size).
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        if optimize_memory_usage:
            raise ValueError("MultiTaskReplayBuffer does not support optimize_memory_usage=True.")
        if num_tasks is None or num_tasks < 1:
            raise ValueError(f"MultiTaskReplayBuffer needs num_tasks >= 1, got {num_tasks!r}.")
        self.num_tasks = num_tasks
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination
        obs_dtype = np.float32 if observation_space.dtype == np.float64 else observation_space.dtype
        if len(self.obs_shape) != 1 or self.obs_shape[0] <= num_tasks:
            raise ValueError(
                f"MultiTaskReplayBuffer needs flat observations of base features + a one-hot suffix of {num_tasks} "
                f"tasks, got shape {self.obs_shape}."
            )
        shape = (num_tasks, buffer_size)
        # Each task's ring stores the base features only: the one-hot suffix is the ring's own task, rebuilt
        # when sampling (storing it would make memory grow as T^2).
        self.feature_dim = self.obs_shape[0] - num_tasks
        self.observations = np.zeros((*shape, self.feature_dim), dtype=obs_dtype)
        self.next_observations = np.zeros((*shape, self.feature_dim), dtype=obs_dtype)
        self._one_hot = np.eye(num_tasks, dtype=obs_dtype)
        self.actions = np.zeros((*shape, self.action_dim), dtype=np.float32)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.dones = np.zeros(shape, dtype=np.float32)
        self.timeouts = np.zeros(shape, dtype=np.float32)
        self.task_pos = np.zeros(num_tasks, dtype=np.int64)
        self.task_full = np.zeros(num_tasks, dtype=bool)

    _STORAGE = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")

    def __getstate__(self) -> dict[str, Any]:
        # Pickle (save_replay_buffer, checkpoints) only the slots in use: a buffer a quarter full writes a
        # quarter of its capacity. The rest is zeros, restored by __setstate__.
        state = self.__dict__.copy()
        used = int(self.buffer_size if self.task_full.any() else self.task_pos.max())
        if used < self.buffer_size:
            for name in self._STORAGE:
                state[name] = np.ascontiguousarray(state[name][:, :used])
            state["_pickled_slots"] = used
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        used = state.pop("_pickled_slots", None)
        self.__dict__.update(state)
        if "feature_dim" not in state:  # saved by an earlier version: observations stored with their one-hot suffix
            self.feature_dim = self.obs_shape[0] - self.num_tasks
            self.observations = np.ascontiguousarray(self.observations[..., : self.feature_dim])
            self.next_observations = np.ascontiguousarray(self.next_observations[..., : self.feature_dim])
            self._one_hot = np.eye(self.num_tasks, dtype=self.observations.dtype)
        if used is not None:  # re-allocate the full capacity (files of earlier versions hold it all)
            for name in self._STORAGE:
                stored = getattr(self, name)
                full = np.zeros((stored.shape[0], self.buffer_size, *stored.shape[2:]), dtype=stored.dtype)
                full[:, :used] = stored
                setattr(self, name, full)

    def task_sizes(self) -> np.ndarray:
        """Number of stored transitions of every task, shape ``(T,)``."""
        return np.where(self.task_full, self.buffer_size, self.task_pos)

    def size(self) -> int:
        return int(self.task_sizes().sum())

    def reset(self) -> None:
        super().reset()
        self.task_pos[:] = 0
        self.task_full[:] = False

    def tasks_of(self, obs: np.ndarray) -> np.ndarray:
        """The task of every observation row, from its one-hot suffix (a row that is not one-hot is an error)."""
        return task_ids_from_one_hot(obs[..., -self.num_tasks :])

    def add(  # type: ignore[override]
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        obs = obs.reshape((self.n_envs, *self.obs_shape))
        tasks = self.tasks_of(obs)
        counts = np.bincount(tasks, minlength=self.num_tasks)
        # Rows of the same task get consecutive slots: rank of each row within its task group.
        order = np.argsort(tasks, kind="stable")
        rank = np.empty(self.n_envs, dtype=np.int64)
        rank[order] = np.arange(self.n_envs) - (np.cumsum(counts) - counts)[tasks[order]]
        idx = (self.task_pos[tasks] + rank) % self.buffer_size

        self.observations[tasks, idx] = obs[:, : self.feature_dim]
        self.next_observations[tasks, idx] = next_obs.reshape((self.n_envs, *self.obs_shape))[:, : self.feature_dim]
        self.actions[tasks, idx] = action.reshape((self.n_envs, self.action_dim))
        self.rewards[tasks, idx] = reward
        self.dones[tasks, idx] = done
        if self.handle_timeout_termination:
            self.timeouts[tasks, idx] = [info.get("TimeLimit.truncated", False) for info in infos]

        new_pos = self.task_pos + counts
        self.task_full |= new_pos >= self.buffer_size
        self.task_pos = new_pos % self.buffer_size
        self.pos, self.full = int(self.task_pos.max()), bool(self.task_full.all())

    def sample(  # type: ignore[override]
        self, batch_size: int, env: VecNormalize | None = None
    ) -> MultiTaskReplayBufferSamples:
        """``batch_size`` transitions of every task, uniformly from that task's own buffer."""
        sizes = self.task_sizes()
        if (sizes == 0).any():
            empty = np.flatnonzero(sizes == 0).tolist()
            raise RuntimeError(
                f"No transitions stored yet for task(s) {empty}: every task needs data before a gradient step. "
                "Check that every task has at least one sub-env (make_multitask_vec_env does this)."
            )
        idx = np.random.randint(0, sizes[:, None], size=(self.num_tasks, batch_size))
        rows = np.arange(self.num_tasks)[:, None]
        return self._get_samples_2d(rows, idx, env)

    def sample_mixed(self, batch_size: int, env: VecNormalize | None = None) -> MixedReplayBufferSamples:
        """``batch_size`` transitions in all, drawn uniformly from every stored transition of every task.

        This is sampling from ONE replay buffer shared by all tasks (as the authors' multi-head SAC did):
        a task's expected share of the batch is its share of the stored data, and a task with no data
        yet simply gets no rows. (The storage stays per task, so the shares differ from a single shared
        ring only once a task's own ring of ``buffer_size`` has wrapped.)

        :param batch_size: total number of transitions N.
        :param env: the ``VecNormalize`` wrapper whose statistics normalise observations and rewards.
        :return: the N transitions and their tasks.
        """
        sizes = self.task_sizes()
        total = int(sizes.sum())
        if total == 0:
            raise RuntimeError("The replay buffer is empty: collect transitions before sampling a batch.")
        flat = np.random.randint(0, total, size=batch_size)
        # Flat index -> (task, slot): task t owns the flat range [ends[t] - sizes[t], ends[t]).
        ends = np.cumsum(sizes)
        tasks = np.searchsorted(ends, flat, side="right")
        idx = flat - (ends - sizes)[tasks]
        data = self._get_samples_2d(tasks, idx, env)
        return MixedReplayBufferSamples(*data, th.as_tensor(tasks, dtype=th.int64, device=self.device))

    def _get_samples_2d(
        self, rows: np.ndarray, idx: np.ndarray, env: VecNormalize | None = None
    ) -> MultiTaskReplayBufferSamples:
        dones = self.dones[rows, idx] * (1.0 - self.timeouts[rows, idx])
        rewards = self.rewards[rows, idx]
        if isinstance(env, VecNormalizePerTask):  # every reward scaled by its own task's statistic
            rewards = env.normalize_reward(rewards, tasks=np.broadcast_to(rows, idx.shape))
        else:
            rewards = self._normalize_reward(rewards, env)
        suffix = self._one_hot[np.broadcast_to(rows, idx.shape)]  # each ring's own task
        data = (
            self._normalize_obs(np.concatenate([self.observations[rows, idx], suffix], axis=-1), env),
            self.actions[rows, idx],
            self._normalize_obs(np.concatenate([self.next_observations[rows, idx], suffix], axis=-1), env),
            dones,
            rewards,
        )
        return MultiTaskReplayBufferSamples(*(th.as_tensor(x, dtype=th.float32, device=self.device) for x in data))
