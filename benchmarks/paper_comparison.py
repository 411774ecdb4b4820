"""Learning curves against the paper: a resumable grid of algorithms x seeds on one task set, on Ray.

A preset of the package's grid runner (:mod:`sb3_qmp.grid`, docs/grid.md): every run is the literal zoo
training command of this package (``python -m sb3_qmp.train ... --resume``) with the packaged YAML entry
of the env (the paper's hyperparameters) and only the total budget changed (plus ``--params``), executed
as a Ray task (one CPU, ``nice -n --nice``, one torch thread), checkpointed every ``--checkpoint-minutes``
and continued from its newest checkpoint after any interruption. The YAML's ``PerTaskEvalCallback``
evaluates along the way (own policy, and the mixture for mixture algorithms; strict and any-step success)::

    python benchmarks/paper_comparison.py --env MultistageReacher-v1 --algos qmp separated dnc_reg \\
        --seeds 0 1 2 -n 600000 --jobs 2 --logs logs/paper_reacher --out benchmarks/results/paper_reacher \\
        --highlight-task 3

``--jobs N`` sizes the local Ray instance (N runs at a time); ``--address auto`` sends the runs to a running
Ray cluster instead. Layout: run (algo, seed) trains with ``-f LOGS/seed_<seed>``, i.e. in
``LOGS/seed_<seed>/<algo>/<env>_1/`` (checkpoints in its ``checkpoints/``; ``_2/`` and so on where a run
stopped before its first checkpoint started over), its output in
``LOGS/seed_<seed>/<algo>_<env>.out``. A run is *finished* when its final model holds at least ``-n`` env
steps; then ``run_finished.json`` is written into the run folder (command line, settings, wall time of
every attempt, code commit). **Resuming**: re-running the same command skips the finished runs and
continues the others from their newest checkpoint (runs without one start over). With ``--out``, every
finished run's record and evaluation history is also kept in ``OUT/runs/`` (``--archive``; kilobytes, for
git): runs kept there count as finished even where their log folder is gone, so the same command rebuilds
the summary on a fresh machine.

With ``--out``, after every finished run (and at the end) the finished runs are summarised into
``OUT/summary.json`` (settings, the runs with their commands, wall times and full per-task curves
for every metric and evaluation mode, the tables' numbers, the orderings, the aggregates over runs and
tasks with rliable's estimators, the runs still missing), ``OUT/summary.md`` (tables: final success and
env steps to first reach ``--threshold`` with both the any-step and the strict metric and both evaluation
modes, the area under the curve and the late success (the mean over the last 10% of the run), per-task final
success and stages, the ordering of the methods, IQM / mean with stratified-bootstrap
intervals and the probability of improvement of ``--reference`` over each method, the curves at every
evaluation, the commands) and the PNGs of ``python -m sb3_qmp.plot``, which redraws them from the summary
alone: ``python -m sb3_qmp.plot --from-summary OUT/summary.json ...`` (the exact command is in the summary).
``--summarize-only`` summarises what has finished without training and lists the missing runs; run
folders of the plain rl-zoo3 layout ``LOGS/<algo>/<env>_<n>/`` (earlier versions of this script) are
summarised too, as runs of unknown seed. ``--rebuild-from OUT/summary.json`` rewrites a summary's tables,
JSON and PNGs from the runs stored in it, with its stored settings and no logs (e.g. to give a summary
committed by an earlier version of this script the tables added since). ``--final-info-key stages_completed``
also runs every finished run's final model for a few episodes per task and reports that ``info`` entry.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from sb3_qmp.common.callbacks import EVAL_FILE
from sb3_qmp.common.files import atomic_write_json, atomic_write_text
from sb3_qmp.common.results import Run, find_runs, parse_window, run_from_npz
from sb3_qmp.grid import RunOptions, RunSpec, run_grid, run_state
from sb3_qmp.grid.runs import check_settings
from sb3_qmp.grid.statistics import compare, compare_markdown
from sb3_qmp.plot import plot_runs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comparison_summary import orderings, summarize, to_markdown

REPOSITORY = Path(__file__).resolve().parent.parent


def grid_specs(args: argparse.Namespace) -> list[RunSpec]:
    """The grid's runs, seed 0 of every method first (an early look compares methods, not seeds)."""
    params = tuple(args.params or ())
    return [RunSpec(algo, args.env, seed, args.n_timesteps, params) for seed in args.seeds for algo in args.algos]


