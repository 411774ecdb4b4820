"""``python -m sb3_qmp.grid``: run a grid of zoo runs on Ray (locally or on a cluster), resumably.

Examples::

    # 2 methods x 3 seeds on this machine (a local Ray instance with all its cores):
    python -m sb3_qmp.grid --algos qmp separated --envs MazeNavigation-v0 --seeds 0 1 2 -n 4000000 \\
        --logs logs/maze --out results/maze
    # the same grid on a running Ray cluster (every node sees logs/ at the same path):
    python -m sb3_qmp.grid ... --address auto
    # where the runs stand (no Ray needed):
    python -m sb3_qmp.grid ... --status

Re-running the same command skips finished runs and continues the others from their newest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sb3_qmp.common.files import atomic_write_json, atomic_write_text
from sb3_qmp.grid.engine import progress_rows, progress_text, run_grid
from sb3_qmp.grid.runs import RunOptions, RunSpec
from sb3_qmp.grid.summary import summarize_grid, summary_markdown


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sb3_qmp.grid", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    grid = parser.add_argument_group("the grid")
    grid.add_argument("--algos", nargs="+", required=True, help="registry names (qmp, separated, shared, dnc_reg, ...)")
    grid.add_argument("--envs", nargs="+", required=True, help="env ids with a packaged YAML entry")
    grid.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    grid.add_argument(
        "-n",
        "--n-timesteps",
        nargs="+",
        required=True,
        metavar="[ENV=]N",
        help="env steps per run (all tasks): N for every env, ENV=N for one (e.g. -n 4000000 MetaWorldDoorDrawer-v0=2000000)",
    )
    grid.add_argument("--params", nargs="+", default=(), help="extra zoo -params for every run (key:value)")
    grid.add_argument("--logs", type=Path, required=True, help="log folder of the grid (shared by all nodes)")
    ray = parser.add_argument_group("Ray")
    ray.add_argument("--address", default=None, help="a running Ray cluster ('auto', 'ray://host:10001'); default: local")
    ray.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    ray.add_argument("--cpus-per-run", type=float, default=1.0)
    ray.add_argument("--gpus-per-run", type=float, default=0.0, help="> 0 trains with --device cuda")
    ray.add_argument("--max-retries", type=int, default=3, help="Ray's retries of a run whose worker died")
    run = parser.add_argument_group("each run")
    run.add_argument("--checkpoint-minutes", type=float, default=10.0, help="at most this much work is lost")
    run.add_argument("--checkpoint-steps", type=int, default=None, help=argparse.SUPPRESS)  # tests: by steps too
    run.add_argument("--nice", type=int, default=10, help="niceness of the training processes (0: none)")
    run.add_argument("--threads", type=int, default=1, help="torch threads per run")
    run.add_argument("--attempts", type=int, default=3, help="resumes of a run that exits with an error")
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, default=None, help="write grid_summary.json / .md here")
    out.add_argument(
        "--archive", type=Path, default=None, help="keep each finished run's record and evaluations here (for git)"
    )
    out.add_argument("--reference", default="qmp", help="method compared with each other one (P(improvement))")
    out.add_argument("--status", action="store_true", help="print where the runs stand and exit (no training)")
    out.add_argument("--summarize-only", action="store_true", help="summarise the finished runs, no training")
    out.add_argument("--status-every", type=float, default=300.0, help="seconds between printed tables (not on a tty)")
    out.add_argument("--poll", type=float, default=5.0, help=argparse.SUPPRESS)
    return parser


def budgets(items: list[str], envs: list[str]) -> dict[str, int]:
    """Env steps per env from ``-n`` items ``N`` (every env) and ``ENV=N`` (one env)."""
    result: dict[str, int] = {}
    for item in items:
        env, _, value = item.rpartition("=")
        if env and env not in envs:
            raise SystemExit(f"-n {item}: {env!r} is not one of --envs {envs}.")
        if not value.isdigit() or int(value) < 1:
            raise SystemExit(f"-n {item}: the env steps must be a positive integer.")
        for key in [env] if env else envs:
            if not env and key in result:
                continue  # ENV=N given before N keeps its own value
            result[key] = int(value)
    missing = [env for env in envs if env not in result]
    if missing:
        raise SystemExit(f"-n gives no budget for {missing}: add N (every env) or ENV=N.")
    return result


def grid_specs(args: argparse.Namespace) -> list[RunSpec]:
    """The runs, seed 0 of every env and method first (an early look compares methods, not seeds)."""
    n = budgets(args.n_timesteps, args.envs)
    return [
        RunSpec(algo, env, seed, n[env], tuple(args.params)) for seed in args.seeds for env in args.envs for algo in args.algos
    ]


def write_summary(specs: list[RunSpec], args: argparse.Namespace) -> dict[str, Any]:
    summary = summarize_grid(specs, args.logs, args.reference, args.archive)
    text = summary_markdown(summary)
    if args.out is not None:
        atomic_write_json(args.out / "grid_summary.json", {"command": " ".join(sys.argv), **summary})
        atomic_write_text(args.out / "grid_summary.md", text)
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    for name in ("attempts", "threads"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    from sb3_qmp.registry import ALGO_PATHS

    unknown = [algo for algo in args.algos if algo not in ALGO_PATHS]
    if unknown:
        raise SystemExit(f"Unknown algorithms {unknown}; sb3-qmp provides {sorted(ALGO_PATHS)}.")
    specs = grid_specs(args)
    if args.status:
        print(progress_text(progress_rows(specs, args.logs, archive=args.archive)))
        return {}
    if not args.summarize_only:
        options = RunOptions(
            checkpoint_minutes=args.checkpoint_minutes,
            checkpoint_steps=args.checkpoint_steps,
            nice=args.nice,
            threads=args.threads,
            attempts=args.attempts,
        )
        run_grid(
            specs,
            args.logs,
            options,
            address=args.address,
            num_cpus=args.num_cpus,
            cpus_per_run=args.cpus_per_run,
            gpus_per_run=args.gpus_per_run,
            max_retries=args.max_retries,
            poll=args.poll,
            status_every=args.status_every,
            on_finished=(lambda _: write_summary(specs, args)) if args.out is not None else None,
            archive=args.archive,
        )
    summary = write_summary(specs, args)
    print(summary_markdown(summary))
    return json.loads(json.dumps(summary))


if __name__ == "__main__":
    main()
