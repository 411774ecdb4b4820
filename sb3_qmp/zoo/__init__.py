"""rl-zoo3 integration: algorithm registration, default configs, Optuna samplers.

Three rl-zoo3 modules are patched in place (idempotently):

* ``rl_zoo3.utils``: every importable algorithm of :data:`sb3_qmp.registry.ALGO_PATHS` is added to
  ``ALGOS`` (the dict ``rl_zoo3.train`` builds its ``--algo`` choices from);
* ``rl_zoo3.hyperparams_opt``: ``HYPERPARAMS_SAMPLER`` / ``HYPERPARAMS_CONVERTER`` get one entry per
  algorithm (see :mod:`sb3_qmp.zoo.samplers`);
* ``rl_zoo3.exp_manager``: ``ExperimentManager`` reads ``sb3_qmp/hyperparams/<algo>.yml`` for our
  algorithms when no ``-conf`` is given, points :class:`~sb3_qmp.common.callbacks.PerTaskEvalCallback`
  instances created from the YAML at the run folder, leaves that callback out of ``-optimize`` trials
  (see :func:`without_per_task_eval`), names the envs a YAML covers when it does not cover the
  requested one, makes the ``normalize:`` key build
  :class:`~sb3_qmp.common.normalize.VecNormalizePerTask` (per-task reward statistics, one-hot untouched),
  and makes ``-i`` resume a run (see :func:`checkpoint_replay_buffer` and ``docs/zoo.md``):
  the step counters continue (``learn(reset_num_timesteps=False)``), a checkpoint's own replay buffer
  is loaded with it, and ``--save-replay-buffer`` also saves the buffer with every ``--save-freq`` checkpoint.

:func:`register_zoo` does all three (used by ``python -m sb3_qmp.train`` / ``sb3_qmp.enjoy`` and from
Python); the start-up hook ``sb3_qmp_zoo_hook`` calls :func:`patch_zoo_module` as each module is
imported, so that the literal ``python -m rl_zoo3.train --algo qmp`` works too.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import types
import warnings
from pathlib import Path
from typing import Any

from sb3_qmp.registry import ALGO_PATHS, get_algo
from sb3_qmp.zoo.resume import RUN_OPTIONS, restore_evaluations

CONFIG_DIR = Path(__file__).resolve().parent.parent / "hyperparams"
_PATCHED = "_sb3_qmp_patched"
# Hyperparameters of the running optimisation, per algorithm (the samplers merge nested dicts into them).
OPTIMIZE_BASE: dict[str, dict[str, Any]] = {}
# Nested kwargs that sampled values are merged into rather than replacing.
NESTED_KEYS = ("collector_kwargs", "policy_kwargs")


def default_config_path(algo: str) -> Path:
    """The packaged hyperparameter YAML of ``algo`` (``sb3_qmp/hyperparams/<algo>.yml``)."""
    if algo not in ALGO_PATHS:
        raise ValueError(f"Unknown algorithm {algo!r}; sb3-qmp provides {sorted(ALGO_PATHS)}.")
    return CONFIG_DIR / f"{algo}.yml"


def available_algos() -> tuple[dict[str, type[Any]], dict[str, str]]:
    """The algorithms that import now, by name, and the reason for each one that does not."""
    algos: dict[str, type[Any]] = {}
    missing: dict[str, str] = {}
    for name in ALGO_PATHS:
        try:
            algos[name] = get_algo(name)
        except (ImportError, AttributeError) as e:
            missing[name] = f"{type(e).__name__}: {e}"
    return algos, missing


def collector_kwargs_from_string(text: str) -> dict[str, Any]:
    """A YAML / ``-params`` string such as ``"dict(own_prob=0.5)"`` as the dict it spells (evaluated as rl-zoo3
    evaluates ``policy_kwargs`` strings: with ``np``, ``th`` and ``nn`` in scope)."""
    import numpy as np
    import torch as th

    try:
        value = eval(text, {"dict": dict, "np": np, "th": th, "nn": th.nn})
    except Exception as error:
        raise ValueError(
            f"collector_kwargs {text!r} is not a Python expression ({error}); write e.g. 'dict(own_prob=0.5)'."
        ) from error
    if not isinstance(value, dict):
        raise ValueError(
            f"collector_kwargs {text!r} gives a {type(value).__name__}, not a dict: write e.g. 'dict(own_prob=0.5)'."
        )
    return value


def merge_nested(base: dict[str, Any] | None, update: dict[str, Any]) -> dict[str, Any]:
    """``update`` with its :data:`NESTED_KEYS` dicts merged over those of ``base`` (other keys replace)."""
    merged = dict(update)
    for key in NESTED_KEYS:
        if base is not None and isinstance(base.get(key), dict) and isinstance(update.get(key), dict):
            merged[key] = {**base[key], **update[key]}
    return merged


# ----------------------------------------------------------------------------------------------
# rl_zoo3.utils / rl_zoo3.hyperparams_opt
# ----------------------------------------------------------------------------------------------
def register_algos(algos_dict: dict[str, Any]) -> list[str]:
    """Add every importable algorithm to rl-zoo3's ``ALGOS`` dict; return the names added."""
    algos, _ = available_algos()
    algos_dict.update(algos)
    return sorted(algos)


