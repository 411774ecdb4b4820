"""Normalisation for multi-task VecEnvs: one running return statistic per task, the one-hot untouched.

SB3's ``VecNormalize`` keeps one return statistic for all sub-envs, so with several tasks a task with
large rewards rescales every other task's rewards, and its observation statistics would rescale the
one-hot task id that routes every row. :class:`VecNormalizePerTask` is a ``VecNormalize`` (SB3 finds it
with ``model.get_vec_normalize_env()``, stores the original observations and rewards in the replay buffer
and normalises them when sampling; ``save``/``load`` and the evaluation callbacks' statistics
synchronisation work as for ``VecNormalize``) that

* scales each reward by the running standard deviation of the discounted return **of its own task**;
* normalises the observation features with one running mean/std shared by all tasks, and leaves the
  one-hot task suffix as it is.

The feature statistics are shared on purpose: behaviour sharing (QMP's switch, the uniform and domain
mixtures, DnC's KL terms) runs policy j on task i's states, so every policy must read a state the same
way; per-task feature statistics would show policy j task i's states in a frame it was never trained on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from sb3_qmp.common.multitask_env import task_ids_from_one_hot
from sb3_qmp.common.vec_env import get_num_tasks


class TaskRunningMeanStd:
    """Running mean and variance of T separate streams, one per task (each updated as SB3's ``RunningMeanStd``).

    :param num_tasks: number of tasks T.
    :param shape: shape of one sample.
    :param epsilon: initial count of every stream (as SB3's ``RunningMeanStd``).
    """

    def __init__(self, num_tasks: int, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros((num_tasks, *shape), dtype=np.float64)
        self.var = np.ones((num_tasks, *shape), dtype=np.float64)
        self.count = np.full(num_tasks, epsilon, dtype=np.float64)

    @property
    def num_tasks(self) -> int:
        return len(self.count)

    def update(self, x: np.ndarray, tasks: np.ndarray) -> None:
        """Add samples ``x`` ``(N, *shape)``, row n to the stream of task ``tasks[n]``."""
        for task in np.unique(tasks):
            batch = x[tasks == task]
            self._update_from_moments(int(task), batch.mean(axis=0), batch.var(axis=0), len(batch))

    def _update_from_moments(self, task: int, batch_mean: np.ndarray, batch_var: np.ndarray, batch_count: int) -> None:
        # Chan et al.'s parallel update, the formula of SB3's RunningMeanStd.
        count = self.count[task]
        delta = batch_mean - self.mean[task]
        total = count + batch_count
        m2 = self.var[task] * count + batch_var * batch_count + np.square(delta) * count * batch_count / total
        self.mean[task] = self.mean[task] + delta * batch_count / total
        self.var[task] = m2 / total
        self.count[task] = total


class VecNormalizePerTask(VecNormalize):
    """``VecNormalize`` for a multi-task VecEnv: per-task reward scaling, observation features only.

    Each reward is divided by the running standard deviation of the discounted return of the task of
    the observation it was earned from (the one-hot suffix, as the replay buffer files it), so tasks'
    reward scales never touch each other. Observation features (everything before the one-hot suffix)
    are normalised with one running mean/std shared by all tasks (see the module docstring for why);
    the suffix passes through unchanged.

    Use it as ``VecNormalize``: wrap the training env, ``save(path)``, ``VecNormalizePerTask.load(path, venv)``,
    set ``training = False`` and ``norm_reward = False`` to evaluate. With rl-zoo3, the ``normalize:``
    key builds this wrapper for sb3-qmp's algorithms. Rewards can only be normalised with their tasks:
    :meth:`normalize_reward` takes ``tasks``, which sb3-qmp's replay buffers pass (SB3's own do not).

    :param venv: a multi-task VecEnv (observations end with a one-hot task id).
    :param training: update the running statistics.
    :param norm_obs: normalise the observation features.
    :param norm_reward: scale rewards by their task's return statistic.
    :param clip_obs: clip normalised features to ``[-clip_obs, clip_obs]``.
    :param clip_reward: clip scaled rewards to ``[-clip_reward, clip_reward]``.
    :param gamma: discount of the running returns (use the algorithm's).
    :param epsilon: added to variances before the square root.
    """

    obs_rms: RunningMeanStd  # type: ignore[assignment]
    ret_rms: TaskRunningMeanStd  # type: ignore[assignment]
    old_obs: np.ndarray

    def __init__(
        self,
        venv: VecEnv,
        training: bool = True,
        norm_obs: bool = True,
        norm_reward: bool = True,
        clip_obs: float = 10.0,
        clip_reward: float = 10.0,
        gamma: float = 0.99,
        epsilon: float = 1e-8,
    ) -> None:
        num_tasks = get_num_tasks(venv)  # a multi-task env: flat Box observations ending with the one-hot
        super().__init__(
            venv,
            training=training,
            norm_obs=False,  # VecNormalize's statistics would cover the one-hot: ours are made below
            norm_reward=norm_reward,
            clip_obs=clip_obs,
            clip_reward=clip_reward,
            gamma=gamma,
            epsilon=epsilon,
        )
        self.norm_obs = norm_obs
        self.num_tasks = num_tasks
        self.num_features = int(self.observation_space.shape[0]) - num_tasks  # type: ignore[index]
        self.obs_rms = RunningMeanStd(shape=(self.num_features,))
        self.ret_rms = TaskRunningMeanStd(num_tasks)

    # -- statistics ------------------------------------------------------------------------------
    def _tasks_of(self, obs: np.ndarray) -> np.ndarray:
        return task_ids_from_one_hot(np.asarray(obs)[..., self.num_features :])

    def _update_obs_stats(self, obs: np.ndarray) -> None:
        if self.training and self.norm_obs:
            self.obs_rms.update(obs[..., : self.num_features])

    def step_wait(self) -> VecEnvStepReturn:
        # A reward belongs to the task of the observation its action was taken on.
        tasks = self._tasks_of(self.old_obs)
        obs, rewards, dones, infos = self.venv.step_wait()
        assert isinstance(obs, np.ndarray)
        self.old_obs = obs
        self.old_reward = rewards
        self._update_obs_stats(obs)
        if self.training:
            self.returns = self.returns * self.gamma + rewards
            self.ret_rms.update(self.returns, tasks)
        normalized_rewards = self.normalize_reward(rewards, tasks)
        for idx in np.flatnonzero(dones):
            if "terminal_observation" in infos[idx]:
                infos[idx]["terminal_observation"] = self.normalize_obs(infos[idx]["terminal_observation"])
        self.returns[dones] = 0
        return self.normalize_obs(obs), normalized_rewards, dones, infos

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        assert isinstance(obs, np.ndarray)
        self.old_obs = obs
        self.returns = np.zeros(self.num_envs)
        self._update_obs_stats(obs)
        return self.normalize_obs(obs)

    # -- transforms ------------------------------------------------------------------------------
    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:  # type: ignore[override]
        """Observations ``(..., D + T)`` with their D features normalised (suffix unchanged); no statistics update."""
        out = np.array(obs, dtype=np.float32)
        if self.norm_obs:
            features = (out[..., : self.num_features] - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon)
            out[..., : self.num_features] = np.clip(features, -self.clip_obs, self.clip_obs)
        return out

    def unnormalize_obs(self, obs: np.ndarray) -> np.ndarray:  # type: ignore[override]
        out = np.array(obs, dtype=np.float32)
        if self.norm_obs:
            features = out[..., : self.num_features] * np.sqrt(self.obs_rms.var + self.epsilon) + self.obs_rms.mean
            out[..., : self.num_features] = features
        return out

    def _reward_scale(self, tasks: np.ndarray | None) -> np.ndarray:
        if tasks is None:
            raise ValueError(
                "VecNormalizePerTask scales every reward by its own task's return statistic: pass the task of every "
                "reward (`tasks=`). sb3-qmp's algorithms and replay buffers do; SB3's own replay buffers cannot."
            )
        return np.sqrt(self.ret_rms.var[np.asarray(tasks)] + self.epsilon)

    def normalize_reward(self, reward: np.ndarray, tasks: np.ndarray | None = None) -> np.ndarray:
        """Rewards divided by the return std of their tasks (``tasks`` broadcastable to ``reward``), clipped."""
        if self.norm_reward:
            reward = np.clip(reward / self._reward_scale(tasks), -self.clip_reward, self.clip_reward)
        return np.asarray(reward).astype(np.float32)

    def unnormalize_reward(self, reward: np.ndarray, tasks: np.ndarray | None = None) -> np.ndarray:
        if self.norm_reward:
            return reward * self._reward_scale(tasks)
        return reward

    # -- save / load -----------------------------------------------------------------------------
    def set_venv(self, venv: VecEnv) -> None:
        num_tasks = get_num_tasks(venv)
        if num_tasks != self.num_tasks:
            raise ValueError(
                f"These statistics are of {self.num_tasks} tasks but the env has {num_tasks}. "
                "Load them with an env of the same task set."
            )
        super().set_venv(venv)

    def save(self, save_path: str) -> None:
        """Pickle the statistics (as ``VecNormalize.save``), atomically: a killed run keeps the previous file."""
        from sb3_qmp.common.files import atomic_path

        with atomic_path(save_path) as tmp:
            super().save(str(tmp))

    @staticmethod
    def load(load_path: str, venv: VecEnv) -> VecNormalizePerTask:
        """Load statistics saved with :meth:`save` and wrap ``venv`` with them."""
        loaded: Any = VecNormalize.load(load_path, venv)
        if not isinstance(loaded, VecNormalizePerTask):
            raise TypeError(f"{load_path} holds a {type(loaded).__name__}, not a VecNormalizePerTask.")
        return loaded
