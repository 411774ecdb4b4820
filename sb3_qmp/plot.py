"""Plots of multi-task runs: success vs env steps (paper Figures 4 and 6) and the selection matrix (Figure 5b).

``python -m sb3_qmp.plot logs/`` reads every ``<algo>/<env>_<run>/evaluations_per_task.npz`` under the
given folders (rl-zoo3's layout, one run folder per seed; written by
:class:`~sb3_qmp.common.callbacks.PerTaskEvalCallback`). ``python -m sb3_qmp.plot --from-summary
benchmarks/results/<dir>/summary.json`` redraws the same figures from the per-run curves stored by
``benchmarks/paper_comparison.py``, without the logs. PNGs go to ``-o`` (default ``<first log
folder>/plots``, or the summary's folder). For every ``--metric`` and every ``--mode``:

* ``<env>_<metric><sfx>.png`` (Figure 4): the metric averaged over tasks vs env steps, one curve per
  algorithm and evaluation mode, mean +- std over seeds (std with ddof 0);
* ``<env>_per_task_<metric><sfx>.png`` (Figure 6): one panel per task; ``--highlight-task I`` draws
  task I's panel emphasised and also alone in ``<env>_task<I>_<metric><sfx>.png``;

where ``<sfx>`` is empty for ``--mode own`` and ``_mixture`` / ``_both`` otherwise. Per algorithm that
records mixture selections (paper Figure 5b; row i = task collecting data, column j = policy that
acted, each row normalised, diagonal zeroed, averaged over seeds):

* ``<env>_<algo>_selection.png``: the whole run (the last evaluation's cumulative counts);
* ``<env>_<algo>_selection_early_late.png``: the selections made in two windows of training side by
  side (differences of the cumulative counts between evaluations; default the first and the last
  third, ``--selection-windows 0:200k 400k:600k`` to choose them; bounds snap to the evaluation at
  or before them). All-zero maps (an own-policy-only collector, e.g. ``separated``) are skipped with a
  note on stderr.

Metrics (``--metric``, several allowed): ``success`` (strict: ``is_success`` at the episode's end),
``success_any_step`` (the paper's metric: success flag set at any step, as the authors' code counts
it; comparable with the paper), ``return``, ``length``, ``stages`` (Reacher's stages completed).
Modes (``--mode``, several allowed): ``own`` (each task's own policy, the default), ``mixture`` (the
algorithm's collector; algorithms without one are drawn with their own policy, labelled so) and
``both`` (own solid, mixture dashed, each curve labelled). Runs whose files lack a series (files
written before the any-step metric and the mixture evaluation existed) are left out of that figure
with a note. ``--heatmap MODEL.zip`` (repeatable) draws the matrix of a saved model from its
``selection_counts`` (read from the zip without an env), an npz or a run folder.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import warnings
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from sb3_qmp.common.callbacks import EVAL_FILE, load_evaluations
from sb3_qmp.common.evaluation import METRICS, check_metric
from sb3_qmp.common.results import (
    Run,
    default_windows,
    find_runs,
    parse_window,
    selection_matrix,
    stack_seeds,
    window_counts,
)

__all__ = [
    "Run",
    "find_runs",
    "load_selection_counts",
    "main",
    "plot_curves",
    "plot_heatmap",
    "plot_runs",
    "plot_selection",
    "runs_from_summary",
    "selection_matrix",
]

VIEWS = ("own", "mixture", "both")
DISPLAY_NAMES = {
    "qmp": "QMP",
    "separated": "Separated",
    "shared": "Shared",
    "dnc": "DnC",
    "dnc_reg": "DnC (reg. only)",
    "qmp_uniform": "QMP-Uniform",
    "qmp_domain": "QMP-Domain",
    "mtsac_multihead": "Multi-head SAC",
    "qmp_multihead": "QMP multi-head",
}
METRIC_LABELS = {
    "success": "success rate, strict",
    "success_any_step": "success rate, any step (paper)",
    "return": "evaluation return",
    "length": "episode length",
    "stages": "stages completed",
}
LINESTYLES = {"own": "-", "mixture": "--"}
VIEW_TEXT = {
    "own": "own-policy evaluation",
    "mixture": "mixture evaluation (own policy where none)",
    "both": "own-policy (solid) and mixture (dashed) evaluations",
}


def display_name(algo: str) -> str:
    """The paper's name of an algorithm (the registry name for unknown ones)."""
    return DISPLAY_NAMES.get(algo, algo)


