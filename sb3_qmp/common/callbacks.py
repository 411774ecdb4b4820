"""Per-task evaluation of multi-task agents during training: each task's own policy and, for the
algorithms that collect with one, the mixture (see :mod:`sb3_qmp.common.evaluation`)."""

from __future__ import annotations

import csv
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from copy import deepcopy
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HumanOutputFormat, Logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, unwrap_vec_normalize

from sb3_qmp.common.evaluation import (
    Episodes,
    acting_policy,
    check_eval_modes,
    empty_episodes,
    npz_key,
    reported,
    resolve_eval_modes,
    run_episodes,
)
from sb3_qmp.common.files import atomic_open, atomic_savez
from sb3_qmp.common.normalize import VecNormalizePerTask
from sb3_qmp.common.vec_env import get_num_tasks, make_multitask_vec_env, task_assignment_wrappers

EVAL_FILE = "evaluations_per_task.npz"
EVAL_CSV = "evaluations_per_task.csv"
# The order of a mode's arrays in the npz file.
NPZ_ORDER: tuple[str, ...] = ("return", "success", "success_any_step", "length", "stages")
# The csv's columns: after timesteps, mode, task and task name the means of CSV_METRICS, then stages completed.
CSV_HEADER = "timesteps mode task task_name success_rate success_any_step_rate mean_reward mean_length stages_completed"
CSV_METRICS: tuple[str, ...] = ("success", "success_any_step", "return", "length")
# The folder SB3's ``configure()`` invents when given none (``<tmp>/SB3-<date-time>``).
_SB3_TEMP_DIR = re.compile(r"^SB3-\d{4}(-\d{2}){5}-\d{6}$")


