"""rl-zoo3 integration: algorithm registration, default configs, Optuna samplers.

rl-zoo3's public extension points carry most of it: every importable algorithm of
:data:`sb3_qmp.registry.ALGO_PATHS` is added to ``rl_zoo3.utils.ALGOS`` (the dict ``rl_zoo3.train`` builds its
``--algo`` choices from) and gets an Optuna sampler and converter in ``rl_zoo3.hyperparams_opt``'s
``HYPERPARAMS_SAMPLER`` / ``HYPERPARAMS_CONVERTER`` (see :mod:`sb3_qmp.zoo.samplers`); the packaged YAMLs bring
the task assignment (``vec_env_wrapper``) and the per-task evaluation (``callback``). What rl-zoo3 has no
extension point for is done by wrapping the ``ExperimentManager`` methods listed in :data:`PATCHES`: each
wrapper calls rl-zoo3's method and acts for this package's algorithms only, and ``tests/test_zoo_contract.py``
checks the rl-zoo3 behaviour each one relies on.

:func:`register_zoo` does all of it (used by ``python -m sb3_qmp.train`` / ``sb3_qmp.enjoy`` and from
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
# The ExperimentManager methods that are wrapped (rl-zoo3 has no extension point for what they add): name ->
# (what the wrapper adds for this package's algorithms, the rl-zoo3 behaviour it relies on). The same table is
# in docs/zoo.md; tests/test_zoo_contract.py checks every "relies on" and that exactly these are wrapped.
PATCHES: dict[str, tuple[str, str]] = {
    "__init__": (
        "`sb3_qmp/hyperparams/<algo>.yml` when no `-conf` is given; `--resume` keeps the run folder",
        "a `config` parameter (None: rl-zoo3's own `hyperparams/<algo>.yml`) stored as `self.config`, which "
        "`read_hyperparameters` reads; `self.params_path` is `<self.save_path>/<env>`",
    ),
    "read_hyperparameters": (
        "`collector_kwargs` strings evaluated; the envs a YAML covers named when it lacks the requested one",
        "returns `(hyperparams, saved_hyperparams)` of the env's entry of `self.config`; raises "
        '`ValueError("Hyperparameters not found ...")` when there is none',
    ),
    "load_trial": (
        "`--trial-id`: the trial's collector/policy kwargs merged into the YAML's instead of replacing them",
        "`(storage, study_name, trial_id=None, convert=True)` returns `HYPERPARAMS_CONVERTER[algo](trial.params)`; "
        "`read_hyperparameters` updates the YAML entry with it",
    ),
    "setup_experiment": (
        "`PerTaskEvalCallback` writes to the run folder and is left out of `-optimize` trials; checkpoints save the "
        "replay buffer with `--save-replay-buffer`; `-i` loads a checkpoint's own replay buffer; the samplers get "
        "the run's hyperparameters",
        "sets `self._hyperparams`, `self.callbacks` (passed to `model.learn`) and `self.specified_callbacks` (the "
        "YAML's spec, re-created for every trial by `objective`); returns None with `-optimize`, else "
        "`(model, saved_hyperparams)`, the model loaded from `self.trained_agent` when `self.continue_training`",
    ),
    "_maybe_normalize": (
        "`normalize:` builds `VecNormalizePerTask` (per-task reward statistics, one-hot untouched)",
        "`(env, eval_env)`, called by `create_envs` for every env; loads `<dir of -i>/<env>/vecnormalize.pkl` if "
        "present, else wraps `VecNormalize(env, **self.normalize_kwargs)` if `self.normalize`, the eval env with "
        "`training=False, norm_reward=False`",
    ),
    "learn": (
        "`-i` continues the step counters (`learn(reset_num_timesteps=False)`)",
        "`(model)` calls `model.learn(self.n_timesteps, ...)` once, without `reset_num_timesteps`",
    ),
}


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
    """Wrap the :data:`PATCHES` methods of ``ExperimentManager`` in place (idempotent); other algorithms
    behave exactly as before."""
    if getattr(cls, _PATCHED, False):
        return
    orig: dict[str, Any] = {}  # rl-zoo3's methods, by name (filled in below)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        orig["__init__"](self, *args, **kwargs)
        if self.algo not in ALGO_PATHS:
            return
        if not inspect.signature(orig["__init__"]).bind(self, *args, **kwargs).arguments.get("config"):
            self.config = str(default_config_path(self.algo))
        if RUN_OPTIONS.resume_dir is not None:
            # --resume: the run continues in its own folder (rl-zoo3 would number a new one).
            self.save_path = str(RUN_OPTIONS.resume_dir)
            self.params_path = f"{self.save_path}/{self.env_name}"

    def read_hyperparameters(self: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.algo not in ALGO_PATHS:
            return orig["read_hyperparameters"](self)
        try:
            hyperparams, saved = orig["read_hyperparameters"](self)
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
        if isinstance(hyperparams.get("collector_kwargs"), str):
            hyperparams["collector_kwargs"] = collector_kwargs_from_string(hyperparams["collector_kwargs"])
        return hyperparams, saved

    def load_trial(self: Any, storage: str, study_name: str, trial_id: int | None = None, convert: bool = True) -> Any:
        params = orig["load_trial"](self, storage, study_name, trial_id, convert)
        if convert and self.algo in ALGO_PATHS:
            params = merge_nested(_yaml_entry(self), params)
        return params

    def setup_experiment(self: Any) -> Any:
        result = orig["setup_experiment"](self)
        if self.algo not in ALGO_PATHS:
            return result
        from stable_baselines3.common.callbacks import CheckpointCallback

        from sb3_qmp.common.callbacks import PerTaskEvalCallback

        OPTIMIZE_BASE[self.algo] = dict(self._hyperparams)
        if self.optimize_hyperparameters:
            # Trials re-create the YAML's callbacks from this spec (see without_per_task_eval).
            kept = without_per_task_eval(self.specified_callbacks)
            if self.verbose > 0 and len(kept) < len(_callback_entries(self.specified_callbacks)):
                print("PerTaskEvalCallback is left out of -optimize trials (retrain with --trial-id for it).")
            self.specified_callbacks = kept
        for callback in self.callbacks:
            if isinstance(callback, PerTaskEvalCallback) and callback.log_path is None:
                callback.log_path = self.save_path  # the YAML cannot name the run folder
            if isinstance(callback, CheckpointCallback) and self.save_replay_buffer:
                # A killed run leaves only its checkpoints: each needs its buffer to be resumed with -i.
                callback.save_replay_buffer = True
        if RUN_OPTIONS.checkpointing and not self.optimize_hyperparameters:
            self.callbacks.append(_run_checkpoint_callback(self))
        if result is not None and self.continue_training:
            _load_checkpoint_buffer(self, result[0])
        return result

    def _maybe_normalize(self: Any, env: Any, eval_env: bool) -> Any:
        saved = os.path.join(os.path.dirname(self.trained_agent), self.env_name, "vecnormalize.pkl")  # as rl-zoo3
        if self.algo not in ALGO_PATHS or not self.normalize or os.path.exists(saved):
            return orig["_maybe_normalize"](self, env, eval_env)  # saved statistics load as the class saved
        from sb3_qmp.common.normalize import VecNormalizePerTask

        kwargs = dict(self.normalize_kwargs)
        if eval_env:  # as rl-zoo3 does for VecNormalize
            kwargs.update(norm_reward=False, training=False)
        if self.verbose > 0:
            print(f"Per-task normalisation (VecNormalizePerTask): {kwargs}")
        return VecNormalizePerTask(env, **kwargs)

    def learn(self: Any, model: Any) -> None:
        if self.algo in ALGO_PATHS and self.continue_training:
            # -i resumes the run: keep the step counters (learning_starts, mixture warm-up, DnC's schedule and
            # the logs' x-axis continue); -n is the number of further env steps.
            model = _ContinuedRun(model)
        return orig["learn"](self, model)

    wrappers = (__init__, read_hyperparameters, load_trial, setup_experiment, _maybe_normalize, learn)
    orig.update({wrapper.__name__: getattr(cls, wrapper.__name__) for wrapper in wrappers})  # all, or none patched
    for wrapper in wrappers:
        setattr(cls, wrapper.__name__, functools.wraps(orig[wrapper.__name__])(wrapper))
    setattr(cls, _PATCHED, True)


def _load_checkpoint_buffer(manager: Any, model: Any) -> None:
    """``-i``: load the replay buffer SB3's ``CheckpointCallback`` saved with the checkpoint (rl-zoo3 only loads
    ``replay_buffer.pkl`` next to the model, which a killed run never wrote), or warn if there is none."""
    buffer = checkpoint_replay_buffer(manager.trained_agent)
    if buffer is not None:  # a checkpoint: its own buffer matches its step count
        print(f"Loading the checkpoint's replay buffer {buffer}")
        model.load_replay_buffer(buffer, truncate_last_traj=manager.truncate_last_trajectory)
    elif model.replay_buffer is not None and model.replay_buffer.size() == 0:
        warnings.warn(
            f"No replay buffer next to {manager.trained_agent} (replay_buffer.pkl, or the checkpoint's "
            "<prefix>_replay_buffer_<N>_steps.pkl): training continues from an empty buffer. Train with "
            "--save-replay-buffer (and --save-freq for checkpoints) to be able to resume with the buffer.",
            stacklevel=3,
        )


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
    algos, _ = available_algos()
    if module.__name__ == "rl_zoo3.utils":
        module.ALGOS.update(algos)
    elif module.__name__ == "rl_zoo3.hyperparams_opt":
        from sb3_qmp.zoo.samplers import make_converter, make_sampler  # imports optuna: only where rl-zoo3 does

        for name in algos:
            module.HYPERPARAMS_SAMPLER[name] = make_sampler(name)
            module.HYPERPARAMS_CONVERTER[name] = make_converter(name)
    elif module.__name__ == "rl_zoo3.exp_manager":
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
    "PATCHES",
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