def register_samplers(samplers: dict[str, Any], converters: dict[str, Any]) -> list[str]:
    """Add an Optuna sampler and converter for every importable algorithm; return the names."""
    from sb3_qmp.zoo.samplers import make_converter, make_sampler

    algos, _ = available_algos()
    for name in algos:
        samplers[name] = make_sampler(name)
        converters[name] = make_converter(name)
    return sorted(algos)


# ----------------------------------------------------------------------------------------------
# rl_zoo3.exp_manager.ExperimentManager
# ----------------------------------------------------------------------------------------------
def _callback_entries(spec: Any) -> list[Any]:
    return [] if spec is None else list(spec) if isinstance(spec, list) else [spec]


def without_per_task_eval(spec: Any) -> list[Any]:
    """A zoo ``callback:`` spec without its :class:`~sb3_qmp.common.callbacks.PerTaskEvalCallback` entries.

    ``-optimize`` trials are scored by the zoo's own ``TrialEvalCallback``; a per-task evaluation
    would only add its cost to every trial, and a trial has no run folder to write it to (SB3 would
    give it a throw-away temp folder). Retrain a trial with ``--trial-id`` for per-task curves.

    :param spec: the YAML's ``callback`` value: ``None``, a name, a ``{name: kwargs}`` dict, a
        callback instance or a list of those.
    """
    from rl_zoo3.utils import get_class_by_name

    from sb3_qmp.common.callbacks import PerTaskEvalCallback

    kept = []
    for entry in _callback_entries(spec):
        target = next(iter(entry)) if isinstance(entry, dict) and len(entry) == 1 else entry
        if isinstance(target, str):
            # A name that does not resolve is not ours to judge: the zoo reports it.
            with contextlib.suppress(ImportError, AttributeError, ValueError):
                target = get_class_by_name(target)
        is_per_task = isinstance(target, PerTaskEvalCallback) or (
            isinstance(target, type) and issubclass(target, PerTaskEvalCallback)
        )
        if not is_per_task:
            kept.append(entry)
    return kept


def _yaml_entry(manager: Any) -> dict[str, Any] | None:
    """The raw YAML entry of the manager's env in its config file (``None`` if not a YAML or absent)."""
    import yaml

    config = str(manager.config)
    if not config.endswith((".yml", ".yaml")) or not Path(config).is_file():
        return None
    with open(config) as f:
        entries = yaml.safe_load(f) or {}
    entry = entries.get(manager.env_name.gym_id, entries.get("default"))
    return entry if isinstance(entry, dict) else None


def _saved_normalization(manager: Any) -> str:
    """Where ``ExperimentManager._maybe_normalize`` looks for the statistics of a pretrained agent (``-i``)."""
    return os.path.join(os.path.dirname(manager.trained_agent), manager.env_name, "vecnormalize.pkl")


def checkpoint_replay_buffer(model_path: str | Path) -> Path | None:
    """The replay buffer that SB3's ``CheckpointCallback`` saved with the checkpoint ``model_path``.

    ``<prefix>_<N>_steps.zip`` -> ``<prefix>_replay_buffer_<N>_steps.pkl`` in the same folder (``None``
    if ``model_path`` is not a checkpoint or that file does not exist).
    """
    path = Path(model_path)
    match = re.fullmatch(r"(?P<prefix>.+)_(?P<steps>\d+)_steps\.zip", path.name)
    if match is None:
        return None
    buffer = path.with_name(f"{match['prefix']}_replay_buffer_{match['steps']}_steps.pkl")
    return buffer if buffer.is_file() else None