def archive_of(args: argparse.Namespace) -> Path | None:
    """Where finished runs are kept: ``--archive``, else ``OUT/runs`` with ``--out``."""
    if args.archive is not None:
        return args.archive
    return args.out / "runs" if args.out is not None else None


def train(args: argparse.Namespace) -> None:
    """Run every unfinished run of the grid on Ray; summarise after each finished run."""
    specs = grid_specs(args)
    archive = archive_of(args)
    for spec in specs:  # refuse other settings before anything starts
        state = run_state(spec, args.logs, archive=archive)
        if state.state == "finished":
            try:
                check_settings(spec, state)
            except ValueError as error:
                raise SystemExit(str(error)) from None
    options = RunOptions(
        checkpoint_minutes=args.checkpoint_minutes, nice=args.nice, device="cuda" if args.gpus_per_run else None
    )
    run_grid(
        specs,
        args.logs,
        options,
        address=args.address,
        num_cpus=None if args.address else args.jobs,
        gpus_per_run=args.gpus_per_run,
        poll=args.poll,
        status_every=args.status_every,
        on_finished=(lambda _: write_summary(args)) if args.out is not None else None,
        archive=archive,
    )


def collect(args: argparse.Namespace) -> tuple[list[Run], list[dict[str, Any]], list[str]]:
    """The finished runs of the grid (plus plain-zoo-layout runs directly under ``--logs``), their records,
    and the names of the grid's runs not finished yet."""
    archive = archive_of(args)
    if not args.logs.is_dir() and (archive is None or not archive.is_dir()):
        raise FileNotFoundError(f"Log folder {str(args.logs)!r} does not exist (nor an archive of finished runs).")
    runs, infos, missing = [], [], []
    legacy = [algo for algo in args.algos if (args.logs / algo).is_dir()]
    for spec in grid_specs(args):
        state = run_state(spec, args.logs, archive=archive)
        name = f"{spec.algo} seed {spec.seed}"
        if state.state != "finished":
            if spec.algo not in legacy:  # earlier layout: which seeds ran is not recorded
                missing.append(f"{name} ({'unfinished' if state.state == 'started' else 'missing'})")
            continue
        assert state.path is not None and state.record is not None
        run = run_from_npz(str(state.path / EVAL_FILE), spec.algo, args.env, spec.seed)
        if run is None:
            missing.append(f"{name} (finished without evaluations)")
            continue
        runs.append(run)
        infos.append({"path": str(state.path), **state.record})
    # Early versions of this script trained every seed in LOGS/<algo>/<env>_<n>/ (seed not recorded).
    for algo in legacy:
        for run in find_runs([str(args.logs / algo)], algos=[algo], envs=[args.env]):
            runs.append(run)
            infos.append({"algo": algo, "seed": None, "path": run.path, "command": None, "wall_time_s": None})
    return runs, infos, missing


def final_info_stat(runs: list[Run], env_id: str, key: str, episodes: int) -> dict[str, list[list[float]]]:
    """Per algorithm, per seed, per task: the mean of ``info[key]`` at the end of ``episodes`` episodes of
    each task's own deterministic policy, from the run's final saved model (e.g. Reacher's
    ``stages_completed``, which shows progress that all-or-nothing success hides)."""
    import gymnasium as gym

    import sb3_qmp  # noqa: F401  (registers the env ids)
    from sb3_qmp.registry import get_algo

    stats: dict[str, list[list[float]]] = {}
    for run in runs:
        model = get_algo(run.algo).load(os.path.join(run.path, f"{env_id}.zip"), device="cpu")
        per_task = []
        for task in range(model.num_tasks):
            env = gym.make(env_id, task_id=task)
            values = []
            for episode in range(episodes):
                obs, _ = env.reset(seed=10_000 + episode)
                done = False
                while not done:
                    action, _ = model.predict(obs[None], deterministic=True)
                    obs, _, terminated, truncated, info = env.step(action[0])
                    done = terminated or truncated
                values.append(float(info[key]))
            env.close()
            per_task.append(float(np.mean(values)))
        stats.setdefault(run.algo, []).append(per_task)
    return stats