def _pyplot() -> Any:
    import matplotlib

    if not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _marker(steps: np.ndarray) -> str | None:
    # Few evaluations (short runs): show the points, a line alone may be invisible.
    return "o" if len(steps) < 15 else None


def _note(text: str) -> None:
    print(text, file=sys.stderr)  # stdout lists the PNGs


def _suffix(view: str) -> str:
    return "" if view == "own" else f"_{view}"


def series(runs: Sequence[Run], metric: str, view: str = "own") -> list[tuple[str, str, list[Run]]]:
    """The curves one figure draws: ``(algo, mode, runs)`` per algorithm and evaluation mode.

    ``view`` ``"own"``/``"mixture"``/``"both"``: with ``"mixture"``, an algorithm without a mixture
    evaluation is drawn with its own policy (its collector is its own policy). Runs lacking the
    metric in a mode are left out (with a note); an algorithm with none is skipped.

    :param runs: the runs of one env.
    :param metric: one of :data:`~sb3_qmp.common.results.METRICS`.
    :param view: ``"own"``, ``"mixture"`` or ``"both"``.
    """
    check_metric(metric)
    if view not in VIEWS:
        raise ValueError(f"Unknown mode {view!r}; choose one of {list(VIEWS)}.")
    by_algo: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_algo[run.algo].append(run)
    drawn: list[tuple[str, str, list[Run]]] = []
    for algo, algo_runs in sorted(by_algo.items()):
        has_mixture = any(run.has(metric, "mixture") for run in algo_runs)
        modes = {"own": ["own"], "both": ["own", "mixture"]}.get(view, ["mixture" if has_mixture else "own"])
        for mode in modes:
            having = [run for run in algo_runs if run.has(metric, mode)]
            if len(having) < len(algo_runs) and (mode == "own" or has_mixture):
                _note(f"{algo}: {len(algo_runs) - len(having)} of {len(algo_runs)} runs have no {mode} {metric}; left out.")
            if having:
                drawn.append((algo, mode, having))
    return drawn


def _label(algo: str, mode: str, runs: Sequence[Run]) -> str:
    seeds = len(runs)
    return f"{display_name(algo)} ({mode}, {seeds} seed{'s' if seeds > 1 else ''})"


def _task_title(task: int, names: Sequence[str], highlight: int | None) -> str:
    name = names[task] if task < len(names) else f"task_{task}"
    return f"task {task}: {name}" + (" (highlighted)" if task == highlight else "")