def _nanmean(values: np.ndarray) -> float:
    """Mean over the reported values (``nan`` if none, without numpy's empty-slice warning)."""
    reported = values[~np.isnan(values)]
    return float(reported.mean()) if reported.size else float("nan")


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
    """Evaluate every task on its own, every ``eval_freq`` env steps, in one or two evaluation modes.

    The episodes run in :func:`~sb3_qmp.common.evaluation.run_episodes` (modes ``"own"`` and ``"mixture"``,
    metrics and their meaning there); this callback schedules them, logs them and writes them. Both modes run
    the same episodes: the same env rows and start states (the env is re-seeded every evaluation from ``seed``).
    The mixture runs on its own copy of the collector: evaluating never changes collection.

    * Logger (stdout, tensorboard, csv): ``<log_prefix>/task_<i>/success_rate`` (strict), ``success_any_step_rate``
      (the paper's), ``mean_reward``, ``stages_completed`` (where reported) and their means over tasks; the
      mixture's under ``<log_prefix>/mixture/``.
    * ``log_path/evaluations_per_task.npz`` (read by ``python -m sb3_qmp.plot`` and :mod:`sb3_qmp.common.results`):
      ``timesteps (K,)``, every metric's episodes ``(K, T, n_eval_episodes)`` under its npz key
      (:func:`~sb3_qmp.common.evaluation.npz_key`), ``eval_modes``, ``task_names`` and the model's cumulative
      ``selection_counts (K, T, T)``; and ``evaluations_per_task.csv``, one row per evaluation, mode and task.
    * In memory: ``timesteps``, ``selection_counts`` and ``history[npz key]``.

    A training env wrapped in :class:`~sb3_qmp.common.normalize.VecNormalizePerTask` with ``norm_obs`` gets an
    eval env normalised with the training statistics (copied before every evaluation; rewards stay raw).
    From rl-zoo3, add it to a YAML entry's ``callback`` list (see docs/zoo.md).

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
    :param deterministic: deterministic actions (the paper's evaluation; the mixture executes the chosen
        policy's mean action).
    :param log_prefix: logger key prefix (``eval`` is left to SB3's ``EvalCallback``).
    :param eval_at_end: also evaluate when training ends (if the last evaluation is older).
    :param env_kwargs: keyword arguments for ``gym.make`` when the callback builds the env.
    :param seed: seed of the evaluation env it builds, of every evaluation's start states (the same in
        every mode) and of the mixture's random choices (``None``: fresh entropy).
    :param eval_modes: ``"auto"`` (own, plus the mixture for models that have one) or a sequence such as
        ``("own",)`` or ``("own", "mixture")`` (asking a model without a mixture for it is an error).
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
        eval_modes: str | Sequence[str] = "auto",
        verbose: int = 1,
    ) -> None:
        super().__init__(verbose)
        if n_eval_episodes < 1:
            raise ValueError(f"n_eval_episodes (per task) must be >= 1, got {n_eval_episodes}.")
        self._eval_modes_arg = check_eval_modes(eval_modes)
        self.eval_modes: tuple[str, ...] = ()  # resolved for the model in init_callback
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
        # Per-episode results of every evaluation, by npz key (evaluation.npz_key).
        self.history: dict[str, list[np.ndarray]] = {}
        self.selection_counts: list[np.ndarray] = []
        self._seeds = np.random.default_rng(seed)
        self._restore_data: dict[str, np.ndarray] | None = None
        self._restore_path = ""

    @property
    def returns(self) -> list[np.ndarray]:
        """Own-policy returns of every evaluation, ``(T, n_eval_episodes)`` each."""
        return self.history.setdefault("returns", [])

    @property
    def successes(self) -> list[np.ndarray]:
        """Own-policy strict successes (``info["is_success"]`` at the episode's end) of every evaluation."""
        return self.history.setdefault("successes", [])

    @property
    def lengths(self) -> list[np.ndarray]:
        """Own-policy episode lengths of every evaluation."""
        return self.history.setdefault("lengths", [])

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
        self.eval_modes = resolve_eval_modes(self.model, self._eval_modes_arg)
        names = self.eval_env.get_attr("task_names", indices=[0])[0] if self._has_attr("task_names") else None
        self.task_names = list(names) if names else [f"task_{i}" for i in range(self.num_tasks)]
        self._match_normalization()
        if self.log_path is None:
            self.log_path = chosen_log_dir(getattr(self.model, "_logger", None))  # no logger: never learned
        self._apply_restore()

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
    def evaluate(self) -> dict[str, Episodes]:
        """Run ``n_eval_episodes`` episodes of every task in every mode of ``eval_modes``.

        :return: per mode, every metric's episodes ``(T, n_eval_episodes)`` (``stages`` where the env reports it).
        """
        env = self.eval_env
        assert env is not None, "call model.learn(callback=...) (or init_callback) first"
        self._sync_normalization()
        # A TaskAssignmentWrapper in the eval env (rl-zoo3's vec_env_wrapper) would reassign the tasks this
        # evaluation sets: it stands aside while every task is run in turn.
        assigners = task_assignment_wrappers(env)
        for wrapper in assigners:
            wrapper.assign = False
        try:
            # One seed per round of tasks, shared by the modes: both see the same start states.
            n_rows = env.num_envs
            round_seeds = self._seeds.integers(2**31 - 2**20, size=-(-self.num_tasks // n_rows)).tolist()
            result: dict[str, Episodes] = {}
            for mode in self.eval_modes:
                policy = acting_policy(self.model, mode, round_seeds[0])
                episodes = empty_episodes(self.num_tasks, self.n_eval_episodes)
                for first, round_seed in zip(range(0, self.num_tasks, n_rows), round_seeds):
                    # One round: row r evaluates task first + r (rows beyond the last task run but are ignored).
                    for row in range(n_rows):
                        env.env_method("set_task", (first + row) % self.num_tasks, indices=[row])
                    env.seed(round_seed)
                    row_tasks = [first + row if first + row < self.num_tasks else None for row in range(n_rows)]
                    run_episodes(policy, env, row_tasks, self.n_eval_episodes, episodes, self.deterministic)
                result[mode] = reported(episodes)
            return result
        finally:
            for wrapper in assigners:
                wrapper.assign = True

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
        shape = (self.num_tasks, self.n_eval_episodes)
        for mode, episodes in result.items():
            for metric in NPZ_ORDER:
                self.history.setdefault(npz_key(metric, mode), []).append(episodes.get(metric, np.full(shape, np.nan)))
        counts = getattr(self.model, "selection_counts", None)
        if counts is not None:
            self.selection_counts.append(np.array(counts, dtype=np.int64, copy=True))
        summaries = [self._log_mode(episodes, mode) for mode, episodes in result.items()]
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(self.num_timesteps)
        if self.verbose >= 1:
            print(
                f"Per-task eval at {self.num_timesteps} steps: "
                + "; ".join(f"{mode} {summary}" for mode, summary in zip(result, summaries))
            )
        self.save()

    def _log_mode(self, episodes: Episodes, mode: str) -> str:
        """Record one mode's per-task and mean numbers; return a summary line. The own policies' keys are
        ``<log_prefix>/...`` and their per-task strict success and return also go to stdout; the mixture's are
        ``<log_prefix>/mixture/...``."""
        key_prefix = self.log_prefix if mode == "own" else f"{self.log_prefix}/{mode}"
        success, any_step = episodes["success"].mean(axis=1), episodes["success_any_step"].mean(axis=1)
        mean_return, stages = episodes["return"].mean(axis=1), episodes.get("stages")
        per_task_exclude = None if mode == "own" else "stdout"
        for task in range(self.num_tasks):
            key = f"{key_prefix}/task_{task}"
            self.logger.record(f"{key}/success_rate", float(success[task]), exclude=per_task_exclude)
            self.logger.record(f"{key}/mean_reward", float(mean_return[task]), exclude=per_task_exclude)
            self.logger.record(f"{key}/success_any_step_rate", float(any_step[task]), exclude="stdout")
            if stages is not None:
                self.logger.record(f"{key}/stages_completed", _nanmean(stages[task]), exclude="stdout")
        self.logger.record(f"{key_prefix}/success_rate", float(success.mean()))
        if stages is not None:
            self.logger.record(f"{key_prefix}/stages_completed", _nanmean(stages))
        self.logger.record(f"{key_prefix}/success_any_step_rate", float(any_step.mean()))
        self.logger.record(f"{key_prefix}/mean_reward", float(mean_return.mean()))
        per_task = " ".join(f"{s:.2f}" for s in success)
        return f"success {success.mean():.2f} [{per_task}], any-step {any_step.mean():.2f}, return {mean_return.mean():.2f}"

    def restore(self, path: str) -> None:
        """Continue the evaluation history saved in ``path`` (an ``evaluations_per_task.npz`` or its folder).

        Used when a run resumes from a checkpoint: the next evaluation is appended to these rows, the
        evaluation schedule continues from the last one, and the evaluation seeds continue their sequence
        (the start states are those an uninterrupted run would have used). Takes effect when the callback
        is initialised by ``learn`` (at once if it already is).

        :param path: the npz file, or the folder holding it.
        :raises ValueError: (at initialisation) if the file holds other tasks or evaluation modes.
        """
        self._restore_data = load_evaluations(path)
        self._restore_path = path
        if self.eval_env is not None:
            self._apply_restore()

    def _apply_restore(self) -> None:
        data, path = self._restore_data, self._restore_path
        self._restore_data = None
        if data is None:
            return
        names = [str(name) for name in data.get("task_names", [])]
        modes = tuple(str(mode) for mode in data.get("eval_modes", []))
        if names and names != self.task_names:
            raise ValueError(f"{path} holds evaluations of tasks {names}; this callback evaluates {self.task_names}.")
        if modes and modes != self.eval_modes:
            raise ValueError(f"{path} holds evaluation modes {modes}; this callback runs {self.eval_modes}.")
        self.timesteps = [int(step) for step in data["timesteps"]]
        meta = ("timesteps", "task_names", "eval_modes", "selection_counts")
        self.history = {key: list(data[key]) for key in data if key not in meta}
        self.selection_counts = list(data["selection_counts"]) if "selection_counts" in data else []
        self._last_eval_step = self.timesteps[-1] if self.timesteps else 0
        assert self.eval_env is not None
        n_rounds = -(-self.num_tasks // self.eval_env.num_envs)
        for _ in self.timesteps:  # one draw of round seeds per evaluation, as in evaluate()
            self._seeds.integers(2**31 - 2**20, size=n_rounds)

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
            "task_names": np.array(self.task_names),
            "eval_modes": np.array(self.eval_modes),
        }
        for key, values in self.history.items():
            if len(values) != len(self.timesteps):
                continue
            stacked = np.array(values)
            # Stages only where the env reports them (never an all-nan array).
            if key.endswith("stages_completed") and np.isnan(stacked).all():
                continue
            arrays[key] = stacked
        if self.selection_counts and len(self.selection_counts) == len(self.timesteps):
            arrays["selection_counts"] = np.array(self.selection_counts)
        # Atomic: a run killed while writing keeps its previous complete files (read by plots and resumes).
        atomic_savez(os.path.join(self.log_path, EVAL_FILE), **arrays)
        self._write_csv(arrays)

    def _write_csv(self, arrays: dict[str, Any]) -> None:
        """One row per evaluation, mode and task (``stages_completed`` empty where the env reports none)."""
        assert self.log_path is not None
        with atomic_open(os.path.join(self.log_path, EVAL_CSV), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_HEADER.split())
            for k, step in enumerate(self.timesteps):
                for mode in self.eval_modes:
                    stages = arrays.get(npz_key("stages", mode))
                    for task in range(self.num_tasks):
                        means = [arrays[npz_key(metric, mode)][k, task].mean() for metric in CSV_METRICS]
                        stage = "" if stages is None else _nanmean(stages[k, task])
                        writer.writerow([step, mode, task, self.task_names[task], *means, stage])


def load_evaluations(path: str) -> dict[str, np.ndarray]:
    """Read a :class:`PerTaskEvalCallback` file (the npz, or a folder holding it)."""
    file = os.path.join(path, EVAL_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise FileNotFoundError(f"No per-task evaluation file at {file} (written by PerTaskEvalCallback).")
    with np.load(file, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