def plot_options(runs: list[Run], args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The metrics and evaluation views to draw: the success metrics and stages the runs recorded; own,
    and both modes overlaid when some run has a mixture evaluation."""
    metrics = [m for m in ("success_any_step", "success", "stages") if any(run.has(m) for run in runs)]
    views = ["own", "both"] if any("mixture" in run.modes for run in runs) else ["own"]
    return metrics, views


def plot_command(summary_file: Path, metrics: list[str], views: list[str], args: argparse.Namespace) -> str:
    """The ``python -m sb3_qmp.plot`` command that redraws the summary's figures. A summary inside the
    repository is named relative to its root, so the command in a committed summary works on any checkout."""
    try:
        shown = str(summary_file.resolve().relative_to(REPOSITORY))
    except ValueError:
        shown = str(summary_file)
    command = ["python", "-m", "sb3_qmp.plot", "--from-summary", shown, "--metric", *metrics, "--mode", *views]
    if args.highlight_task is not None:
        command += ["--highlight-task", str(args.highlight_task)]
    if args.selection_windows:
        command += ["--selection-windows", *args.selection_windows]
    if args.title_note:
        command += ["--title-note", args.title_note]
    return shlex.join(command)


def aggregates(runs: list[Run], reference: str | None) -> dict[str, Any]:
    """Per evaluation mode: IQM and mean of the final any-step success over runs and tasks with
    stratified-bootstrap intervals, and ``P(reference > method)`` (:mod:`sb3_qmp.grid.statistics`)."""
    result: dict[str, Any] = {}
    for mode in ("own", "mixture"):
        scores: dict[str, list[np.ndarray]] = {}
        for run in runs:
            if run.has("success_any_step", mode):
                scores.setdefault(run.algo, []).append(run.values("success_any_step", mode)[-1])
        if scores:
            ref = reference if reference in scores else None
            result[mode] = compare({algo: np.stack(values) for algo, values in scores.items()}, ref)
    return result


def aggregates_markdown(result: dict[str, Any]) -> str:
    titles = {"own": "own policies", "mixture": "the mixture"}
    return "\n".join(
        compare_markdown(c, f"Final any-step success over runs and tasks, {titles[m]}") for m, c in result.items()
    )


# What a stored summary's run holds besides its record (the keys of Run.to_json that the record lacks).
RUN_DATA_KEYS = ("timesteps", "task_names", "curves", "selection_counts")
# Settings a stored summary restores for --rebuild-from (everything that shapes the tables and figures).
STORED_SETTINGS = (
    "env", "algos", "seeds", "n_timesteps", "threshold", "reference", "highlight_task", "title_note",
    "selection_windows", "final_info_key", "final_episodes", "logs",
)  # fmt: skip


def stored_summary(args: argparse.Namespace) -> dict[str, Any]:
    """The summary named by ``--rebuild-from``; its settings replace ``args``' (``--out`` defaults to its folder)."""
    path = args.rebuild_from
    if not path.is_file():
        raise SystemExit(f"No summary at {path}: --rebuild-from takes a summary.json written by this script.")
    stored = json.loads(path.read_text())
    if not stored.get("runs") or "settings" not in stored:
        raise SystemExit(f"{path} holds no stored runs and settings: not a summary.json of this script.")
    for key in STORED_SETTINGS:
        if key in stored["settings"]:
            setattr(args, key, stored["settings"][key])
    args.logs = Path(args.logs)
    args.out = path.parent if args.out is None else args.out
    return stored


def write_summary(args: argparse.Namespace, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """Summarise the finished runs (tables, JSON with the per-run curves, PNGs under ``--out``); return the result.

    :param stored: a summary written earlier (``--rebuild-from``): its runs, records, missing runs and final-model
        statistic are used instead of the logs."""
    if stored is None:
        runs, infos, missing = collect(args)
    else:
        runs = [Run.from_json(run) for run in stored["runs"]]
        infos = [{k: v for k, v in run.items() if k not in RUN_DATA_KEYS} for run in stored["runs"]]
        missing = list(stored.get("missing") or [])
    if not runs:
        raise SystemExit(f"No finished per-task evaluations of {args.algos} on {args.env} under {args.logs}.")
    # What the summary stores is what the figures are drawn from: redrawing from it gives the same PNGs.
    runs = [Run.from_json(run.to_json()) for run in runs]
    summary = summarize(runs, args.threshold)
    final_info = None
    if stored is not None:  # the final models may be gone: keep what was measured
        final_info = stored.get("final_info")
    elif args.final_info_key:
        final_info = {
            "key": args.final_info_key,
            "values": final_info_stat(runs, args.env, args.final_info_key, args.final_episodes),
        }
    metrics, views = plot_options(runs, args)
    summary_file = args.out / "summary.json" if args.out is not None else Path("summary.json")
    redraw = plot_command(summary_file, metrics, views, args)
    budgets = sorted({info["n_timesteps"] for info in infos if info.get("n_timesteps")}) or ["?"]
    header = (
        f"# {args.env}: {', '.join(args.algos)} x seeds {' '.join(map(str, args.seeds))}, "
        f"{' / '.join(map(str, budgets))} env steps per run"
    )
    table = to_markdown(summary, args.threshold, infos, missing, header, final_info)
    aggregate = aggregates(runs, args.reference)
    table += "\n\n" + aggregates_markdown(aggregate)
    table += f"\nRedraw the figures from this summary: `{redraw}`\n"
    seconds = {f"{info['algo']} seed {info['seed']}": info["wall_time_s"] for info in infos if info.get("wall_time_s")}
    result: dict[str, Any] = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "windows"},
        "finished": [f"{info['algo']} seed {info['seed']}" for info in infos],
        "missing": missing,
        "seconds": seconds,
        "runs": [{**info, **run.to_json()} for info, run in zip(infos, runs)],
        "summary": summary,
        "orderings": orderings(summary),
        "aggregates": aggregate,
        "final_info": final_info,
        "plot_command": redraw,
    }
    print(table)
    if args.out is not None:
        atomic_write_json(summary_file, result)
        atomic_write_text(args.out / "summary.md", table)
        if not args.no_plots:
            figures = plot_runs(
                runs, str(args.out), metrics, views, args.highlight_task, args.windows, title_note=args.title_note
            )
            for path in figures:
                print(path)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MultistageReacher-v0")
    parser.add_argument("--algos", nargs="+", default=["qmp", "separated", "dnc_reg"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("-n", "--n-timesteps", type=int, default=1_000_000, help="env steps per run (all tasks)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time: CPUs of the local Ray instance")
    parser.add_argument("--address", default=None, help="a running Ray cluster ('auto', 'ray://host:10001') instead")
    parser.add_argument("--gpus-per-run", type=float, default=0.0, help="> 0: each run reserves GPUs and trains on cuda")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0, help="checkpoint period of every run")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the training processes (0: no nice)")
    parser.add_argument("--params", nargs="+", default=None, help="extra -params for every run (key:value)")
    parser.add_argument("--threshold", type=float, default=1.0, help="success level for 'env steps to reach'")
    parser.add_argument("--logs", type=Path, default=Path("logs/paper_comparison"), help="log folder of the grid")
    parser.add_argument("--out", type=Path, default=None, help="write summary.json, summary.md and the PNGs here")
    parser.add_argument("--archive", type=Path, default=None, help="keep finished runs' small files here (default OUT/runs)")
    parser.add_argument("--reference", default="qmp", help="method whose probability of improvement is reported")
    parser.add_argument("--summarize-only", action="store_true", help="do not train; summarise the finished runs in --logs")
    parser.add_argument(
        "--rebuild-from",
        type=Path,
        default=None,
        help="rewrite this summary.json's tables and figures from the runs stored in it (its settings, no logs)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write summary.json and summary.md only (no PNGs)")
    parser.add_argument("--highlight-task", type=int, default=None, help="task emphasised in the per-task figures")
    parser.add_argument("--title-note", default=None, help="second title line of the figures (e.g. the budget share)")
    parser.add_argument(
        "--selection-windows", nargs=2, metavar="START:END", help="early/late windows of the selection matrices"
    )
    parser.add_argument("--final-info-key", default=None, help="also report this info key of the final models' episodes")
    parser.add_argument("--final-episodes", type=int, default=5, help="episodes per task for --final-info-key")
    parser.add_argument("--status-every", type=float, default=300.0, help="seconds between progress tables (not on a tty)")
    parser.add_argument("--poll", type=float, default=5.0, help=argparse.SUPPRESS)  # seconds between checks of the runs
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}.")
    stored = stored_summary(args) if args.rebuild_from is not None else None  # its settings replace args'
    try:  # checked before any training
        args.windows = [parse_window(text) for text in args.selection_windows] if args.selection_windows else None
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if stored is not None:
        return write_summary(args, stored)
    if not args.summarize_only:
        train(args)
    return write_summary(args)


if __name__ == "__main__":
    main()