def plot_curves(
    runs: Sequence[Run],
    env: str,
    output: str,
    metric: str = "success",
    view: str = "own",
    highlight_task: int | None = None,
    title_note: str | None = None,
) -> list[str]:
    """Figure 4 (mean over tasks) and Figure 6 (per task) of ``metric`` on ``env``; returns the PNG paths.

    :param runs: runs (any envs: only ``env``'s are drawn).
    :param env: the env id.
    :param output: folder of the PNGs.
    :param metric: one of :data:`~sb3_qmp.common.results.METRICS`.
    :param view: evaluation mode(s): ``"own"``, ``"mixture"`` or ``"both"``.
    :param highlight_task: task drawn emphasised in the per-task figure and alone in its own figure.
    :param title_note: a second title line of the mean-over-tasks figure (e.g. the budget's share of the paper's).
    """
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    env_runs = [run for run in runs if run.env == env]
    if not env_runs:
        raise ValueError(f"No runs of env {env!r}.")
    drawn = series(env_runs, metric, view)
    if not drawn:
        recorded = sorted({f"{mode} {m}" for run in env_runs for mode in run.modes for m in run.curves[mode]})
        raise ValueError(f"No run of {env} recorded {metric!r} (mode {view}); the runs recorded: {recorded}.")
    stats = {(algo, mode): stack_seeds(group, metric, mode) for algo, mode, group in drawn}
    num_tasks = next(iter(stats.values()))[1].shape[2]
    if highlight_task is not None and not 0 <= highlight_task < num_tasks:
        raise ValueError(f"--highlight-task {highlight_task} is not a task of {env} (tasks 0..{num_tasks - 1}).")
    task_names = next((run.task_names for run in env_runs if run.task_names), [])
    algos = sorted({algo for algo, _, _ in drawn})
    colors = {algo: f"C{i % 10}" for i, algo in enumerate(algos)}
    ylabel = METRIC_LABELS[metric]
    unit = metric in ("success", "success_any_step")
    os.makedirs(output, exist_ok=True)
    paths = []

    def draw(ax: Any, task: int | None, legend: bool) -> None:
        for algo, mode, group in drawn:
            steps, values = stats[(algo, mode)]
            # Mean over tasks within each seed first, then mean and std over seeds.
            per_seed = values.mean(axis=2) if task is None else values[:, :, task]
            mean, std = per_seed.mean(axis=0), per_seed.std(axis=0)
            style = dict(color=colors[algo], linestyle=LINESTYLES[mode], marker=_marker(steps))
            ax.plot(steps, mean, label=_label(algo, mode, group) if legend else None, **style)
            ax.fill_between(steps, mean - std, mean + std, color=colors[algo], alpha=0.15)
        if unit:
            ax.set_ylim(-0.02, 1.02)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _steps(x)))
        ax.grid(alpha=0.3)

    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    draw(ax, None, legend=True)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"{ylabel}\n(mean over tasks)")
    ax.set_title(f"{env}, {VIEW_TEXT[view]}" + (f"\n{title_note}" if title_note else ""), fontsize=10)
    ax.legend(fontsize=8)
    paths.append(os.path.join(output, f"{env}_{metric}{_suffix(view)}.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    cols = min(num_tasks, 5)
    rows = (num_tasks + cols - 1) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.3 * cols, 2.6 * rows + 1.0), squeeze=False, sharex=True, sharey=True, layout="constrained"
    )
    for task in range(rows * cols):
        ax = axes[task // cols][task % cols]
        if task >= num_tasks:
            ax.axis("off")
            continue
        draw(ax, task, legend=task == 0)
        emphasised = task == highlight_task
        ax.set_title(_task_title(task, task_names, highlight_task), fontsize=9, fontweight="bold" if emphasised else None)
        if emphasised:
            for spine in ax.spines.values():
                spine.set_linewidth(2.5)
                spine.set_edgecolor("crimson")
    for ax in axes[-1]:
        ax.set_xlabel("environment steps")
    fig.legend(loc="outside lower center", ncol=min(len(drawn), 4), fontsize=8)
    fig.supylabel(ylabel, fontsize=10)
    fig.suptitle(f"{env}: per task, {VIEW_TEXT[view]}", fontsize=11)
    paths.append(os.path.join(output, f"{env}_per_task_{metric}{_suffix(view)}.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    if highlight_task is not None:
        fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
        draw(ax, highlight_task, legend=True)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{env}: {_task_title(highlight_task, task_names, None)}\n{VIEW_TEXT[view]}", fontsize=10)
        ax.legend(fontsize=8)
        paths.append(os.path.join(output, f"{env}_task{highlight_task}_{metric}{_suffix(view)}.png"))
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


# -- selection matrices ------------------------------------------------------------------------------
def mean_selection(counts: Sequence[np.ndarray]) -> np.ndarray:
    """The seeds' row-normalised matrices averaged (each seed weighs the same), diagonal zeroed."""
    return selection_matrix(np.mean([selection_matrix(c, zero_diagonal=False) for c in counts], axis=0))


def _draw_matrix(fig: Any, ax: Any, matrix: np.ndarray, labels: Sequence[str], vmax: float, title: str) -> None:
    num_tasks = matrix.shape[0]
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(vmax, 1e-6))
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
    ax.set_title(title, fontsize=10)


def _labels(task_names: Sequence[str] | None, num_tasks: int) -> list[str]:
    return list(task_names) if task_names and len(task_names) == num_tasks else [str(i) for i in range(num_tasks)]


def plot_heatmap(counts: np.ndarray, output_file: str, title: str = "", task_names: Sequence[str] | None = None) -> str:
    """Draw the selection matrix (row-normalised, diagonal zeroed) of ``counts`` to ``output_file``; return the path."""
    return plot_matrices([(title or "mixture selection", selection_matrix(counts))], output_file, task_names)


def plot_matrices(
    panels: Sequence[tuple[str, np.ndarray]], output_file: str, task_names: Sequence[str] | None = None, suptitle: str = ""
) -> str:
    """Side-by-side selection matrices (already normalised, diagonal zeroed) on one colour scale."""
    plt = _pyplot()
    num_tasks = panels[0][1].shape[0]
    labels = _labels(task_names, num_tasks)
    vmax = max(float(matrix.max()) for _, matrix in panels)
    size = 1.2 + 0.55 * num_tasks
    fig, axes = plt.subplots(1, len(panels), figsize=((size + 1.4) * len(panels), size + 0.4), squeeze=False)
    for ax, (title, matrix) in zip(axes[0], panels):
        _draw_matrix(fig, ax, matrix, labels, vmax, f"{title}\n(diagonal zeroed)")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)
    fig.savefig(output_file, dpi=100)
    plt.close(fig)
    return output_file


def _steps(value: float) -> str:
    """Env steps for axes and titles: 0, 500, 20k, 1.5M."""
    return f"{value / 1e6:g}M" if abs(value) >= 1e6 else f"{value / 1e3:g}k" if abs(value) >= 1e3 else f"{value:g}"


def plot_selection(
    runs: Sequence[Run], env: str, output: str, windows: Sequence[tuple[float, float]] | None = None
) -> list[str]:
    """Figure 5b per algorithm on ``env``: the whole run and two training windows side by side.

    :param runs: runs (only ``env``'s with selection counts are used).
    :param env: the env id.
    :param output: folder of the PNGs.
    :param windows: two ``(start, end)`` env-step windows (default: the first and the last third of
        the shortest run); each seed's selections in a window are the difference of its cumulative
        counts at the evaluations at or before the bounds.
    """
    if windows is not None and len(windows) != 2:
        raise ValueError(f"Give two selection windows (early and late), got {len(windows)}.")
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if run.env == env and run.selection_counts is not None and run.selection_counts[-1].sum() > 0:
            groups[run.algo].append(run)
    paths = []
    for algo, group in sorted(groups.items()):
        whole = mean_selection([run.selection_counts[-1] for run in group])  # type: ignore[index]
        if not whole.any():
            _note(f"No selection heatmap for {algo} on {env}: it only ever acted with each task's own policy.")
            continue
        seeds = f"{len(group)} seed{'s' if len(group) > 1 else ''}"
        names = group[0].task_names
        title = f"{display_name(algo)} on {env} ({seeds})"
        paths.append(plot_matrices([(title, whole)], os.path.join(output, f"{env}_{algo}_selection.png"), names))
        chosen = list(windows) if windows else default_windows(min(int(run.timesteps[-1]) for run in group))
        panels = []
        for name, (start, end) in zip(("early", "late"), chosen):
            snapped, diffs = zip(*(window_counts(run, start, end) for run in group))
            bounds = sorted(set(snapped))
            span = ", ".join(f"{_steps(a)}-{_steps(b)}" for a, b in bounds)
            panels.append((f"{name}: env steps {span}", mean_selection(diffs)))
        output_file = os.path.join(output, f"{env}_{algo}_selection_early_late.png")
        paths.append(plot_matrices(panels, output_file, names, suptitle=f"{title}: selections made in each window"))
    return paths


def plot_runs(
    runs: Sequence[Run],
    output: str,
    metrics: Sequence[str] = ("success",),
    views: Sequence[str] = ("own",),
    highlight_task: int | None = None,
    windows: Sequence[tuple[float, float]] | None = None,
    heatmaps: bool = True,
    title_note: str | None = None,
) -> list[str]:
    """Every figure of ``runs`` (per env, metric and view, plus the selection matrices); returns the PNGs.

    :param runs: the runs (from :func:`find_runs` or :func:`runs_from_summary`).
    :param output: folder of the PNGs.
    :param metrics: metrics to draw (one figure set each).
    :param views: evaluation modes to draw (``"own"``, ``"mixture"``, ``"both"``; one figure set each).
    :param highlight_task: task to emphasise in the per-task figures.
    :param windows: the two training windows of the early/late selection matrices.
    :param heatmaps: draw the selection matrices.
    :param title_note: second title line of the mean-over-tasks figures (e.g. the budget's share of the paper's).
    """
    if not runs:
        raise ValueError("No runs to plot.")
    flag_non_finite(runs, metrics)
    paths: list[str] = []
    for env in sorted({run.env for run in runs}):
        for metric in metrics:
            for view in views:
                if view != "own" and not any(run.env == env and run.has(metric, "mixture") for run in runs):
                    # It would repeat the own-policy figure.
                    _note(f"No mixture {metric} recorded on {env}: no {view} figure of it (the own one has it all).")
                    continue
                paths += plot_curves(runs, env, output, metric, view, highlight_task, title_note)
        if heatmaps:
            paths += plot_selection(runs, env, output, windows)
    return paths


def flag_non_finite(runs: Sequence[Run], metrics: Sequence[str]) -> list[str]:
    """Warn about every curve with nan/inf values (those points are left out of the figures); return the notes."""
    notes = []
    for run in runs:
        for mode, by_metric in run.curves.items():
            for metric in metrics:
                values = by_metric.get(metric)
                if values is None or np.isfinite(values).all():
                    continue
                steps = run.timesteps[~np.isfinite(values).all(axis=1)].tolist()
                notes.append(f"{run.path}: {mode} {metric} is nan/inf at env steps {steps}; those points are not drawn.")
    for note in notes:
        warnings.warn(note, stacklevel=3)
    return notes


def runs_from_summary(path: str) -> list[Run]:
    """The runs stored in a ``benchmarks/paper_comparison.py`` summary (its ``runs`` list)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No summary at {path!r}.")
    with open(path) as f:
        data = json.load(f)
    if not data.get("runs"):
        raise ValueError(
            f"{path} stores no per-run curves (written before summaries kept them, or no run had finished): "
            "re-run `python benchmarks/paper_comparison.py --summarize-only` on its logs to rewrite it."
        )
    return [Run.from_json(run) for run in data["runs"]]


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
    import zipfile

    from stable_baselines3.common.save_util import load_from_zip_file

    from sb3_qmp.mtsac.mtsac import SELECTION_ENTRY

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No saved model at {path!r}.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if SELECTION_ENTRY in names:  # plain JSON: nothing is unpickled
                return np.asarray(json.loads(archive.read(SELECTION_ENTRY)), dtype=np.int64)
    except zipfile.BadZipFile:
        raise ValueError(
            f"--heatmap {path}: not a saved model (not a zip file); give a model .zip, an .npz or a run folder."
        ) from None
    if "data" not in names:
        raise ValueError(f"--heatmap {path}: a zip file, but not a saved SB3 model (no 'data' entry).")
    # Models saved by earlier versions (or to a stream) keep the counts only in the pickled data: unpickling runs
    # code from the file.
    warnings.warn(f"{path} has no plain-JSON selection counts: reading them unpickles the file's data.", stacklevel=2)
    saved, _, _ = load_from_zip_file(path, load_data=True, device="cpu", custom_objects={"learning_rate": 0.0})
    counts = (
        None if saved is None else saved.get("selection_counts", getattr(saved.get("collector"), "selection_counts", None))
    )
    if counts is None:
        raise ValueError(f"The model saved at {path} has no `selection_counts` (not a multi-task mixture model).")
    return np.asarray(counts)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m sb3_qmp.plot`` (documented in the module docstring and docs/zoo.md)."""
    parser = argparse.ArgumentParser(
        prog="python -m sb3_qmp.plot",
        description=__doc__.split("\n\n")[0],
        epilog="Metrics: success = strict (is_success at the episode's end); success_any_step = the paper's metric "
        "(success flag at any step; comparable with the paper); return; length; stages (Reacher's stages completed). "
        "Modes: own = each task's own policy; mixture = the algorithm's collector (own policy for algorithms "
        "without one); both = own solid and mixture dashed.",
    )
    parser.add_argument(
        "log_folders", nargs="*", help="log folders holding <algo>/<env>_<run>/ run folders (searched recursively)"
    )
    parser.add_argument("--from-summary", metavar="JSON", help="redraw from a paper_comparison summary.json instead of logs")
    parser.add_argument(
        "-o", "--output", help="folder of the PNGs (default: <first log folder>/plots or the summary's folder)"
    )
    parser.add_argument("--algos", nargs="+", help="only these algorithms")
    parser.add_argument("--envs", nargs="+", help="only these env ids")
    parser.add_argument(
        "--metric",
        nargs="+",
        choices=list(METRICS),
        default=["success"],
        metavar="METRIC",
        help="metric(s) of the curves: " + ", ".join(METRICS),
    )
    parser.add_argument(
        "--mode",
        nargs="+",
        choices=list(VIEWS),
        default=["own"],
        metavar="MODE",
        help="evaluation mode(s): own, mixture, both",
    )
    parser.add_argument(
        "--highlight-task", type=int, default=None, metavar="I", help="emphasise task I (e.g. 3, Reacher's sparse task)"
    )
    parser.add_argument(
        "--selection-windows",
        nargs=2,
        metavar="START:END",
        help="early and late env-step windows of the selection matrices (e.g. 0:200k 400k:600k; default: first/last third)",
    )
    parser.add_argument("--title-note", default=None, help="second title line of the mean-over-tasks figures")
    parser.add_argument("--no-heatmaps", action="store_true", help="skip the selection matrices of the runs")
    parser.add_argument(
        "--heatmap", action="append", default=[], metavar="PATH", help="heatmap of a saved model (.zip), .npz or run folder"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> list[str]:
    """Command-line entry point (``python -m sb3_qmp.plot``); returns the written PNG paths."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.log_folders and not args.heatmap and not args.from_summary:
        parser.error("give at least one log folder, --from-summary JSON or --heatmap PATH")
    if args.from_summary and args.log_folders:
        parser.error("give log folders or --from-summary, not both")
    try:
        windows = [parse_window(text) for text in args.selection_windows] if args.selection_windows else None
    except ValueError as error:
        parser.error(str(error))
    runs: list[Run] = []
    if args.from_summary:
        runs = runs_from_summary(args.from_summary)
        runs = [r for r in runs if (not args.algos or r.algo in args.algos) and (not args.envs or r.env in args.envs)]
        output = args.output or os.path.dirname(os.path.abspath(args.from_summary))
        if not runs:
            raise ValueError(f"No runs of {args.algos or 'any algorithm'} on {args.envs or 'any env'} in {args.from_summary}.")
    elif args.log_folders:
        runs = find_runs(args.log_folders, args.algos, args.envs)
        output = args.output or os.path.join(args.log_folders[0], "plots")
        if not runs:
            raise FileNotFoundError(
                f"No {EVAL_FILE} under {list(args.log_folders)} (layout <folder>/<algo>/<env>_<run>/). Train with "
                "sb3_qmp.common.callbacks.PerTaskEvalCallback (the shipped zoo YAMLs add it)."
            )
    else:
        output = args.output or "."
    paths: list[str] = []
    if runs:
        paths += plot_runs(
            runs, output, args.metric, args.mode, args.highlight_task, windows, not args.no_heatmaps, args.title_note
        )
    for path in args.heatmap:
        stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        paths.append(plot_heatmap(load_selection_counts(path), os.path.join(output, f"{stem}_selection.png"), title=stem))
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()
