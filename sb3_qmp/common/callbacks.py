"""Per-task evaluation of multi-task agents (each task's own policy, deterministic by default)."""

from __future__ import annotations

import csv
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from copy import deepcopy
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HumanOutputFormat, Logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, unwrap_vec_normalize

from sb3_qmp.common.normalize import VecNormalizePerTask
from sb3_qmp.common.vec_env import get_num_tasks, make_multitask_vec_env, task_assignment_wrappers

EVAL_FILE = "evaluations_per_task.npz"
EVAL_CSV = "evaluations_per_task.csv"
# The folder SB3's ``configure()`` invents when given none (``<tmp>/SB3-<date-time>``).
_SB3_TEMP_DIR = re.compile(r"^SB3-\d{4}(-\d{2}){5}-\d{6}$")


def chosen_log_dir(logger: Logger | None) -> str | None:
    """The logger's folder if the user chose it, else ``None``.

    SB3 gives every logger a folder: without ``tensorboard_log`` or an explicit ``configure(folder)``
    it is a fresh ``<tmp>/SB3-<date-time>`` that nothing is written to and nobody looks at. That
    folder counts only if the logger writes files into it (csv, json, log, tensorboard formats).

    :param logger: an SB3 logger (``None``: no folder).
    """
    folder = logger.get_dir() if logger is not None else None
    if logger is None or not folder:
        return None
    writes_files = any(not isinstance(f, HumanOutputFormat) or f.own_file for f in logger.output_formats)
    auto_named = (
        os.path.dirname(os.path.abspath(folder)) == os.path.abspath(tempfile.gettempdir())
        and _SB3_TEMP_DIR.match(os.path.basename(folder)) is not None
    )
    return folder if writes_files or not auto_named else None


