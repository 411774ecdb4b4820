"""Learning curves against the paper: a resumable grid of algorithms x seeds on one task set, through rl-zoo3.

Every run is the literal zoo training command of this package (``python -m sb3_qmp.train``) with the
packaged YAML entry of the env (the paper's hyperparameters) and only the total budget changed (plus
``--params``); the YAML's ``PerTaskEvalCallback`` evaluates along the way (own policy, and the
mixture for mixture algorithms; strict and any-step success). Runs go ``--jobs`` at a time, each
under ``nice -n --nice`` with one torch thread (``--num-threads 1``, ``OMP_NUM_THREADS=1``,
``MKL_NUM_THREADS=1``)::

    python benchmarks/paper_comparison.py --env MultistageReacher-v1 --algos qmp separated dnc_reg \\
        --seeds 0 1 2 -n 600000 --jobs 2 --logs logs/paper_reacher --out benchmarks/results/paper_reacher \\
        --highlight-task 3

Layout: run (algo, seed) trains with ``-f LOGS/seed_<seed>``, i.e. in ``LOGS/seed_<seed>/<algo>/<env>_1/``
(one folder per seed, so runs started together never race for an rl-zoo3 run id), its output in
``LOGS/seed_<seed>/<algo>_<env>.out``. A run is *finished* when its command exited with 0 and its
final model (``<env>.zip``) holds at least ``-n`` env steps (rl-zoo3 also saves the model when
training is interrupted); then ``run_finished.json`` is written into the run folder with the exact
command line, the wall time and the settings. **Resuming**: re-running the same command skips the
finished runs and re-runs the others from scratch (an unfinished run's ``LOGS/seed_<seed>/<algo>/``
folder is deleted first). One grid process per ``--logs`` folder at a time.

With ``--out``, after every finished run (and at the end) the finished runs are summarised into
``OUT/summary.json`` (settings, the runs with their commands, wall times and full per-task curves
for every metric and evaluation mode, the tables' numbers, the orderings, the runs still missing),
``OUT/summary.md`` (tables: final success and env steps to first reach ``--threshold`` with both the
any-step and the strict metric and both evaluation modes, per-task final success and stages,
the ordering of the methods, the curves at every evaluation, the commands) and the PNGs of
``python -m sb3_qmp.plot``, which redraws them from the summary alone:
``python -m sb3_qmp.plot --from-summary OUT/summary.json ...`` (the exact command is in the summary).
``--summarize-only`` summarises what has finished under ``--logs`` without training and lists the
missing runs; run folders of the plain rl-zoo3 layout ``LOGS/<algo>/<env>_<n>/`` (earlier versions
of this script) are summarised too, as runs of unknown seed. ``--final-info-key stages_completed``
also runs every finished run's final model for a few episodes per task and reports that ``info`` entry.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sb3_qmp.common.callbacks import EVAL_FILE
from sb3_qmp.common.results import RUN_DIR, Run, find_runs, parse_window, run_from_npz
from sb3_qmp.plot import plot_runs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comparison_summary import orderings, summarize, to_markdown

MARKER = "run_finished.json"
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Env kwargs that take the run's seed: the authors drew each Meta-World run's object variations from its seed
# (and evaluated on the set of seed + 100, which the YAML's PerTaskEvalCallback asks for with variation_set: eval).
RUN_SEED_ENV_KWARG = {"MetaWorldDoorDrawer": "variation_seed", "MetaWorldMT10": "benchmark_seed"}


def seed_env_kwargs(env_id: str, seed: int) -> list[str]:
    """``--env-kwargs`` arguments that pass the run's seed to envs whose task variations depend on it."""
    name = env_id.split("-v")[0]
    return ["--env-kwargs", f"{RUN_SEED_ENV_KWARG[name]}:{seed}"] if name in RUN_SEED_ENV_KWARG else []


def seed_folder(logs: Path, seed: int) -> Path:
    """The rl-zoo3 log folder (``-f``) of the runs of ``seed``."""
    return logs / f"seed_{seed}"


def train_command(args: argparse.Namespace, algo: str, seed: int) -> list[str]:
    """The zoo training command of run (``algo``, ``seed``)."""
    return [
        sys.executable,
        "-m",
        "sb3_qmp.train",
        "--algo",
        algo,
        "--env",
        args.env,
        "-n",
        str(args.n_timesteps),
        "--seed",
        str(seed),
        "-f",
        str(seed_folder(args.logs, seed)),
        "--num-threads",
        "1",
        "--eval-freq",
        "-1",  # the zoo's single-env EvalCallback; the YAML's per-task evaluation stays on
        *seed_env_kwargs(args.env, seed),
        *(["-params", *args.params] if args.params else []),
    ]


def launch_command(args: argparse.Namespace, algo: str, seed: int) -> list[str]:
    """:func:`train_command` under ``nice`` (when ``--nice`` > 0)."""
    return [*(["nice", "-n", str(args.nice)] if args.nice > 0 else []), *train_command(args, algo, seed)]


