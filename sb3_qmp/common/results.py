"""Per-task evaluation results of training runs, as the plots and the paper comparison read them.

A :class:`Run` is one seed of one algorithm on one env. It comes from the ``evaluations_per_task.npz``
written by :class:`~sb3_qmp.common.callbacks.PerTaskEvalCallback` (:func:`find_runs`,
:func:`run_from_npz`) or from the ``runs`` list of a summary written by
``benchmarks/paper_comparison.py`` (:meth:`Run.from_json`), so that figures can be redrawn from a
committed summary without the (large, uncommitted) logs.

The metrics and evaluation modes are those of :mod:`sb3_qmp.common.evaluation` (one vocabulary; a
:class:`Run` holds each metric's per-task mean at every evaluation).
Files written before the any-step metric and the mixture evaluation existed hold ``own``
``success``/``return``/``length`` only: the missing series are simply absent (:meth:`Run.has`).
"""

from __future__ import annotations

import glob
import os
import re
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sb3_qmp.common.callbacks import EVAL_FILE, load_evaluations
from sb3_qmp.common.evaluation import EVAL_MODES, METRICS, check_metric, check_mode, npz_key

# rl-zoo3 names a run folder <env>_<run id> (an optional _<uuid> is not used by this package's tools).
RUN_DIR = re.compile(r"^(?P<env>.+)_(?P<run>\d+)$")