class _ContinuedRun:
    """The model as the zoo's ``learn`` sees it when continuing (``-i``): ``learn`` keeps the step counters
    (``reset_num_timesteps=False``); every other attribute is the model's."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def learn(self, *args: Any, **kwargs: Any) -> Any:
        return self._model.learn(*args, reset_num_timesteps=False, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def patch_experiment_manager(cls: type[Any]) -> None:
    """Patch ``ExperimentManager`` in place (idempotent); other algorithms behave exactly as before."""
    if getattr(cls, _PATCHED, False):
        return
    orig_init = cls.__init__
    orig_read = cls.read_hyperparameters
    orig_load_trial = cls.load_trial
    orig_setup = cls.setup_experiment
    orig_maybe_normalize = cls._maybe_normalize
    orig_load_pretrained = cls._load_pretrained_agent
    orig_learn = cls.learn
    init_signature = inspect.signature(orig_init)

    @functools.wraps(orig_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        orig_init(self, *args, **kwargs)
        bound = init_signature.bind(self, *args, **kwargs)
        if self.algo in ALGO_PATHS and not bound.arguments.get("config"):
            self.config = str(default_config_path(self.algo))
        if self.algo in ALGO_PATHS and RUN_OPTIONS.resume_dir is not None:
            # --resume: the run continues in its own folder (rl-zoo3 would number a new one).
            self.save_path = str(RUN_OPTIONS.resume_dir)
            self.params_path = f"{self.save_path}/{self.env_name}"

    @functools.wraps(orig_read)
    def read_hyperparameters(self: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.algo not in ALGO_PATHS:
            return orig_read(self)
        try:
            hyperparams, saved = orig_read(self)
            if isinstance(hyperparams.get("collector_kwargs"), str):
                hyperparams["collector_kwargs"] = collector_kwargs_from_string(hyperparams["collector_kwargs"])
            return hyperparams, saved
        except ValueError as e:
            if "Hyperparameters not found" not in str(e):
                raise
            import yaml

            with open(self.config) as f:
                covered = sorted(yaml.safe_load(f) or {})
            raise ValueError(
                f"{self.config} has no entry for env {self.env_name.gym_id!r}; it covers {covered}. "
                f"Add an entry for {self.env_name.gym_id!r} to a copy of that file and pass it with -conf <file.yml>."
            ) from e

    @functools.wraps(orig_load_trial)
    def load_trial(self: Any, storage: str, study_name: str, trial_id: int | None = None, convert: bool = True) -> Any:
        params = orig_load_trial(self, storage, study_name, trial_id, convert)
        if convert and self.algo in ALGO_PATHS:
            # The trial's collector/policy kwargs complete the YAML's instead of replacing them.
            params = merge_nested(_yaml_entry(self), params)
        return params

    @functools.wraps(orig_setup)
    def setup_experiment(self: Any) -> Any:
        result = orig_setup(self)
        if self.algo in ALGO_PATHS:
            OPTIMIZE_BASE[self.algo] = dict(self._hyperparams)
            from sb3_qmp.common.callbacks import PerTaskEvalCallback

            if self.optimize_hyperparameters:
                # Trials re-create the YAML's callbacks from this spec (see without_per_task_eval).
                kept = without_per_task_eval(self.specified_callbacks)
                if self.verbose > 0 and len(kept) < len(_callback_entries(self.specified_callbacks)):
                    print("PerTaskEvalCallback is left out of -optimize trials (retrain with --trial-id for it).")
                self.specified_callbacks = kept

            from stable_baselines3.common.callbacks import CheckpointCallback

            for callback in self.callbacks:
                if isinstance(callback, PerTaskEvalCallback) and callback.log_path is None:
                    callback.log_path = self.save_path
                if isinstance(callback, CheckpointCallback) and self.save_replay_buffer:
                    # A killed run leaves only its checkpoints: each needs its buffer to be resumed with -i.
                    callback.save_replay_buffer = True
            if RUN_OPTIONS.checkpointing and not self.optimize_hyperparameters:
                self.callbacks.append(_run_checkpoint_callback(self))
        return result

    @functools.wraps(orig_maybe_normalize)
    def _maybe_normalize(self: Any, env: Any, eval_env: bool) -> Any:
        if self.algo not in ALGO_PATHS or not self.normalize or os.path.exists(_saved_normalization(self)):
            return orig_maybe_normalize(self, env, eval_env)  # saved statistics load as the class they were saved as
        from sb3_qmp.common.normalize import VecNormalizePerTask

        kwargs = dict(self.normalize_kwargs)
        if eval_env:  # as the zoo does for VecNormalize
            kwargs.update(norm_reward=False, training=False)
        if self.verbose > 0:
            print(f"Per-task normalisation (VecNormalizePerTask): {kwargs}")
        return VecNormalizePerTask(env, **kwargs)

    @functools.wraps(orig_load_pretrained)
    def _load_pretrained_agent(self: Any, hyperparams: dict[str, Any], env: Any) -> Any:
        # The zoo loads `replay_buffer.pkl` next to the model (what --save-replay-buffer writes at the end).
        model = orig_load_pretrained(self, hyperparams, env)
        if self.algo not in ALGO_PATHS:
            return model
        buffer = checkpoint_replay_buffer(self.trained_agent)
        if buffer is not None:  # a checkpoint: its own buffer matches its step count
            print(f"Loading the checkpoint's replay buffer {buffer}")
            model.load_replay_buffer(buffer, truncate_last_traj=self.truncate_last_trajectory)
        elif model.replay_buffer is not None and model.replay_buffer.size() == 0:
            warnings.warn(
                f"No replay buffer next to {self.trained_agent} (replay_buffer.pkl, or the checkpoint's "
                "<prefix>_replay_buffer_<N>_steps.pkl): training continues from an empty buffer. Train with "
                "--save-replay-buffer (and --save-freq for checkpoints) to be able to resume with the buffer.",
                stacklevel=2,
            )
        return model

    @functools.wraps(orig_learn)
    def learn(self: Any, model: Any) -> None:
        if self.algo in ALGO_PATHS and self.continue_training:
            # -i resumes the run: keep the step counters (learning_starts, mixture warm-up, DnC's schedule and
            # the logs' x-axis continue); -n is the number of further env steps.
            return orig_learn(self, _ContinuedRun(model))
        return orig_learn(self, model)

    cls.__init__ = __init__
    cls.read_hyperparameters = read_hyperparameters
    cls._maybe_normalize = _maybe_normalize
    cls.load_trial = load_trial
    cls.setup_experiment = setup_experiment
    cls._load_pretrained_agent = _load_pretrained_agent
    cls.learn = learn
    setattr(cls, _PATCHED, True)


def _run_checkpoint_callback(manager: Any) -> Any:
    """The checkpoint callback of ``python -m sb3_qmp.train --checkpoint-minutes/--resume``; when resuming,
    the YAML's per-task evaluation continues the checkpoint's evaluation history."""
    from sb3_qmp.common.callbacks import PerTaskEvalCallback
    from sb3_qmp.common.checkpoints import RunCheckpointCallback

    evals = next((c for c in manager.callbacks if isinstance(c, PerTaskEvalCallback)), None)
    checkpoint = RUN_OPTIONS.checkpoint
    if checkpoint is not None and RUN_OPTIONS.resume_dir is not None:
        restored = restore_evaluations(checkpoint, Path(manager.save_path))
        if restored is not None and evals is not None:
            evals.restore(str(restored))
    return RunCheckpointCallback(
        manager.save_path,
        every_minutes=RUN_OPTIONS.checkpoint_minutes,
        every_steps=RUN_OPTIONS.checkpoint_steps,
        env_id=str(manager.env_name),
        eval_callback=evals,
        verbose=manager.verbose,
    )


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------
def patch_zoo_module(module: types.ModuleType) -> None:
    """Register this package in one freshly imported rl-zoo3 module (called by the start-up hook)."""
    name = module.__name__
    if name == "rl_zoo3.utils":
        register_algos(module.ALGOS)
    elif name == "rl_zoo3.hyperparams_opt":
        register_samplers(module.HYPERPARAMS_SAMPLER, module.HYPERPARAMS_CONVERTER)
    elif name == "rl_zoo3.exp_manager":
        patch_experiment_manager(module.ExperimentManager)


def register_zoo() -> list[str]:
    """Register every importable algorithm, its Optuna sampler and its default config in rl-zoo3.

    Idempotent. Returns the registered algorithm names (those whose module imports).

    :raises ImportError: if rl-zoo3 is not installed.
    """
    import importlib

    try:
        modules = [importlib.import_module(f"rl_zoo3.{m}") for m in ("utils", "hyperparams_opt", "exp_manager")]
    except ImportError as e:
        raise ImportError(f"rl-zoo3 is needed for this ({e}); install it with `pip install rl_zoo3`.") from e
    for module in modules:
        patch_zoo_module(module)
    return sorted(name for name in ALGO_PATHS if name in modules[0].ALGOS)


__all__ = [
    "CONFIG_DIR",
    "available_algos",
    "checkpoint_replay_buffer",
    "collector_kwargs_from_string",
    "default_config_path",
    "merge_nested",
    "patch_experiment_manager",
    "patch_zoo_module",
    "register_zoo",
    "without_per_task_eval",
]