def command_line(command: list[str]) -> str:
    """The exact shell command line of a run, with its thread environment variables."""
    return " ".join(f"{key}={value}" for key, value in CHILD_ENV.items()) + " " + shlex.join(command)


def saved_num_timesteps(model_zip: Path) -> int | None:
    """``num_timesteps`` stored in an SB3 model zip (``None``: no readable zip)."""
    try:
        with zipfile.ZipFile(model_zip) as archive:
            return int(json.loads(archive.read("data"))["num_timesteps"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


@dataclass
class GridRun:
    """The state of run (algo, seed) of the grid: ``finished``, ``unfinished`` (a folder without a
    finished record) or ``missing``; ``path`` is its run folder and ``record`` its ``run_finished.json``."""

    algo: str
    seed: int
    state: str
    path: Path | None = None
    record: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return f"{self.algo} seed {self.seed}"


def grid_run(args: argparse.Namespace, algo: str, seed: int) -> GridRun:
    """Where run (``algo``, ``seed``) of ``args``'s grid stands."""
    algo_dir = seed_folder(args.logs, seed) / algo
    run_dirs = sorted(
        (p for p in algo_dir.glob(f"{args.env}_*") if (m := RUN_DIR.match(p.name)) and m["env"] == args.env),
        key=lambda p: int(p.name.rsplit("_", 1)[1]),
    )
    for run_dir in reversed(run_dirs):
        if (run_dir / MARKER).is_file():
            return GridRun(algo, seed, "finished", run_dir, json.loads((run_dir / MARKER).read_text()))
    return GridRun(algo, seed, "unfinished" if algo_dir.exists() else "missing", run_dirs[-1] if run_dirs else None)


def check_settings(args: argparse.Namespace, run: GridRun) -> None:
    """Refuse to mix a finished run of other settings into this grid."""
    assert run.record is not None
    theirs = (run.record.get("n_timesteps"), run.record.get("params"))
    if theirs != (args.n_timesteps, args.params):
        raise SystemExit(
            f"{run.name} in {run.path} finished with -n {theirs[0]} and --params {theirs[1]}, not -n {args.n_timesteps} "
            f"and --params {args.params}: use another --logs folder for other settings (or the same settings to resume)."
        )


def finish(args: argparse.Namespace, algo: str, seed: int, command: list[str], seconds: float, returncode: int) -> bool:
    """Record run (``algo``, ``seed``) as finished if it is (see the module docstring); return whether it is."""
    run = grid_run(args, algo, seed)
    model = run.path / f"{args.env}.zip" if run.path is not None else None
    steps = saved_num_timesteps(model) if model is not None else None
    if returncode != 0 or run.path is None or steps is None or steps < args.n_timesteps:
        reason = f"exit code {returncode}" if returncode != 0 else f"final model holds {steps} of {args.n_timesteps} env steps"
        print(
            f"{run.name}: NOT finished ({reason}); see {seed_folder(args.logs, seed) / f'{algo}_{args.env}.out'}", flush=True
        )
        return False
    record = {
        "algo": algo,
        "seed": seed,
        "env": args.env,
        "n_timesteps": args.n_timesteps,
        "params": args.params,
        "num_timesteps": steps,
        "command": command_line(command),
        "wall_time_s": round(seconds, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (run.path / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    print(f"{run.name}: finished in {seconds:.0f} s", flush=True)
    return True


def run_grid(args: argparse.Namespace) -> None:
    """Train every unfinished (algo, seed) of the grid, ``--jobs`` at a time; summarise after each finished run."""
    todo = []
    for seed in args.seeds:
        for algo in args.algos:
            run = grid_run(args, algo, seed)
            if run.state == "finished":
                check_settings(args, run)
                print(f"{run.name}: already finished in {run.path}, skipped", flush=True)
                continue
            if run.state == "unfinished":
                # A run cut short cannot continue (the zoo saves no replay buffer by default): start it over.
                print(f"{run.name}: unfinished run in {run.path.parent if run.path else ''} deleted, re-running", flush=True)
                shutil.rmtree(seed_folder(args.logs, seed) / algo)
            todo.append((algo, seed))
    env = {**os.environ, **CHILD_ENV, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    running: dict[tuple[str, int], tuple[subprocess.Popen, list[str], float]] = {}
    try:
        while todo or running:
            while todo and len(running) < args.jobs:
                algo, seed = todo.pop(0)
                command = launch_command(args, algo, seed)
                seed_folder(args.logs, seed).mkdir(parents=True, exist_ok=True)
                # The child gets its own copy of the file handle: ours can close at once.
                with open(seed_folder(args.logs, seed) / f"{algo}_{args.env}.out", "w") as log:
                    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                running[(algo, seed)] = (proc, command, time.perf_counter())
                print(f"{algo} seed {seed}: started ({command_line(command)})", flush=True)
            time.sleep(args.poll)
            for (algo, seed), (proc, command, start) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[(algo, seed)]
                if finish(args, algo, seed, command, time.perf_counter() - start, proc.returncode) and args.out is not None:
                    write_summary(args)  # incremental: an interrupted grid keeps every finished run's summary
    finally:
        for proc, _, _ in running.values():  # interrupted: leave no orphan training processes
            proc.terminate()
        for proc, _, _ in running.values():
            proc.wait()


def collect(args: argparse.Namespace) -> tuple[list[Run], list[dict[str, Any]], list[str]]:
    """The finished runs of the grid (plus plain-zoo-layout runs directly under ``--logs``), their records,
    and the names of the grid's runs not finished yet."""
    if not args.logs.is_dir():
        raise FileNotFoundError(f"Log folder {str(args.logs)!r} does not exist.")
    runs, infos, missing = [], [], []
    legacy = [algo for algo in args.algos if (args.logs / algo).is_dir()]
    for seed in args.seeds:
        for algo in args.algos:
            grid = grid_run(args, algo, seed)
            if grid.state != "finished":
                if algo not in legacy:  # earlier layout: which seeds ran is not recorded
                    missing.append(f"{grid.name} ({grid.state})")
                continue
            assert grid.path is not None and grid.record is not None
            run = run_from_npz(str(grid.path / EVAL_FILE), algo, args.env, seed)
            if run is None:
                missing.append(f"{grid.name} (finished without evaluations)")
                continue
            runs.append(run)
            infos.append({"path": str(grid.path), **grid.record})
    # Earlier versions of this script trained every seed in LOGS/<algo>/<env>_<n>/ (seed not recorded).
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
    """The ``python -m sb3_qmp.plot`` command that redraws the summary's figures."""
    command = ["python", "-m", "sb3_qmp.plot", "--from-summary", str(summary_file), "--metric", *metrics, "--mode", *views]
    if args.highlight_task is not None:
        command += ["--highlight-task", str(args.highlight_task)]
    if args.selection_windows:
        command += ["--selection-windows", *args.selection_windows]
    return shlex.join(command)


def write_summary(args: argparse.Namespace) -> dict[str, Any]:
    """Summarise the finished runs (tables, JSON with the per-run curves, PNGs under ``--out``); return the result."""
    runs, infos, missing = collect(args)
    if not runs:
        raise SystemExit(f"No finished per-task evaluations of {args.algos} on {args.env} under {args.logs}.")
    # What the summary stores is what the figures are drawn from: redrawing from it gives the same PNGs.
    runs = [Run.from_json(run.to_json()) for run in runs]
    summary = summarize(runs, args.threshold)
    final_info = None
    if args.final_info_key:
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
    table += f"\n\nRedraw the figures from this summary: `{redraw}`\n"
    seconds = {f"{info['algo']} seed {info['seed']}": info["wall_time_s"] for info in infos if info.get("wall_time_s")}
    result: dict[str, Any] = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "windows"},
        "finished": [f"{info['algo']} seed {info['seed']}" for info in infos],
        "missing": missing,
        "seconds": seconds,
        "runs": [{**info, **run.to_json()} for info, run in zip(infos, runs)],
        "summary": summary,
        "orderings": orderings(summary),
        "final_info": final_info,
        "plot_command": redraw,
    }
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        summary_file.write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "summary.md").write_text(table)
        if not args.no_plots:
            for path in plot_runs(runs, str(args.out), metrics, views, args.highlight_task, args.windows):
                print(path)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MultistageReacher-v0")
    parser.add_argument("--algos", nargs="+", default=["qmp", "separated", "dnc_reg"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("-n", "--n-timesteps", type=int, default=1_000_000, help="env steps per run (all tasks)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the training processes (0: no nice)")
    parser.add_argument("--params", nargs="+", default=None, help="extra -params for every run (key:value)")
    parser.add_argument("--threshold", type=float, default=1.0, help="success level for 'env steps to reach'")
    parser.add_argument("--logs", type=Path, default=Path("logs/paper_comparison"), help="log folder of the grid")
    parser.add_argument("--out", type=Path, default=None, help="write summary.json, summary.md and the PNGs here")
    parser.add_argument("--summarize-only", action="store_true", help="do not train; summarise the finished runs in --logs")
    parser.add_argument("--no-plots", action="store_true", help="write summary.json and summary.md only (no PNGs)")
    parser.add_argument("--highlight-task", type=int, default=None, help="task emphasised in the per-task figures")
    parser.add_argument(
        "--selection-windows", nargs=2, metavar="START:END", help="early/late windows of the selection matrices"
    )
    parser.add_argument("--final-info-key", default=None, help="also report this info key of the final models' episodes")
    parser.add_argument("--final-episodes", type=int, default=5, help="episodes per task for --final-info-key")
    parser.add_argument("--poll", type=float, default=5.0, help=argparse.SUPPRESS)  # seconds between checks of the runs
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}.")
    try:  # checked before any training
        args.windows = [parse_window(text) for text in args.selection_windows] if args.selection_windows else None
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if not args.summarize_only:
        run_grid(args)
    return write_summary(args)


if __name__ == "__main__":
    main()