class PerTaskEvalCallback(BaseCallback):
    """Evaluate every task's policy on its own task, every ``eval_freq`` env steps.

    ``model.predict`` routes each observation to its task's policy through the one-hot suffix, so
    this evaluates *each task's own policy* (never the collection mixture). Each evaluation runs
    ``n_eval_episodes`` episodes **per task** and records, per task and averaged over tasks:

    * to the SB3 logger (stdout, tensorboard, csv): ``<prefix>/task_<i>/success_rate``,
      ``<prefix>/task_<i>/mean_reward``, ``<prefix>/success_rate``, ``<prefix>/mean_reward``;
    * in memory (``timesteps``, ``returns``, ``successes``, ``lengths``, ``selection_counts`` lists);
    * to ``log_path/evaluations_per_task.npz`` (read by ``python -m sb3_qmp.plot``): ``timesteps (K,)``,
      ``returns``, ``successes``, ``lengths`` ``(K, T, n_eval_episodes)``, ``task_names (T,)`` and,
      for models with a mixture statistic, ``selection_counts (K, T, T)``; and a readable csv
      ``evaluations_per_task.csv`` (one row per evaluation and task).

    If the training env is wrapped in :class:`~sb3_qmp.common.normalize.VecNormalizePerTask` with
    ``norm_obs``, the eval env is wrapped in a ``VecNormalizePerTask(training=False, norm_reward=False)``
    whose observation statistics are copied from the training env before every evaluation (reward-only
    normalisation needs nothing: the returns recorded are the raw ones).

    From rl-zoo3, add it to a YAML entry (the zoo points ``log_path`` at the run folder; ``-optimize``
    trials leave it out, see :mod:`sb3_qmp.zoo`)::

        callback:
          - sb3_qmp.common.callbacks.PerTaskEvalCallback:
              eval_freq: 10000
              n_eval_episodes: 5

    :param eval_env: the evaluation env: ``None`` (build one from the training env's id and
        kwargs), a registered multi-task env id, a multi-task gym env or a VecEnv of multi-task
        envs. The callback fixes the task of every sub-env with ``env_method("set_task", i)``;
        with fewer sub-envs than tasks, the tasks are evaluated in rounds.
    :param eval_freq: evaluate every this many env steps (``model.num_timesteps``, all sub-envs
        together); ``<= 0`` disables periodic evaluation.
    :param n_eval_episodes: episodes per task and evaluation.
    :param log_path: folder of the npz/csv files. ``None``: the logger's folder if the user chose
        one (``tensorboard_log``, ``set_logger(configure(folder, ...))``, ``SB3_LOGDIR``, any file
        output; see :func:`chosen_log_dir`), else results stay in memory only (with a warning).
    :param deterministic: deterministic actions (the paper's evaluation).
    :param log_prefix: logger key prefix (``eval`` is left to SB3's ``EvalCallback``).
    :param eval_at_end: also evaluate when training ends (if the last evaluation is older).
    :param env_kwargs: keyword arguments for ``gym.make`` when the callback builds the env.
    :param seed: seed of the evaluation env it builds.
    :param verbose: 1 prints a summary line per evaluation.
    """

    def __init__(
        self,
        eval_env: VecEnv | gym.Env | str | None = None,
        eval_freq: int = 10_000,
        n_eval_episodes: int = 5,
        log_path: str | None = None,
        deterministic: bool = True,
        log_prefix: str = "eval_tasks",
        eval_at_end: bool = True,
        env_kwargs: dict[str, Any] | None = None,
        seed: int | None = 0,
        verbose: int = 1,
    ) -> None:
        super().__init__(verbose)
        if n_eval_episodes < 1:
            raise ValueError(f"n_eval_episodes (per task) must be >= 1, got {n_eval_episodes}.")
        if env_kwargs and not (eval_env is None or isinstance(eval_env, str)):
            raise ValueError("env_kwargs only applies when the callback builds the env (eval_env=None or an env id).")
        self._eval_env_arg = eval_env
        self.eval_env: VecEnv | None = None
        self.eval_freq = int(eval_freq)
        self.n_eval_episodes = int(n_eval_episodes)
        self.log_path = log_path
        self.deterministic = deterministic
        self.log_prefix = log_prefix
        self.eval_at_end = eval_at_end
        self.env_kwargs = dict(env_kwargs or {})
        self.seed = seed
        self.num_tasks = 0
        self.task_names: list[str] = []
        self._last_eval_step = 0
        self.timesteps: list[int] = []
        self.returns: list[np.ndarray] = []
        self.successes: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []
        self.selection_counts: list[np.ndarray] = []

    # -- set-up --------------------------------------------------------------------------------
    def _build_env(self, env_id: str | Callable[[], gym.Env]) -> VecEnv:
        return make_multitask_vec_env(env_id, n_envs_per_task=1, seed=self.seed, env_kwargs=self.env_kwargs or None)

    def _env_from_training_env(self) -> VecEnv:
        if self.training_env is None:
            raise ValueError("PerTaskEvalCallback got no eval_env and the model has no env to copy it from.")
        spec = self.training_env.get_attr("spec", indices=[0])[0]
        if spec is None:
            raise ValueError(
                "PerTaskEvalCallback got no eval_env and cannot rebuild the training env (it has no gymnasium spec): "
                "pass eval_env=<env id or multi-task env>."
            )
        # Id, kwargs and time limit only: the spec's wrapper stack (e.g. SB3's Monitor) is not rebuildable.
        kwargs = {key: value for key, value in (spec.kwargs or {}).items() if key != "task_id"}
        kwargs.update(self.env_kwargs)
        env_id, max_steps = spec.id, spec.max_episode_steps
        return make_multitask_vec_env(
            lambda: gym.make(env_id, max_episode_steps=max_steps, **kwargs), n_envs_per_task=1, seed=self.seed
        )

    def _init_callback(self) -> None:
        if self.eval_env is None:
            env = self._eval_env_arg
            if env is None:
                self.eval_env = self._env_from_training_env()
            elif isinstance(env, str):
                self.eval_env = self._build_env(env)
            elif isinstance(env, VecEnv):
                self.eval_env = env
            elif isinstance(env, gym.Env):
                self.eval_env = DummyVecEnv([lambda: env])  # type: ignore[list-item, return-value]
            else:
                raise TypeError(f"eval_env must be None, an env id, a gym env or a VecEnv, got {type(env).__name__}.")
        self.num_tasks = get_num_tasks(self.eval_env)
        model_tasks = getattr(self.model, "num_tasks", None)
        if model_tasks not in (None, 0, self.num_tasks):
            raise ValueError(f"The eval env has {self.num_tasks} tasks but the model has {model_tasks}.")
        names = self.eval_env.get_attr("task_names", indices=[0])[0] if self._has_attr("task_names") else None
        self.task_names = list(names) if names else [f"task_{i}" for i in range(self.num_tasks)]
        self._match_normalization()
        if self.log_path is None:
            self.log_path = chosen_log_dir(getattr(self.model, "_logger", None))  # no logger: never learned

    def _match_normalization(self) -> None:
        """Wrap the eval env in ``VecNormalizePerTask`` if the policy is trained on normalised observations."""
        assert self.eval_env is not None
        train_norm = self.model.get_vec_normalize_env()
        if train_norm is None or not train_norm.norm_obs or unwrap_vec_normalize(self.eval_env) is not None:
            return
        # Never normalise rewards here: they are only summed into the (raw) evaluation returns. The models refuse
        # any observation normalisation but VecNormalizePerTask's (which leaves the one-hot task id alone).
        self.eval_env = VecNormalizePerTask(
            self.eval_env,
            training=False,
            norm_obs=True,
            norm_reward=False,
            clip_obs=train_norm.clip_obs,
            epsilon=train_norm.epsilon,
        )

    def _sync_normalization(self) -> None:
        """Copy the training env's observation statistics into the eval env's ``VecNormalize``."""
        train_norm = self.model.get_vec_normalize_env()
        eval_norm = unwrap_vec_normalize(self.eval_env)  # type: ignore[arg-type]
        if train_norm is None or eval_norm is None or not train_norm.norm_obs:
            return
        # Stack-independent, unlike SB3's sync_envs_normalization (the zoo adds vec_env_wrappers).
        eval_norm.obs_rms = deepcopy(train_norm.obs_rms)
        eval_norm.ret_rms = deepcopy(train_norm.ret_rms)

    def _has_attr(self, name: str) -> bool:
        assert self.eval_env is not None
        try:
            self.eval_env.get_attr(name, indices=[0])
        except AttributeError:
            return False
        return True

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self) -> dict[str, np.ndarray]:
        """Run ``n_eval_episodes`` episodes of every task; return ``returns``/``successes``/``lengths`` ``(T, n)``."""
        assert self.eval_env is not None, "call model.learn(callback=...) (or init_callback) first"
        self._sync_normalization()
        # A TaskAssignmentWrapper in the eval env (rl-zoo3's vec_env_wrapper) would reassign the tasks this
        # evaluation sets: it stands aside while every task is run in turn.
        assigners = task_assignment_wrappers(self.eval_env)
        for wrapper in assigners:
            wrapper.assign = False
        try:
            return self._evaluate()
        finally:
            for wrapper in assigners:
                wrapper.assign = True

    def _evaluate(self) -> dict[str, np.ndarray]:
        env = self.eval_env
        assert env is not None
        n_rows, n_eps = env.num_envs, self.n_eval_episodes
        returns = np.zeros((self.num_tasks, n_eps))
        successes = np.zeros((self.num_tasks, n_eps))
        lengths = np.zeros((self.num_tasks, n_eps), dtype=np.int64)
        for first in range(0, self.num_tasks, n_rows):
            # One round: row r evaluates task first + r (rows beyond the last task run but are ignored).
            row_tasks = [(first + r) % self.num_tasks for r in range(n_rows)]
            active = np.array([first + r < self.num_tasks for r in range(n_rows)])
            for row, task in enumerate(row_tasks):
                env.env_method("set_task", task, indices=[row])
            obs = env.reset()
            done_count = np.zeros(n_rows, dtype=np.int64)
            ep_return = np.zeros(n_rows)
            ep_len = np.zeros(n_rows, dtype=np.int64)
            while (done_count[active] < n_eps).any():
                actions, _ = self.model.predict(obs, deterministic=self.deterministic)  # type: ignore[arg-type]
                obs, rewards, dones, infos = env.step(actions)
                ep_return += rewards
                ep_len += 1
                for done_row in np.flatnonzero(dones):
                    row = int(done_row)
                    if active[row] and done_count[row] < n_eps:
                        task, k = row_tasks[row], int(done_count[row])
                        info = infos[row]
                        if info.get("task_id", task) != task:
                            raise RuntimeError(
                                f"Sub-env {row} of the eval env ran task {info['task_id']} instead of task {task}: "
                                "something outside PerTaskEvalCallback reassigns its tasks. Pass an eval env "
                                "(or env id) whose tasks only the callback sets."
                            )
                        # Monitor's totals are the unnormalised ones, when available.
                        episode = info.get("episode")
                        returns[task, k] = episode["r"] if episode is not None else ep_return[row]
                        lengths[task, k] = episode["l"] if episode is not None else ep_len[row]
                        successes[task, k] = float(info.get("is_success", info.get("success", False)))
                        done_count[row] += 1
                    ep_return[row], ep_len[row] = 0.0, 0
        return {"returns": returns, "successes": successes, "lengths": lengths}

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.num_timesteps - self._last_eval_step >= self.eval_freq:
            self._run_evaluation()
        return True

    def _on_training_end(self) -> None:
        if self.eval_at_end and (not self.timesteps or self.timesteps[-1] != self.num_timesteps):
            self._run_evaluation()

    def _run_evaluation(self) -> None:
        self._last_eval_step = self.num_timesteps
        result = self.evaluate()
        self.timesteps.append(self.num_timesteps)
        self.returns.append(result["returns"])
        self.successes.append(result["successes"])
        self.lengths.append(result["lengths"])
        counts = getattr(self.model, "selection_counts", None)
        if counts is not None:
            self.selection_counts.append(np.array(counts, dtype=np.int64, copy=True))

        success = result["successes"].mean(axis=1)
        mean_return = result["returns"].mean(axis=1)
        for task in range(self.num_tasks):
            self.logger.record(f"{self.log_prefix}/task_{task}/success_rate", float(success[task]))
            self.logger.record(f"{self.log_prefix}/task_{task}/mean_reward", float(mean_return[task]))
        self.logger.record(f"{self.log_prefix}/success_rate", float(success.mean()))
        self.logger.record(f"{self.log_prefix}/mean_reward", float(mean_return.mean()))
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(self.num_timesteps)
        if self.verbose >= 1:
            per_task = " ".join(f"{s:.2f}" for s in success)
            print(
                f"Per-task eval at {self.num_timesteps} steps: success {success.mean():.2f} [{per_task}], "
                f"return {mean_return.mean():.2f}"
            )
        self.save()

    # -- files ---------------------------------------------------------------------------------
    def save(self) -> None:
        """Write all evaluations so far to ``log_path`` (no-op without a ``log_path``: warns once)."""
        if self.log_path is None:
            if not getattr(self, "_warned_no_path", False):
                warnings.warn(
                    "PerTaskEvalCallback has no log_path (and the logger writes to no folder of yours): "
                    "evaluations are logged and kept in memory (callback.timesteps/successes/returns), "
                    "not saved. Pass log_path=... to write evaluations_per_task.npz.",
                    stacklevel=2,
                )
                self._warned_no_path = True
            return
        os.makedirs(self.log_path, exist_ok=True)
        arrays: dict[str, Any] = {
            "timesteps": np.array(self.timesteps, dtype=np.int64),
            "returns": np.array(self.returns),
            "successes": np.array(self.successes),
            "lengths": np.array(self.lengths),
            "task_names": np.array(self.task_names),
        }
        if self.selection_counts and len(self.selection_counts) == len(self.timesteps):
            arrays["selection_counts"] = np.array(self.selection_counts)
        np.savez(os.path.join(self.log_path, EVAL_FILE), **arrays)
        with open(os.path.join(self.log_path, EVAL_CSV), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["timesteps", "task", "task_name", "success_rate", "mean_reward", "mean_length"])
            for step, ret, suc, length in zip(self.timesteps, self.returns, self.successes, self.lengths):
                for task in range(self.num_tasks):
                    writer.writerow(
                        [step, task, self.task_names[task], suc[task].mean(), ret[task].mean(), length[task].mean()]
                    )


def load_evaluations(path: str) -> dict[str, np.ndarray]:
    """Read a :class:`PerTaskEvalCallback` file (the npz, or a folder holding it)."""
    file = os.path.join(path, EVAL_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise FileNotFoundError(f"No per-task evaluation file at {file} (written by PerTaskEvalCallback).")
    with np.load(file, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
