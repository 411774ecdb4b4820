"""Plots of multi-task runs: success rate vs env steps and the mixture-selection heatmap.

``python -m sb3_qmp.plot logs/`` reads the rl-zoo3 log layout ``logs/<algo>/<env>_<run>/`` (one run
folder per seed), finds the files written by :class:`~sb3_qmp.common.callbacks.PerTaskEvalCallback`
(``evaluations_per_task.npz``) and writes PNGs to ``--output`` (default ``<first log folder>/plots``):

* ``<env>_success.png``: success rate averaged over tasks vs env steps, one curve per algorithm,
  mean +- std over seeds (paper Figures 4 and 6);
* ``<env>_per_task_success.png``: one panel per task, same curves;
* ``<env>_<algo>_selection.png``: the T x T mixture-selection heatmap (paper Figure 5b: row i =
  task collecting data, column j = policy that acted, row-normalised, diagonal zeroed), averaged
  over seeds, for algorithms that record one and ever acted with another task's policy (an all-zero
  map, e.g. ``separated``, whose own-policy collector never shares, is skipped with a note).

``--metric return`` plots the mean evaluation return instead. ``--heatmap MODEL.zip`` (repeatable)
draws the heatmap of a saved model from its ``selection_counts`` (read from the zip without an env).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sb3_qmp.common.callbacks import EVAL_FILE, load_evaluations

RUN_DIR = re.compile(r"^(?P<env>.+)_(?P<run>\d+)$")


@dataclass
class Run:
    """One training run (one seed) of one algorithm on one env."""

    algo: str
    env: str
    path: str
    timesteps: np.ndarray  # (K,)
    success: np.ndarray  # (K, T): per-task success rate of every evaluation
    returns: np.ndarray  # (K, T): per-task mean return of every evaluation
    task_names: list[str] = field(default_factory=list)
    selection_counts: np.ndarray | None = None  # (T, T), latest snapshot


def find_runs(log_folders: Sequence[str], algos: Sequence[str] | None = None, envs: Sequence[str] | None = None) -> list[Run]:
    """Every run with a per-task evaluation file under ``<folder>/<algo>/<env>_<run>/``.

    :param log_folders: rl-zoo3 log folders (``-f`` of the training runs).
    :param algos: keep only these algorithms (``None``: all).
    :param envs: keep only these env ids (``None``: all).
    """
    runs: list[Run] = []
    for folder in log_folders:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Log folder {folder!r} does not exist.")
        for file in sorted(glob.glob(os.path.join(folder, "*", "*", EVAL_FILE))):
            run_dir = os.path.dirname(file)
            algo = os.path.basename(os.path.dirname(run_dir))
            match = RUN_DIR.match(os.path.basename(run_dir))
            if match is None:
                continue
            env = match["env"]
            if (algos and algo not in algos) or (envs and env not in envs):
                continue
            data = load_evaluations(file)
            if data["timesteps"].size == 0:
                continue
            counts = data.get("selection_counts")
            runs.append(
                Run(
                    algo=algo,
                    env=env,
                    path=run_dir,
                    timesteps=data["timesteps"],
                    success=data["successes"].mean(axis=2),
                    returns=data["returns"].mean(axis=2),
                    task_names=[str(n) for n in data.get("task_names", [])],
                    selection_counts=None if counts is None or counts.size == 0 else counts[-1],
                )
            )
    return runs


def aggregate(runs: Sequence[Run], metric: str = "success") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeds of one method on a common step grid: ``steps (K,)``, mean and std over seeds ``(K, T)``.

    The grid is the first run's evaluation steps up to the shortest run's last one; the other runs
    are linearly interpolated onto it.
    """
    if not runs:
        raise ValueError("No runs to aggregate.")
    last = min(int(run.timesteps[-1]) for run in runs)
    grid = runs[0].timesteps[runs[0].timesteps <= last]
    curves = []
    for run in runs:
        values = _values(run, metric)
        curves.append(np.stack([np.interp(grid, run.timesteps, values[:, t]) for t in range(values.shape[1])], axis=1))
    stacked = np.stack(curves)  # (S, K, T)
    return grid, stacked.mean(axis=0), stacked.std(axis=0)


def _values(run: Run, metric: str) -> np.ndarray:
    return run.success if metric == "success" else run.returns


def _marker(steps: np.ndarray) -> str | None:
    # Few evaluations (short runs): show the points, a line alone may be invisible.
    return "o" if len(steps) < 15 else None