@dataclass
class Run:
    """One training run (one seed) of one algorithm on one env.

    :param algo: algorithm name (rl-zoo3's ``--algo``).
    :param env: env id.
    :param path: the run folder (or where the summary says it was).
    :param timesteps: env steps of every evaluation, ``(K,)``.
    :param curves: ``curves[mode][metric]``: per-task value of every evaluation, ``(K, T)``.
    :param task_names: the tasks' names.
    :param selection_counts: cumulative mixture-selection counts at every evaluation, ``(K, T, T)``
        (row = task collecting, column = policy that acted), for algorithms that record them.
    :param seed: the training seed, when known.
    """

    algo: str
    env: str
    path: str
    timesteps: np.ndarray
    curves: dict[str, dict[str, np.ndarray]]
    task_names: list[str] = field(default_factory=list)
    selection_counts: np.ndarray | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        self.timesteps = np.asarray(self.timesteps, dtype=np.int64)
        if self.timesteps.ndim != 1 or self.timesteps.size == 0:
            raise ValueError(f"Run {self.path}: timesteps must be a non-empty 1-D array, got shape {self.timesteps.shape}.")
        if "own" not in self.curves:
            raise ValueError(f"Run {self.path} has no own-policy evaluation.")
        num_steps, num_tasks = self.timesteps.size, None
        for mode, by_metric in self.curves.items():
            check_mode(mode)
            for metric, values in by_metric.items():
                check_metric(metric)
                values = by_metric[metric] = np.asarray(values, dtype=np.float64)
                num_tasks = values.shape[1] if num_tasks is None and values.ndim == 2 else num_tasks
                if values.shape != (num_steps, num_tasks):
                    raise ValueError(
                        f"Run {self.path}: {mode} {metric} has shape {values.shape}, expected (evaluations, tasks) = "
                        f"({num_steps}, {num_tasks})."
                    )
        if self.selection_counts is not None:
            self.selection_counts = np.asarray(self.selection_counts, dtype=np.int64)
            if self.selection_counts.shape != (num_steps, num_tasks, num_tasks):
                raise ValueError(
                    f"Run {self.path}: selection_counts has shape {self.selection_counts.shape}, expected "
                    f"({num_steps}, {num_tasks}, {num_tasks}) (one cumulative T x T matrix per evaluation)."
                )

    @property
    def num_tasks(self) -> int:
        return next(iter(self.curves["own"].values())).shape[1]

    @property
    def modes(self) -> list[str]:
        return [mode for mode in EVAL_MODES if self.curves.get(mode)]

    def has(self, metric: str, mode: str = "own") -> bool:
        """Whether this run recorded ``metric`` in evaluation mode ``mode``."""
        return metric in self.curves.get(mode, {})

    def values(self, metric: str, mode: str = "own") -> np.ndarray:
        """``metric`` in evaluation mode ``mode`` at every evaluation, per task, ``(K, T)``."""
        if not self.has(metric, mode):
            recorded = {m: sorted(c) for m, c in self.curves.items()}
            raise KeyError(
                f"Run {self.path} has no {mode} {metric} (npz key {npz_key(metric, mode)!r}); it recorded {recorded}. "
                "Files written before the any-step metric and the mixture evaluation hold own success/return/length only."
            )
        return self.curves[mode][metric]

    def to_json(self, decimals: int = 4) -> dict[str, Any]:
        """A JSON-serialisable dict (curves rounded to ``decimals``) that :meth:`from_json` reads back."""
        return {
            "algo": self.algo,
            "env": self.env,
            "seed": self.seed,
            "path": self.path,
            "timesteps": self.timesteps.tolist(),
            "task_names": list(self.task_names),
            "curves": {
                mode: {metric: np.round(values, decimals).tolist() for metric, values in by_metric.items()}
                for mode, by_metric in self.curves.items()
            },
            "selection_counts": None if self.selection_counts is None else self.selection_counts.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        """The run stored by :meth:`to_json`."""
        missing = {"algo", "env", "path", "timesteps", "curves"} - set(data)
        if missing:
            raise ValueError(f"A stored run lacks {sorted(missing)} (not written by Run.to_json).")
        return cls(
            algo=data["algo"],
            env=data["env"],
            path=data["path"],
            timesteps=np.asarray(data["timesteps"]),
            curves={mode: {m: np.asarray(v) for m, v in by_metric.items()} for mode, by_metric in data["curves"].items()},
            task_names=list(data.get("task_names") or []),
            selection_counts=None if data.get("selection_counts") is None else np.asarray(data["selection_counts"]),
            seed=data.get("seed"),
        )


def run_from_npz(file: str, algo: str, env: str, seed: int | None = None) -> Run | None:
    """The run of a :class:`~sb3_qmp.common.callbacks.PerTaskEvalCallback` file (``None``: no evaluation yet).

    Every series present in the file is read (old files: own success, return and length only).

    :param file: the npz file or its run folder.
    :param algo: the algorithm's name.
    :param env: the env id.
    :param seed: the training seed, when known.
    """
    data = load_evaluations(file)
    if data["timesteps"].size == 0:
        return None
    curves: dict[str, dict[str, np.ndarray]] = {}
    for mode in EVAL_MODES:
        for metric in METRICS:
            key = npz_key(metric, mode)
            if key not in data or data[key].size == 0:
                continue
            if data[key].ndim != 3:
                raise ValueError(f"{file}: {key} has shape {data[key].shape}, expected (evaluations, tasks, episodes).")
            curves.setdefault(mode, {})[metric] = data[key].astype(np.float64).mean(axis=2)
    counts = data.get("selection_counts")
    return Run(
        algo=algo,
        env=env,
        path=os.path.dirname(file) if file.endswith(".npz") else file,
        timesteps=data["timesteps"],
        curves=curves,
        task_names=[str(name) for name in data.get("task_names", [])],
        selection_counts=None if counts is None or counts.size == 0 else counts,
        seed=seed,
    )


def find_runs(log_folders: Sequence[str], algos: Sequence[str] | None = None, envs: Sequence[str] | None = None) -> list[Run]:
    """Every run with a per-task evaluation file in a folder ``<algo>/<env>_<run id>/`` under ``log_folders``.

    The search is recursive, so both rl-zoo3's layout ``<folder>/<algo>/<env>_<run>/`` and the
    paper comparison's ``<folder>/seed_<s>/<algo>/<env>_<run>/`` are found.

    :param log_folders: rl-zoo3 log folders (``-f`` of the training runs) or folders holding them.
    :param algos: keep only these algorithms (``None``: all).
    :param envs: keep only these env ids (``None``: all).
    """
    runs: list[Run] = []
    for folder in log_folders:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Log folder {folder!r} does not exist.")
        for file in sorted(glob.glob(os.path.join(folder, "**", EVAL_FILE), recursive=True)):
            run_dir = os.path.dirname(file)
            algo = os.path.basename(os.path.dirname(run_dir))
            match = RUN_DIR.match(os.path.basename(run_dir))
            if match is None or (algos and algo not in algos) or (envs and match["env"] not in envs):
                continue
            try:
                run = run_from_npz(file, algo, match["env"])
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
                # One damaged file (a run killed mid-write by an earlier version, a copy cut short) must not
                # cost the figures of every other run.
                warnings.warn(f"Skipping {file}: cannot read it ({type(error).__name__}: {error}).", stacklevel=2)
                continue
            if run is not None:
                runs.append(run)
    return runs


def stack_seeds(runs: Sequence[Run], metric: str, mode: str = "own") -> tuple[np.ndarray, np.ndarray]:
    """Seeds of one method on a common step grid: ``steps (K,)`` and the per-seed values ``(S, K, T)``.

    The grid is the first run's evaluation steps up to the shortest run's last one; the other runs
    are linearly interpolated onto it (runs of one configuration evaluate at the same steps, where
    this changes nothing).
    """
    if not runs:
        raise ValueError("No runs to aggregate.")
    if len({run.num_tasks for run in runs}) > 1:
        raise ValueError(f"The runs have different numbers of tasks: {sorted({run.num_tasks for run in runs})}.")
    last = min(int(run.timesteps[-1]) for run in runs)
    grid = runs[0].timesteps[runs[0].timesteps <= last]
    per_seed = []
    for run in runs:
        values = run.values(metric, mode)
        per_seed.append(np.stack([np.interp(grid, run.timesteps, values[:, t]) for t in range(values.shape[1])], axis=1))
    return grid, np.stack(per_seed)


def first_reaching(timesteps: np.ndarray, curve: np.ndarray, threshold: float) -> float | None:
    """The first evaluation step at which ``curve`` reaches ``threshold`` (``None``: never)."""
    hits = np.flatnonzero(np.asarray(curve) >= threshold - 1e-9)
    return float(timesteps[hits[0]]) if hits.size else None


# -- mixture selection -------------------------------------------------------------------------------
def selection_matrix(counts: np.ndarray, zero_diagonal: bool = True) -> np.ndarray:
    """Row-normalised selection frequencies (row = task collecting, column = policy that acted).

    The paper's Figure 5b normalises each row over all policies, then zeroes the diagonal (each
    task's own policy) for contrast.

    :param counts: a T x T count matrix.
    :param zero_diagonal: set the diagonal to 0 after normalising.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"selection counts must be a T x T matrix, got shape {counts.shape}.")
    totals = counts.sum(axis=1, keepdims=True)
    matrix = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    if zero_diagonal:
        np.fill_diagonal(matrix, 0.0)
    return matrix


def counts_at(run: Run, step: float) -> tuple[int, np.ndarray]:
    """The cumulative selection counts of the last evaluation at or before ``step`` and that evaluation's step.

    Before the first evaluation the counts are those of step 0 (all zero).
    """
    if run.selection_counts is None:
        raise ValueError(f"Run {run.path} ({run.algo}) recorded no selection counts.")
    index = int(np.searchsorted(run.timesteps, step, side="right")) - 1
    if index < 0:
        return 0, np.zeros(run.selection_counts.shape[1:], dtype=np.int64)
    return int(run.timesteps[index]), run.selection_counts[index]


def window_counts(run: Run, start: float, end: float) -> tuple[tuple[int, int], np.ndarray]:
    """Selections made between env steps ``start`` and ``end``: the difference of the cumulative counts.

    Both bounds snap to the last evaluation at or before them (counts are only known there); the
    snapped steps are returned with the T x T difference.
    """
    if not start < end:
        raise ValueError(f"A selection window needs start < end, got {start:g}:{end:g}.")
    first, before = counts_at(run, start)
    last, after = counts_at(run, end)
    diff = after - before
    if (diff < 0).any():
        raise ValueError(
            f"Run {run.path}: the selection counts decrease between steps {first} and {last}; they must be cumulative "
            "(a run resumed with reset counters cannot be split into windows)."
        )
    return (first, last), diff


def default_windows(last_step: float) -> list[tuple[float, float]]:
    """Early and late training: the first and the last third of ``[0, last_step]``."""
    return [(0.0, last_step / 3), (2 * last_step / 3, float(last_step))]


def parse_window(text: str) -> tuple[float, float]:
    """``"START:END"`` in env steps (``200000``, ``2e5`` or ``200k`` / ``1.5M``) -> ``(start, end)``."""

    def number(part: str) -> float:
        part = part.strip().lower()
        scale = {"k": 1e3, "m": 1e6}.get(part[-1:], 1.0)
        return float(part[:-1] if scale != 1.0 else part) * scale

    try:
        start, end = (number(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"A selection window is START:END in env steps (e.g. 0:200k), got {text!r}.") from None
    if not 0 <= start < end:
        raise ValueError(f"A selection window needs 0 <= START < END, got {text!r}.")
    return start, end
