"""Figure 4 outside Reacher: Maze Navigation and Meta-World door/drawer at the budgets this project can carry.

One grid on the package's Ray runner (:mod:`sb3_qmp.grid`), in the order that makes an early look compare
methods: seed 0 of every (task set, method), then seed 1, then seed 2. Every run is the package's zoo
command with the packaged YAML entry (the authors' schedule); only the budget changes:

* ``MazeNavigation-v0``: QMP and Separated, 4M env steps (1/3 of the authors' 12M);
* ``MetaWorldDoorDrawer-v0``: QMP, Separated and Fully-Shared, 2M env steps (1/5 of the authors' 10M);
* ``--with-dnc``: DnC (regularisation only) on both, same budgets (after the others).

After every finished run, each task set's summary, tables and figures are rewritten by
``paper_comparison.py --summarize-only`` into ``--results``/``paper_maze`` and ``paper_metaworld`` (Maze also
gets ``maze_sharing.py``'s comparison of QMP's selection with the tasks' routes); every
finished run's record and evaluation history is archived in ``--results``/``paper_campaign_runs`` (commit
it: on a fresh machine the same command counts those runs as finished). Re-running the command resumes
every unfinished run from its newest checkpoint::

    python benchmarks/paper_campaign.py --logs ../campaign_logs --jobs 1

``--task-sets MetaWorldDoorDrawer-v0 MazeNavigation-v0`` starts Meta-World's runs before Maze's within each
seed (or, naming one task set, runs only that one).

To the authors' full budgets on a cluster (every node sees the log folder at the same path)::

    python benchmarks/paper_campaign.py --logs /shared/qmp --seeds 0 1 2 3 4 --full-budget --with-dnc --address auto
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sb3_qmp.grid import RunOptions, RunSpec, run_grid

HERE = Path(__file__).resolve().parent
# (methods, this project's budget, the authors' budget, per-task figure options)
CAMPAIGN: dict[str, dict[str, Any]] = {
    "MazeNavigation-v0": {"algos": ["qmp", "separated"], "n": 4_000_000, "full": 12_000_000, "out": "paper_maze"},
    "MetaWorldDoorDrawer-v0": {
        "algos": ["qmp", "separated", "shared"],
        "n": 2_000_000,
        "full": 10_000_000,
        "out": "paper_metaworld",
    },
}
LATER = ["dnc_reg"]


def campaign_specs(
    seeds: list[int], with_dnc: bool, full_budget: bool, task_sets: Sequence[str] | None = None
) -> list[RunSpec]:
    """The runs: seed 0 of every task set and method first, then the next seed; DnC-reg after all others.

    :param task_sets: the task sets to run, in the order their runs start within each seed (default: all of
        :data:`CAMPAIGN`, Maze first). The order only decides which runs finish first, not what they train.
    """
    task_sets = list(CAMPAIGN) if task_sets is None else list(task_sets)
    unknown = sorted(set(task_sets) - set(CAMPAIGN))
    if unknown or len(set(task_sets)) != len(task_sets) or not task_sets:
        raise ValueError(f"task_sets must be distinct names among {list(CAMPAIGN)}, got {task_sets}")
    specs = []
    for extra in [False, True] if with_dnc else [False]:
        for seed in seeds:
            for env in task_sets:
                plan = CAMPAIGN[env]
                for algo in LATER if extra else plan["algos"]:
                    specs.append(RunSpec(algo, env, seed, plan["full" if full_budget else "n"]))
    return specs


def _script(name: str) -> Any:
    """The module of the benchmark script ``benchmarks/<name>.py``."""
    spec = importlib.util.spec_from_file_location(f"_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summarize(args: argparse.Namespace, specs: list[RunSpec], env: str) -> None:
    """Rewrite the task set's summary, tables and figures from its finished runs (logs or archive)."""
    env_specs = [spec for spec in specs if spec.env == env]
    algos = list(dict.fromkeys(spec.algo for spec in env_specs))
    argv = ["--env", env, "--algos", *algos, "--seeds", *map(str, args.seeds), "-n", str(env_specs[0].n_timesteps)]
    argv += ["--logs", str(args.logs), "--archive", str(args.results / "paper_campaign_runs")]
    out = args.results / CAMPAIGN[env]["out"]
    argv += ["--out", str(out), "--summarize-only"]
    n, full = env_specs[0].n_timesteps, CAMPAIGN[env]["full"]
    share = "the authors' budget" if n >= full else f"{n / full:.2f} of the authors' {full / 1e6:g}M"
    argv += ["--title-note", f"{n / 1e6:g}M env steps per run = {share}"]
    try:
        _script("paper_comparison").main(argv)
    except SystemExit as error:  # no finished run of this task set yet
        print(f"{env}: no summary yet ({error})", flush=True)
        return
    if env == "MazeNavigation-v0" and "qmp" in algos:  # does QMP's selection follow the maze's routes?
        try:
            _script("maze_sharing").main(["--summary", str(out / "summary.json"), "--out", str(out)])
        except SystemExit as error:  # no finished QMP run yet
            print(f"{env}: no route analysis yet ({error})", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=Path, required=True, help="log folder of the campaign (outside the worktree)")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="where summaries and the archive go")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--with-dnc", action="store_true", help="also DnC (regularisation only), after the others")
    parser.add_argument("--full-budget", action="store_true", help="the authors' budgets (12M Maze, 10M Meta-World)")
    parser.add_argument(
        "--task-sets",
        nargs="+",
        choices=list(CAMPAIGN),
        default=list(CAMPAIGN),
        help="task sets to run, in the order their runs start within each seed (default: both, Maze first)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (CPUs of the local Ray instance)")
    parser.add_argument("--address", default=None, help="a running Ray cluster instead")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0)
    parser.add_argument("--summarize-only", action="store_true", help="rewrite the summaries, train nothing")
    parser.add_argument("--status-every", type=float, default=600.0)
    args = parser.parse_args(argv)
    if len(set(args.task_sets)) != len(args.task_sets):
        parser.error(f"--task-sets names a task set twice: {args.task_sets}")
    specs = campaign_specs(args.seeds, args.with_dnc, args.full_budget, args.task_sets)
    if not args.summarize_only:
        run_grid(
            specs,
            args.logs,
            RunOptions(checkpoint_minutes=args.checkpoint_minutes),
            address=args.address,
            num_cpus=None if args.address else args.jobs,
            status_every=args.status_every,
            on_finished=lambda result: summarize(args, specs, next(s.env for s in specs if s.name == result["name"])),
            archive=args.results / "paper_campaign_runs",
        )
    for env in dict.fromkeys(spec.env for spec in specs):
        summarize(args, specs, env)


if __name__ == "__main__":
    main()