def _pyplot() -> Any:
    import matplotlib

    if not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(metric: str) -> str:
    return "success rate" if metric == "success" else "evaluation return"


def plot_env(runs: Sequence[Run], env: str, output: str, metric: str = "success") -> list[str]:
    """Mean-over-tasks and per-task curves of every algorithm on ``env``; returns the PNG paths."""
    plt = _pyplot()
    by_algo: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if run.env == env:
            by_algo[run.algo].append(run)
    if not by_algo:
        raise ValueError(f"No runs of env {env!r}.")
    os.makedirs(output, exist_ok=True)
    stats = {algo: aggregate(algo_runs, metric) for algo, algo_runs in sorted(by_algo.items())}
    num_tasks = next(iter(stats.values()))[1].shape[1]
    task_names = next((run.task_names for run in runs if run.env == env and run.task_names), [])
    paths = []

    fig, ax = plt.subplots(figsize=(6, 4))
    for algo, algo_runs in sorted(by_algo.items()):
        steps = stats[algo][0]
        # Mean over tasks within each seed first, then mean and std over seeds.
        per_seed = np.stack([np.interp(steps, r.timesteps, _values(r, metric).mean(axis=1)) for r in algo_runs])
        m, s = per_seed.mean(axis=0), per_seed.std(axis=0)
        seeds = len(algo_runs)
        ax.plot(steps, m, marker=_marker(steps), label=f"{algo} ({seeds} seed{'s' if seeds > 1 else ''})")
        ax.fill_between(steps, m - s, m + s, alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"{_label(metric)} (mean over tasks)")
    ax.set_title(env)
    if metric == "success":
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(os.path.join(output, f"{env}_{metric}.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    cols = min(num_tasks, 5)
    rows = (num_tasks + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharex=True, sharey=True)
    for task in range(rows * cols):
        ax = axes[task // cols][task % cols]
        if task >= num_tasks:
            ax.axis("off")
            continue
        for algo, (steps, mean, std) in stats.items():
            if mean.shape[1] != num_tasks:
                continue
            ax.plot(steps, mean[:, task], marker=_marker(steps), label=algo)
            ax.fill_between(steps, mean[:, task] - std[:, task], mean[:, task] + std[:, task], alpha=0.2)
        name = task_names[task] if task < len(task_names) else f"task_{task}"
        ax.set_title(f"task {task}: {name}", fontsize=9)
        if metric == "success":
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.supxlabel("environment steps")
    fig.supylabel(_label(metric))
    fig.suptitle(env)
    fig.tight_layout()
    paths.append(os.path.join(output, f"{env}_per_task_{metric}.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def selection_matrix(counts: np.ndarray, zero_diagonal: bool = True) -> np.ndarray:
    """Row-normalised selection frequencies (row = task collecting, column = policy that acted)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"selection counts must be a T x T matrix, got shape {counts.shape}.")
    totals = counts.sum(axis=1, keepdims=True)
    matrix = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    if zero_diagonal:
        np.fill_diagonal(matrix, 0.0)
    return matrix


def load_selection_counts(path: str) -> np.ndarray:
    """``selection_counts`` of a saved model (``.zip``), a per-task evaluation file (``.npz``) or a run folder."""
    if os.path.isdir(path):
        zips = sorted(glob.glob(os.path.join(path, "*.zip")))
        npz = os.path.join(path, EVAL_FILE)
        if os.path.isfile(npz) and "selection_counts" in load_evaluations(npz):
            path = npz
        elif zips:
            path = zips[0]
        else:
            raise FileNotFoundError(f"No model zip or {EVAL_FILE} with selection counts in {path!r}.")
    if path.endswith(".npz"):
        data = load_evaluations(path)
        if "selection_counts" not in data or data["selection_counts"].size == 0:
            raise ValueError(f"{path} has no selection counts (the algorithm records none).")
        return np.asarray(data["selection_counts"][-1])
    from stable_baselines3.common.save_util import load_from_zip_file

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No saved model at {path!r}.")
    saved, _, _ = load_from_zip_file(path, load_data=True, device="cpu", custom_objects={"learning_rate": 0.0})
    counts = None if saved is None else saved.get("selection_counts")
    if counts is None:
        raise ValueError(f"The model saved at {path} has no `selection_counts` (not a multi-task mixture model).")
    return np.asarray(counts)


def plot_heatmap(counts: np.ndarray, output_file: str, title: str = "", task_names: Sequence[str] | None = None) -> str:
    """Draw the selection heatmap (diagonal zeroed) of ``counts`` to ``output_file``; return the path."""
    plt = _pyplot()
    matrix = selection_matrix(counts)
    num_tasks = matrix.shape[0]
    labels = list(task_names) if task_names and len(task_names) == num_tasks else [str(i) for i in range(num_tasks)]
    size = 1.2 + 0.55 * num_tasks
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(float(matrix.max()), 1e-6))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="frequency")
    ax.set_xticks(range(num_tasks), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(num_tasks), labels, fontsize=8)
    ax.set_xlabel("policy that acted (j)")
    ax.set_ylabel("task collecting data (i)")
    if num_tasks <= 10:
        for i in range(num_tasks):
            for j in range(num_tasks):
                if i != j:
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_title(f"{title or 'mixture selection'}\n(diagonal zeroed)", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)
    fig.savefig(output_file, dpi=100)
    plt.close(fig)
    return output_file


def plot_all(
    log_folders: Sequence[str],
    output: str | None = None,
    algos: Sequence[str] | None = None,
    envs: Sequence[str] | None = None,
    metric: str = "success",
    heatmaps: bool = True,
) -> list[str]:
    """Curves for every env and heatmaps for every (algo, env) found under ``log_folders``; returns the PNGs."""
    if metric not in ("success", "return"):
        raise ValueError(f"metric must be 'success' or 'return', got {metric!r}.")
    runs = find_runs(log_folders, algos, envs)
    if not runs:
        raise FileNotFoundError(
            f"No {EVAL_FILE} under {list(log_folders)} (layout <folder>/<algo>/<env>_<run>/). Train with "
            "sb3_qmp.common.callbacks.PerTaskEvalCallback (the shipped zoo YAMLs add it)."
        )
    output = output or os.path.join(log_folders[0], "plots")
    paths: list[str] = []
    for env in sorted({run.env for run in runs}):
        paths += plot_env(runs, env, output, metric)
    if heatmaps:
        groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
        for run in runs:
            if run.selection_counts is not None and run.selection_counts.sum() > 0:
                groups[(run.algo, run.env)].append(run)
        for (algo, env), group in sorted(groups.items()):
            # Average of the seeds' row-normalised matrices (each seed weighs the same).
            mean = np.mean([selection_matrix(r.selection_counts, zero_diagonal=False) for r in group], axis=0)  # type: ignore[arg-type]
            if not selection_matrix(mean).any():
                # The map zeroes the diagonal: an own-policy-only collector leaves nothing to see.
                note = f"No selection heatmap for {algo} on {env}: it only ever acted with each task's own policy."
                print(note, file=sys.stderr)  # stdout lists the PNGs
                continue
            title = f"{algo} on {env} ({len(group)} seed{'s' if len(group) > 1 else ''})"
            paths.append(plot_heatmap(mean, os.path.join(output, f"{env}_{algo}_selection.png"), title, group[0].task_names))
    return paths


def main(argv: Sequence[str] | None = None) -> list[str]:
    """Command-line entry point (``python -m sb3_qmp.plot``); returns the written PNG paths."""
    parser = argparse.ArgumentParser(prog="python -m sb3_qmp.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("log_folders", nargs="*", help="rl-zoo3 log folders (layout <folder>/<algo>/<env>_<run>/)")
    parser.add_argument("-o", "--output", help="folder of the PNGs (default: <first log folder>/plots)")
    parser.add_argument("--algos", nargs="+", help="only these algorithms")
    parser.add_argument("--envs", nargs="+", help="only these env ids")
    parser.add_argument("--metric", choices=["success", "return"], default="success", help="y axis of the curves")
    parser.add_argument("--no-heatmaps", action="store_true", help="skip the selection heatmaps of the runs")
    parser.add_argument(
        "--heatmap", action="append", default=[], metavar="PATH", help="heatmap of a saved model (.zip), .npz or run folder"
    )
    args = parser.parse_args(argv)
    if not args.log_folders and not args.heatmap:
        parser.error("give at least one log folder or --heatmap PATH")
    paths: list[str] = []
    if args.log_folders:
        paths += plot_all(args.log_folders, args.output, args.algos, args.envs, args.metric, not args.no_heatmaps)
    for path in args.heatmap:
        stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        output = args.output or (os.path.join(args.log_folders[0], "plots") if args.log_folders else ".")
        paths.append(plot_heatmap(load_selection_counts(path), os.path.join(output, f"{stem}_selection.png"), title=stem))
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()
