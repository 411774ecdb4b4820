"""Run checkpoints that a killed run resumes from, and the progress file a grid reads while it runs.

A checkpoint is a folder ``<run>/checkpoints/<num_timesteps, 12 digits>/`` holding everything a run needs
to continue as if it had not stopped:

* ``model.zip``: weights, optimizers, step and update counters, the collector's and the per-task episode
  statistics, selection counts (``model.save``);
* ``replay_buffer.pkl``: the per-task replay buffer;
* ``<env id>/vecnormalize.pkl``: the per-task normalisation statistics (when the env is normalised; this
  is where rl-zoo3's ``-i`` looks for them);
* ``evaluations_per_task.npz`` / ``.csv``: the evaluation history so far;
* ``checkpoint.json``, written last: the step count and every file's size and SHA-256.

The folder is assembled under a temporary name and renamed into place, so a checkpoint either exists
complete or not at all; :func:`latest_checkpoint` also verifies sizes and hashes, and falls back to the
one before (with a warning) if the newest was damaged afterwards. Checkpoints are taken at the start of a
rollout, after the previous rollout's gradient steps: a resumed run collects and trains at the same
env-step boundaries as an uninterrupted one (same env steps at the end, same number of gradient steps).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from sb3_qmp.common.checks import check_int, check_real
from sb3_qmp.common.files import TMP_PREFIX, atomic_copy, atomic_save, atomic_write_json, fsync_dir, sha256

CHECKPOINT_DIR = "checkpoints"
MANIFEST = "checkpoint.json"
MODEL_FILE = "model.zip"
BUFFER_FILE = "replay_buffer.pkl"
NORMALIZATION_FILE = "vecnormalize.pkl"
PROGRESS_FILE = "progress.json"
EVAL_FILES = ("evaluations_per_task.npz", "evaluations_per_task.csv")


@dataclass(frozen=True)
class Checkpoint:
    """A complete, verified checkpoint folder.

    :param path: the folder.
    :param num_timesteps: env steps the model had taken.
    :param manifest: the content of its ``checkpoint.json``.
    """

    path: Path
    num_timesteps: int
    manifest: dict[str, Any]

    @property
    def model(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def replay_buffer(self) -> Path | None:
        buffer = self.path / BUFFER_FILE
        return buffer if buffer.is_file() else None

    @property
    def evaluations(self) -> Path | None:
        npz = self.path / EVAL_FILES[0]
        return npz if npz.is_file() else None


def checkpoint_problem(folder: Path, verify_hashes: bool = True) -> str | None:
    """Why ``folder`` is not a usable checkpoint (``None``: it is)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        int(manifest["num_timesteps"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable {MANIFEST} ({type(error).__name__}: {error})"
    if MODEL_FILE not in files:
        return f"{MANIFEST} lists no {MODEL_FILE}"
    for name, meta in files.items():
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != meta["size"]:
            return f"{name} has {file.stat().st_size} bytes, {meta['size']} were written"
        if verify_hashes and sha256(file) != meta["sha256"]:
            return f"{name} does not match its SHA-256"
    return None


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The checkpoint folders of a run, newest first (unverified; temporary folders excluded)."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(folders, key=lambda p: int(p.name), reverse=True)


def latest_checkpoint(run_dir: str | os.PathLike[str], verify_hashes: bool = True) -> Checkpoint | None:
    """The newest usable checkpoint of a run (``None``: none), skipping damaged ones with a warning.

    :param run_dir: the run folder (the one holding ``checkpoints/``).
    :param verify_hashes: also compare every file's SHA-256 with the manifest (reads every byte).
    """
    for folder in list_checkpoints(run_dir):
        problem = checkpoint_problem(folder, verify_hashes)
        if problem is None:
            manifest = json.loads((folder / MANIFEST).read_text())
            return Checkpoint(folder, int(manifest["num_timesteps"]), manifest)
        warnings.warn(f"Checkpoint {folder} is damaged ({problem}): falling back to the one before.", stacklevel=2)
    return None


def _check_keep(keep: int) -> None:
    if keep < 2:
        raise ValueError(f"keep must be >= 2 (a damaged newest checkpoint needs one to fall back to), got {keep}.")


def write_checkpoint(model: Any, run_dir: str | os.PathLike[str], env_id: str | None = None, keep: int = 2) -> Checkpoint:
    """Write a complete checkpoint of ``model`` into ``run_dir/checkpoints/`` and keep the newest ``keep``.

    :param model: an off-policy SB3 model of this package (anything with ``save`` and ``save_replay_buffer``).
    :param run_dir: the run folder; its evaluation files (if any) are copied into the checkpoint.
    :param env_id: name of the folder the normalisation statistics go to (rl-zoo3's layout).
    :param keep: checkpoints kept (older ones are deleted once the new one is in place); at least 2, so
        that a damaged newest checkpoint has one to fall back to.
    :return: the new checkpoint.
    """
    _check_keep(keep)
    run = Path(run_dir)
    root = run / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    steps = int(model.num_timesteps)
    final = root / f"{steps:012d}"
    tmp = root / f"{TMP_PREFIX}{steps}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    atomic_save(tmp / MODEL_FILE, model.save)
    if getattr(model, "replay_buffer", None) is not None:
        atomic_save(tmp / BUFFER_FILE, model.save_replay_buffer)
    normalization = model.get_vec_normalize_env()
    if normalization is not None:
        atomic_save(tmp / (env_id or "env") / NORMALIZATION_FILE, normalization.save)
    for name in EVAL_FILES:
        if (run / name).is_file():
            atomic_copy(run / name, tmp / name)
    files = {
        str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": sha256(p)} for p in sorted(tmp.rglob("*")) if p.is_file()
    }
    manifest = {
        "num_timesteps": steps,
        "n_updates": int(getattr(model, "_n_updates", 0)),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "files": files,
    }
    atomic_write_json(tmp / MANIFEST, manifest)
    if final.exists():  # the same step written again (e.g. a resumed run's first rollout start): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    fsync_dir(root)
    for old in list_checkpoints(run)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return Checkpoint(final, steps, manifest)


def read_progress(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run's last progress record (``None``: none written yet or unreadable)."""
    try:
        return json.loads((Path(run_dir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None


class RunCheckpointCallback(BaseCallback):
    """Checkpoint a run every ``every_minutes`` of wall time (and/or ``every_steps`` env steps), and keep
    ``progress.json`` in the run folder up to date for progress views.

    Checkpoints are taken at the start of a rollout (see the module docstring; with SB3's defaults a
    rollout is one vec-env step, with the paper's schedules a few seconds of collection) and when
    training ends.

    :param run_dir: the run folder (``checkpoints/`` and ``progress.json`` go there).
    :param every_minutes: wall-clock period of checkpoints (``None``: by steps only).
    :param every_steps: env-step period of checkpoints (``None``: by time only).
    :param keep: checkpoints kept (>= 2).
    :param env_id: folder name of the normalisation statistics inside a checkpoint.
    :param progress_seconds: how often ``progress.json`` is rewritten.
    :param eval_callback: a :class:`~sb3_qmp.common.callbacks.PerTaskEvalCallback` whose last evaluation
        the progress file reports.
    :param verbose: 1 prints a line per checkpoint.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        every_minutes: float | None = 10.0,
        every_steps: int | None = None,
        keep: int = 2,
        env_id: str | None = None,
        progress_seconds: float = 10.0,
        eval_callback: Any = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if every_minutes is None and every_steps is None:
            raise ValueError("Give every_minutes, every_steps or both: otherwise no checkpoint is ever taken.")
        if every_minutes is not None:
            check_real("every_minutes", every_minutes, 0.0, math.inf, low_open=True)
        if every_steps is not None:
            check_int("every_steps", every_steps, 1)
        _check_keep(keep)
        self.run_dir = Path(run_dir)
        self.every_minutes = every_minutes
        self.every_steps = every_steps
        self.keep = keep
        self.env_id = env_id
        self.progress_seconds = progress_seconds
        self.eval_callback = eval_callback
        self.total_timesteps = 0
        self._last_checkpoint_time = 0.0
        self._last_checkpoint_step = 0
        self._last_progress_time = 0.0
        self._start_time = 0.0
        self._start_step = 0
        self.checkpoints: list[Checkpoint] = []

    def _on_training_start(self) -> None:
        self.total_timesteps = int(self.locals.get("total_timesteps", 0))
        self._start_time = self._last_checkpoint_time = time.monotonic()
        self._start_step = self._last_checkpoint_step = self.num_timesteps
        self.write_progress("running")

    def _on_rollout_start(self) -> None:
        now = time.monotonic()
        due_time = self.every_minutes is not None and now - self._last_checkpoint_time >= 60 * self.every_minutes
        due_steps = self.every_steps is not None and self.num_timesteps - self._last_checkpoint_step >= self.every_steps
        if due_time or due_steps:
            checkpoint = write_checkpoint(self.model, self.run_dir, self.env_id, self.keep)
            self.checkpoints.append(checkpoint)
            self._last_checkpoint_time, self._last_checkpoint_step = time.monotonic(), self.num_timesteps
            self.write_progress("running")
            if self.verbose >= 1:
                print(f"Checkpoint at {self.num_timesteps} env steps: {checkpoint.path}")

    def _on_step(self) -> bool:
        if time.monotonic() - self._last_progress_time >= self.progress_seconds:
            self.write_progress("running")
        return True

    def _on_training_end(self) -> None:
        # A final checkpoint: raising -n later continues from the end, replay buffer included.
        if self.num_timesteps > self._last_checkpoint_step:
            self.checkpoints.append(write_checkpoint(self.model, self.run_dir, self.env_id, self.keep))
            self._last_checkpoint_step = self.num_timesteps
        self.write_progress("ended")

    def write_progress(self, state: str) -> None:
        """Rewrite ``progress.json``: steps done and requested, rate, last checkpoint and evaluation."""
        now = time.monotonic()
        self._last_progress_time = now
        elapsed = now - self._start_time
        rate = (self.num_timesteps - self._start_step) / elapsed if elapsed > 0 else None
        record: dict[str, Any] = {
            "state": state,
            "num_timesteps": int(self.num_timesteps),
            "total_timesteps": self.total_timesteps,
            "steps_per_second": rate,
            "updated_at": time.time(),
            "last_checkpoint": self._last_checkpoint_step if self.checkpoints else None,
            "pid": os.getpid(),
        }
        evals = self.eval_callback
        if evals is not None and getattr(evals, "timesteps", None):
            record["last_eval"] = {"timesteps": int(evals.timesteps[-1])}
            for name in ("successes", "successes_any_step", "mixture_successes", "mixture_successes_any_step"):
                values = evals.history.get(name)
                if values and len(values) == len(evals.timesteps):
                    record["last_eval"][name] = float(values[-1].mean())
        atomic_write_json(self.run_dir / PROGRESS_FILE, record)


__all__ = [
    "CHECKPOINT_DIR",
    "Checkpoint",
    "RunCheckpointCallback",
    "checkpoint_problem",
    "latest_checkpoint",
    "list_checkpoints",
    "read_progress",
    "write_checkpoint",
]
