"""VecEnv wrapper for rl-zoo3: fixes the task of every sub-env, whatever ``n_envs`` the zoo uses."""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from sb3_qmp.common.vec_env import get_num_tasks


class TaskCycleWrapper(VecEnvWrapper):
    """Sub-env ``e`` of ``n`` runs task ``(e + k * n) % T`` in its ``k``-th episode since the last ``reset()``.

    * ``n`` a multiple of ``T`` (training, ``n_envs: T`` in the YAML): every sub-env keeps one
      task, ``e % T``, exactly like :class:`sb3_qmp.common.vec_env.TaskAssignmentWrapper`.
    * ``n < T`` or not a multiple (the zoo's evaluation env, ``--n-eval-envs 1``; the single env
      the zoo builds while preparing ``-optimize``; ``rl_zoo3.enjoy``): the tasks are visited in
      turn, so ``k * T`` consecutive episodes of one sub-env cover every task ``k`` times. Use
      ``--eval-episodes`` equal to a multiple of ``T`` for balanced evaluations.

    rl-zoo3 gives every sub-env the same kwargs and builds its evaluation envs with the same
    ``vec_env_wrapper`` as the training env; :class:`TaskAssignmentWrapper` refuses
    ``n_envs`` that are not multiples of ``T``, which is why the shipped YAMLs use this class.
    Tasks are set with ``env_method("set_task", i)`` (``VecEnv.set_attr`` would only set the
    outer wrapper) and take effect at the next reset; every ``reset()`` restarts the cycle, so
    successive evaluations see the same task order.

    :param venv: a VecEnv of multi-task envs (each with ``set_task``).
    """

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.num_tasks = get_num_tasks(venv)
        self.cycles = venv.num_envs % self.num_tasks != 0
        self._episodes = np.zeros(venv.num_envs, dtype=np.int64)
        self.tasks = self._task_of(np.arange(venv.num_envs), self._episodes)
        self._set_tasks(range(venv.num_envs), self.tasks)

    def _task_of(self, envs: np.ndarray, episodes: np.ndarray) -> np.ndarray:
        return (envs + episodes * self.num_envs) % self.num_tasks

    def _set_tasks(self, envs: Any, tasks: Any) -> None:
        for env_idx, task in zip(envs, tasks):
            self.venv.env_method("set_task", int(task), indices=[int(env_idx)])

    def reset(self) -> VecEnvObs:
        all_envs = np.arange(self.num_envs)
        self._episodes[:] = 0
        self.tasks = self._task_of(all_envs, self._episodes)
        self._set_tasks(all_envs, self.tasks)
        obs = self.venv.reset()
        if self.cycles:
            # set_task applies at the next reset: queue each sub-env's next task now.
            self._set_tasks(all_envs, self._task_of(all_envs, self._episodes + 1))
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        if self.cycles and dones.any():
            done_envs = np.flatnonzero(dones)
            # The auto-reset has already started the queued episode; queue the one after it.
            self._episodes[done_envs] += 1
            self.tasks[done_envs] = self._task_of(done_envs, self._episodes[done_envs])
            self._set_tasks(done_envs, self._task_of(done_envs, self._episodes[done_envs] + 1))
        return obs, rewards, dones, infos
