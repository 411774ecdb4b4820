"""Sharing study (issue 14): which Q-switch should be the package default?

Runs every configuration (Separated, the paper's switch, the authors' switch, commitment, own-policy
probability, the adaptive switch) on every point-mass task set (``MultiGoalPoint-v0``,
``DetourPoint-v0``, ``ManyGoalPoint-v0``, ``ConflictPoint-v0``), several seeds each, with the same env
steps for every configuration of a task set. One *cell* is one (task set, configuration, seed) run;
it records:

* the final success of each task's own policy, deterministic (``--eval-episodes`` per task, both the
  strict ``is_success`` and the any-step ``success_any_step`` metric), and of the deterministic mixture
  (the authors' evaluation) for the configurations that have one;
* the mixture's training-time success per task (the last 100 collection episodes, both metrics);
* a learning curve of the own policies (``--solve-episodes`` per task every ``--eval-every`` env steps per
  task) and from it the *steps to solve* of every task: the first evaluated env step (all tasks together)
  at which the own policy succeeded on at least ``--solve-threshold`` of its episodes;
* how the mixture shared: the selection matrix, the fraction of each task's collection steps acted by
  another policy, the mean length of a shared behaviour and of a commitment window.

Every finished cell is written at once to ``<out>/cells/<env>/<config>/seed_<seed>.json``; a rerun skips
the cells that exist (resumable), after checking they were run with the same settings. The summary
(mean and 95% bootstrap interval over seeds) goes to ``<out>/sharing_study.json`` and
``<out>/sharing_study.md``, its figure to ``<out>/sharing_study.png`` (``sharing_plot.py``). ``--plan``
prints the cells still to run and, from the finished cells' times, an estimate of the wall time;
``--summary-only`` rebuilds the summary from the cells on disk.

The full grid, two runs at a time, niced, one torch thread each::

    python benchmarks/sharing_study.py --jobs 2 --out benchmarks/results/sharing_study
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sb3_qmp.common.files import atomic_write_json, atomic_write_text
from sb3_qmp.grid.statistics import aggregate, compare, compare_markdown

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sharing_plot import focus_tasks, plot_sharing_study

RESULTS_NAME = "sharing_study"


@dataclass(frozen=True)
class StudyConfig:
    """One arm of the study.

    :param name: identifier used on the command line, in file names and in the results.
    :param algo: ``"separated"`` (MultiTaskSAC, each task collects with its own policy) or ``"qmp"``.
    :param collector_kwargs: keyword arguments of the Q-switch collector (QMP only).
    :param label: description for the tables.
    """

    name: str
    algo: str
    collector_kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""


# The variants (commitment, own_prob, adaptive) are options of the authors' switch, the package default.
AUTHORS = {"score": "mean", "critic_reduce": "q1"}
CONFIGS: dict[str, StudyConfig] = {
    c.name: c
    for c in (
        StudyConfig("separated", "separated", {}, "Separated"),
        StudyConfig("qmp_paper", "qmp", {"score": "sample", "critic_reduce": "min"}, "paper's switch (sample, min)"),
        StudyConfig("qmp_authors", "qmp", dict(AUTHORS), "authors' switch (mean, Q1)"),
        StudyConfig("qmp_k5", "qmp", {**AUTHORS, "commit_steps": 5}, "commit_steps=5"),
        StudyConfig("qmp_k10", "qmp", {**AUTHORS, "commit_steps": 10}, "commit_steps=10"),
        StudyConfig("qmp_own0.3", "qmp", {**AUTHORS, "own_prob": 0.3}, "own_prob=0.3"),
        StudyConfig("qmp_adaptive", "qmp", {**AUTHORS, "adaptive": True}, "adaptive (kappa=1, value, keep)"),
        # Not in the default grid: other settings of the adaptive switch.
        StudyConfig(
            "qmp_adaptive_adv",
            "qmp",
            {**AUTHORS, "adaptive": True, "uncertainty": "advantage"},
            "adaptive (kappa=1, advantage, keep)",
        ),
        StudyConfig(
            "qmp_adaptive_nokeep",
            "qmp",
            {**AUTHORS, "adaptive": True, "adaptive_keep": False},
            "adaptive (kappa=1, value, no keep)",
        ),
    )
}
DEFAULT_CONFIGS = [name for name in CONFIGS if name not in ("qmp_adaptive_adv", "qmp_adaptive_nokeep")]

# Env steps per task of every task set (the same for every configuration). MultiGoalPoint: the budget of the
# commitment study (docs/commitment.md), where the sparse task is at the edge of being learnt; the others are
# first guesses at the same point (the detour is harder; the conflict set has dense tasks only, learnt by
# plain SAC in about 3k steps, so the cost of sharing shows while they are being learnt).
STEPS_PER_TASK: dict[str, int] = {
    "MultiGoalPoint-v0": 4000,
    "DetourPoint-v0": 6000,
    "ManyGoalPoint-v0": 4000,
    "ConflictPoint-v0": 3000,
}
ENV_IDS = list(STEPS_PER_TASK)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the study."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=ENV_IDS, help=f"task sets; known: {', '.join(ENV_IDS)}")
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help=f"configs; known: {', '.join(CONFIGS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)), help="seeds")
    parser.add_argument(
        "--steps-per-task",
        nargs="+",
        default=[],
        metavar="[ENV=]N",
        help="env steps per task: N for every task set, or ENV=N for one (default: STEPS_PER_TASK in the script)",
    )
    parser.add_argument("--out", default=f"benchmarks/results/{RESULTS_NAME}", help="output folder")
    parser.add_argument("--jobs", type=int, default=1, help="cells run in parallel (CPUs of the local Ray instance)")
    parser.add_argument("--address", default=None, help="a running Ray cluster ('auto', 'ray://host:10001') instead")
    parser.add_argument("--nice", type=int, default=10, help="niceness added to every run's process (0: none)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--learning-starts-per-task", type=int, default=250, help="uniform-random steps per task")
    parser.add_argument("--batch-size", type=int, default=256, help="minibatch per task and gradient step")
    parser.add_argument("--net-arch", type=int, nargs="+", default=[64, 64], help="hidden layers of actors and critics")
    parser.add_argument("--eval-episodes", type=int, default=20, help="final deterministic episodes per task")
    parser.add_argument("--eval-every", type=int, default=250, help="env steps per task between learning-curve points")
    parser.add_argument("--solve-episodes", type=int, default=5, help="episodes per task at every learning-curve point")
    parser.add_argument("--solve-threshold", type=float, default=0.8, help="own-policy success that counts as solved")
    parser.add_argument("--plan", action="store_true", help="print the cells still to run and a time estimate; run nothing")
    parser.add_argument("--summary-only", action="store_true", help="rebuild the summary from the cells on disk")
    args = parser.parse_args(argv)
    args.envs = [e for item in args.envs for e in item.split(",") if e]
    args.configs = [c for item in args.configs for c in item.split(",") if c]
    unknown_envs = [e for e in args.envs if e not in STEPS_PER_TASK]
    if unknown_envs:
        parser.error(f"unknown task set(s) {unknown_envs}; known: {ENV_IDS}")
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {unknown}; known: {list(CONFIGS)}")
    steps = dict(STEPS_PER_TASK)
    for item in args.steps_per_task:
        env_id, _, value = item.rpartition("=")
        if env_id and env_id not in steps:
            parser.error(f"--steps-per-task {item}: unknown task set {env_id!r}")
        if not value.isdigit() or int(value) < 1:
            parser.error(f"--steps-per-task {item}: the steps must be a positive integer")
        for key in [env_id] if env_id else list(steps):
            steps[key] = int(value)
    args.steps = steps
    positive = ("jobs", "threads", "batch_size", "eval_episodes", "eval_every", "solve_episodes")
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.learning_starts_per_task < 0 or not 0.0 < args.solve_threshold <= 1.0:
        parser.error("--learning-starts-per-task must be >= 0 and --solve-threshold in (0, 1]")
    return args


def num_tasks_and_sparse(env_id: str) -> tuple[int, list[int]]:
    """Number of tasks and the sparse tasks of a point task set."""
    import gymnasium as gym

    import sb3_qmp  # noqa: F401  (registers the env ids)

    env = gym.make(env_id)
    base = env.unwrapped.env  # type: ignore[attr-defined]  # the MultiTaskWrapper's base env
    env.close()
    return int(base.num_tasks), [int(t) for t in np.flatnonzero(base.sparse)]


def cell_settings(args: argparse.Namespace, env_id: str, config: str) -> dict[str, Any]:
    """Everything a cell's result depends on besides its seed (checked when a run resumes)."""
    num_tasks, _ = num_tasks_and_sparse(env_id)
    return {
        "env": env_id,
        "config": config,
        "algo": CONFIGS[config].algo,
        "collector_kwargs": CONFIGS[config].collector_kwargs,
        "total_steps": args.steps[env_id] * num_tasks,
        "learning_starts": args.learning_starts_per_task * num_tasks,
        "batch_size": args.batch_size,
        "net_arch": list(args.net_arch),
        "train_freq": 1,
        "gradient_steps": 1,
        "eval_episodes": args.eval_episodes,
        "eval_every": args.eval_every * num_tasks,
        "solve_episodes": args.solve_episodes,
        "solve_threshold": args.solve_threshold,
    }


def cell_path(out: str, env_id: str, config: str, seed: int) -> str:
    return os.path.join(out, "cells", env_id, config, f"seed_{seed}.json")


def _floats(values: Any) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=np.float64)]


def run_cell(settings: dict[str, Any], seed: int, out: str) -> dict[str, Any]:
    """Train one configuration on one task set with one seed; write and return its record."""
    from stable_baselines3.common.callbacks import BaseCallback

    from sb3_qmp import QMP, MultiTaskSAC, make_multitask_vec_env
    from sb3_qmp.common.evaluation import evaluate_per_task

    env_id = settings["env"]
    num_tasks, sparse = num_tasks_and_sparse(env_id)
    env = make_multitask_vec_env(env_id, n_envs_per_task=1, seed=seed)
    common: dict[str, Any] = dict(
        learning_starts=settings["learning_starts"],
        batch_size=settings["batch_size"],
        train_freq=1,
        gradient_steps=1,
        policy_kwargs=dict(net_arch=list(settings["net_arch"])),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    if settings["algo"] == "separated":
        model: Any = MultiTaskSAC(env, **common)
    else:
        model = QMP(env, collector_kwargs=dict(settings["collector_kwargs"]), **common)

    curve_steps: list[int] = []
    curve_success: list[list[float]] = []

    class LearningCurve(BaseCallback):
        """Own-policy success of every task every ``eval_every`` env steps."""

        def __init__(self) -> None:
            super().__init__()
            self.next_eval = settings["eval_every"]

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_eval:
                self.next_eval += settings["eval_every"]
                eval_seed = 20_000 + 1_000 * seed + len(curve_steps)
                result = evaluate_per_task(model, env_id, settings["solve_episodes"], seed=eval_seed, eval_modes=("own",))
                curve_steps.append(int(self.num_timesteps))
                curve_success.append([float(x) for x in result["success"]])
            return True

    start, cpu_start = time.perf_counter(), time.process_time()
    model.learn(settings["total_steps"], callback=LearningCurve())
    train_seconds = time.perf_counter() - start
    final = evaluate_per_task(model, env_id, settings["eval_episodes"], seed=10_000 + seed)
    solved = np.asarray(curve_success) >= settings["solve_threshold"] if curve_success else np.zeros((0, num_tasks), bool)
    steps_to_solve = [int(curve_steps[int(np.argmax(solved[:, t]))]) if solved[:, t].any() else None for t in range(num_tasks)]
    selection = model.selection_matrix()
    collector = model.collector
    share_fraction = collector.share_fraction()  # of each task's collection steps after learning_starts
    record = {
        "env": env_id,
        "config": settings["config"],
        "seed": seed,
        "settings": settings,
        "num_tasks": num_tasks,
        "sparse_tasks": sparse,
        "eval_success": _floats(final["success"]),
        "eval_success_any_step": _floats(final["success_any_step"]),
        "eval_return": _floats(final["return"]),
        "mixture_eval_success": _floats(final["mixture_success"]) if "mixture_success" in final else None,
        "mixture_eval_success_any_step": (
            _floats(final["mixture_success_any_step"]) if "mixture_success_any_step" in final else None
        ),
        "train_success": _floats([np.mean(b) if len(b) else np.nan for b in model.task_success_buffer]),
        "train_success_any_step": _floats([np.mean(b) if len(b) else np.nan for b in model.task_success_any_step_buffer]),
        "curve_steps": curve_steps,
        "curve_success": curve_success,
        "steps_to_solve": steps_to_solve,
        "selection_matrix": selection.round(4).tolist(),
        "share_fraction": _floats(share_fraction),
        "mean_shared_length": _floats(collector.mean_shared_length()),
        "mean_commitment": _floats(collector.mean_commitment()),
        "train_seconds": round(train_seconds, 2),
        "cell_seconds": round(time.perf_counter() - start, 2),
        # CPU time of the run (one thread): the wall time it needs on a core of its own.
        "cpu_seconds": round(time.process_time() - cpu_start, 2),
    }
    env.close()
    path = cell_path(out, env_id, settings["config"], seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_json(path, record)  # a cell file exists only once complete
    return record


def load_cell(path: str, settings: dict[str, Any]) -> dict[str, Any] | None:
    """A finished cell's record, or ``None`` if not run yet; raises if it was run with other settings."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    if record.get("settings") != settings:
        changed = sorted(k for k in settings if record.get("settings", {}).get(k) != settings[k])
        raise ValueError(
            f"{path} was run with other settings ({', '.join(changed)} differ). Use another --out, or delete the "
            "cell files of the old settings, to rerun."
        )
    return record


# -- summary ---------------------------------------------------------------------------------------


def bootstrap_ci(values: Sequence[float | None], resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Mean, IQM and the 95% percentile-bootstrap interval of the mean over seeds (``None``/nan values dropped),
    with the package's rliable estimators (:func:`sb3_qmp.grid.statistics.aggregate`, one task)."""
    arr = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"mean": None, "low": None, "high": None, "iqm": None, "n": 0}
    stats = aggregate(arr[:, None], resamples, seed)
    low, high = stats["mean_ci"] or (stats["mean"], stats["mean"])
    return {"mean": stats["mean"], "low": low, "high": high, "iqm": stats["iqm"], "n": int(arr.size)}


def summarize_group(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary of one (task set, configuration) over its seeds."""
    first = records[0]
    num_tasks, sparse = first["num_tasks"], first["sparse_tasks"]
    budget = first["settings"]["total_steps"]

    def per_task(key: str) -> list[dict[str, Any]]:
        return [bootstrap_ci([r[key][t] if r[key] is not None else None for r in records]) for t in range(num_tasks)]

    def over_tasks(key: str, tasks: Sequence[int]) -> dict[str, Any]:
        values = []
        for r in records:
            row = [r[key][t] for t in tasks] if r[key] is not None else []
            row = [v for v in row if v is not None]
            values.append(float(np.mean(row)) if row else None)
        return bootstrap_ci(values)

    dense = [t for t in range(num_tasks) if t not in sparse]
    solve = []
    for t in range(num_tasks):
        steps = [r["steps_to_solve"][t] for r in records]
        solve.append(
            {
                "solved": sum(s is not None for s in steps),
                "seeds": len(steps),
                # Unsolved seeds count as the whole budget: a lower bound on the mean steps to solve.
                "censored_mean": bootstrap_ci([budget if s is None else s for s in steps]),
            }
        )
    return {
        "env": first["env"],
        "config": first["config"],
        "label": CONFIGS[first["config"]].label if first["config"] in CONFIGS else first["config"],
        "collector_kwargs": first["settings"]["collector_kwargs"],
        "seeds": [r["seed"] for r in records],
        "budget": budget,
        "sparse_tasks": sparse,
        "eval_success": per_task("eval_success"),
        "eval_success_any_step": per_task("eval_success_any_step"),
        "mixture_eval_success": per_task("mixture_eval_success"),
        "train_success": per_task("train_success"),
        "train_success_any_step": per_task("train_success_any_step"),
        "share_fraction": per_task("share_fraction"),
        "mean_shared_length": per_task("mean_shared_length"),
        "steps_to_solve": solve,
        "all_tasks": {
            "eval_success": over_tasks("eval_success", range(num_tasks)),
            "eval_success_any_step": over_tasks("eval_success_any_step", range(num_tasks)),
            "train_success": over_tasks("train_success", range(num_tasks)),
            "share_fraction": over_tasks("share_fraction", range(num_tasks)),
            "mean_shared_length": over_tasks("mean_shared_length", range(num_tasks)),
        },
        "dense_tasks": {"eval_success": over_tasks("eval_success", dense)},
        # The tasks the task set is judged on (its sparse tasks; all tasks on the conflict set): the figure's bars.
        "focus_tasks": {"eval_success": over_tasks("eval_success", focus_tasks(num_tasks, sparse))},
        "cell_seconds_mean": float(np.mean([r["cell_seconds"] for r in records])),
        # CPU time is the configuration's cost; wall time also counts whatever else the machine was running
        "cpu_seconds_mean": _mean_or_none([r.get("cpu_seconds") for r in records]),
    }


def _mean_or_none(values: list[float | None]) -> float | None:
    """Mean of the known values (cells written before a field existed lack it); ``None`` if none is known."""
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


# The decision rule (issue 14): the default must not be worse than the paper's switch on any task set beyond
# the interval, and among those that are not, the one that solves the sparse tasks most often wins.
REFERENCE = "qmp_paper"
CURRENT_DEFAULT = "qmp_authors"  # the package's default switch before the study (mean actions, Q1)
DECISION_SEEDS = 10  # seeds per (task set, configuration) before the decision is final (issue 14)


def paired_difference(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over tasks of the own-policy (strict) success, ``a`` minus ``b``, paired by seed: mean and 95%
    bootstrap interval over the seeds both have."""

    def by_seed(records: list[dict[str, Any]]) -> dict[int, float]:
        return {r["seed"]: float(np.nanmean(np.array(r["eval_success"], dtype=np.float64))) for r in records}

    first, second = by_seed(a), by_seed(b)
    return bootstrap_ci([first[seed] - second[seed] for seed in sorted(first.keys() & second.keys())])


def sparse_solves(records: list[dict[str, Any]]) -> tuple[int, int]:
    """(solved, attempts) over the sparse tasks of every run: solved = final own-policy success (strict) at
    least the solve threshold."""
    solved = attempts = 0
    for r in records:
        for t in r["sparse_tasks"]:
            attempts += 1
            value = r["eval_success"][t]
            solved += int(value is not None and value >= r["settings"]["solve_threshold"])
    return solved, attempts


def decide(records: list[dict[str, Any]], envs: Sequence[str], configs: Sequence[str], seeds: int) -> dict[str, Any]:
    """Apply the decision rule to the finished cells.

    A QMP configuration is *admissible* if it has cells on every task set and, on every task set, the 95%
    interval of its paired difference to the paper's switch (own-policy success, mean over tasks) does not lie
    wholly below zero. The chosen default is the admissible configuration with the most sparse-task solves
    over all task sets (ties: the current default first, then the order of ``configs``). The decision is
    *final* only when every configuration has ``seeds`` seeds on every task set; otherwise *provisional*.

    :param records: the finished cells.
    :param envs: the task sets of the grid.
    :param configs: the configurations of the grid (the reference and the candidates among them).
    :param seeds: seeds per (task set, configuration) for a final decision.
    """
    candidates = [c for c in configs if CONFIGS[c].algo == "qmp"]
    if REFERENCE not in candidates:
        return {"status": "no decision", "reason": f"the reference {REFERENCE!r} is not in the grid"}
    group = {(e, c): [r for r in records if r["env"] == e and r["config"] == c] for e in envs for c in candidates}
    complete = all(len(group[e, c]) >= seeds for e in envs for c in candidates)
    rows: list[dict[str, Any]] = []
    for config in candidates:
        worse_on, differences = [], {}
        for env_id in envs:
            if config == REFERENCE:  # zero by definition, where it has cells
                diff = bootstrap_ci([0.0] * len(group[env_id, config]))
            else:
                diff = paired_difference(group[env_id, config], group[env_id, REFERENCE])
            differences[env_id] = diff
            if diff["high"] is not None and diff["high"] < 0:
                worse_on.append(env_id)
        solved, attempts = sparse_solves([r for e in envs for r in group[e, config]])
        rows.append(
            {
                "config": config,
                "label": CONFIGS[config].label,
                "difference_to_reference": differences,
                "worse_on": worse_on,
                "admissible": not worse_on and all(d["n"] > 0 for d in differences.values()),
                "sparse_solved": solved,
                "sparse_attempts": attempts,
                "sparse_solve_rate": solved / attempts if attempts else None,
            }
        )
    order = {c: i for i, c in enumerate(dict.fromkeys([CURRENT_DEFAULT, *candidates]))}  # ties: current default first
    admissible = [r for r in rows if r["admissible"]]
    best = max(admissible, key=lambda r: (r["sparse_solve_rate"] or 0.0, -order[r["config"]]), default=None)
    reference = next(r for r in rows if r["config"] == REFERENCE)
    return {
        "status": "final" if complete else "provisional",
        "seeds_required": seeds,
        "rule": (
            "admissible: on no task set is the 95% interval of the paired (by seed) difference to the paper's switch "
            "in own-policy success (mean over tasks) wholly below 0; chosen: the admissible configuration with the "
            "most sparse-task solves (final own-policy success >= the solve threshold), ties to the current default"
        ),
        "chosen": best["config"] if best else None,
        "beats_reference_on_sparse": bool(
            best and (best["sparse_solve_rate"] or 0.0) > (reference["sparse_solve_rate"] or 0.0)
        ),
        "rows": rows,
    }


def decision_markdown(decision: dict[str, Any]) -> str:
    """The decision as a table (one row per QMP configuration) and a sentence."""
    if "rows" not in decision:
        return f"## Decision\n\n{decision['reason']}\n"
    envs = list(decision["rows"][0]["difference_to_reference"])
    header = ["config", *[f"vs paper's switch, {e}" for e in envs], "sparse tasks solved", "admissible"]
    lines = ["## Decision", "", f"Rule: {decision['rule']}.", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in decision["rows"]:
        if row["config"] == REFERENCE:
            cells = [row["label"], *["(reference)" if row["difference_to_reference"][e]["n"] else "n/a" for e in envs]]
        else:
            cells = [row["label"], *[_ci(row["difference_to_reference"][e]) for e in envs]]
        cells += [f"{row['sparse_solved']}/{row['sparse_attempts']}", "yes" if row["admissible"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    status = f"**{decision['status'].capitalize()}** ({decision['seeds_required']} seeds per cell for a final decision)"
    chosen = decision["chosen"]
    if chosen is None:
        verdict = "no configuration is admissible yet (each needs cells on every task set)"
    else:
        verdict = f"chosen: **{CONFIGS[chosen].label}**"
        if not decision["beats_reference_on_sparse"]:
            verdict += ", which does not solve the sparse tasks more often than the paper's switch"
    lines += ["", f"{status}: {verdict}.", ""]
    return "\n".join(lines)


def _ci(stat: dict[str, Any], digits: int = 2) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean']:.{digits}f} [{stat['low']:.{digits}f}, {stat['high']:.{digits}f}]"


def _steps(solve: dict[str, Any]) -> str:
    stat = solve["censored_mean"]
    if stat["mean"] is None:
        return "n/a"
    bound = "≥ " if solve["solved"] < solve["seeds"] else ""
    mean, low, high = (stat[key] / 1000 for key in ("mean", "low", "high"))
    return f"{solve['solved']}/{solve['seeds']}, {bound}{mean:.1f}k [{low:.1f}k, {high:.1f}k]"


def markdown(summary: list[dict[str, Any]]) -> str:
    """One section per task set: the headline table (sparse tasks, or all tasks where none is sparse) and
    the per-task own-policy success."""
    lines: list[str] = []
    for env_id in dict.fromkeys(s["env"] for s in summary):
        rows = [s for s in summary if s["env"] == env_id]
        sparse = rows[0]["sparse_tasks"]
        num_tasks = len(rows[0]["eval_success"])
        seeds = max(len(s["seeds"]) for s in rows)
        lines += [f"## {env_id}", ""]
        lines.append(
            f"{rows[0]['budget']:,} env steps per run ({num_tasks} tasks), up to {seeds} seeds; mean [95% bootstrap "
            "interval] over seeds. Own: each task's own policy, deterministic (strict / any-step success). "
            "Train: the mixture's success over the last 100 collection episodes. Solve: seeds solved, mean steps to "
            "solve (unsolved seeds count as the budget, hence ≥)."
        )
        lines.append("")
        header = ["config", "own, all tasks", "own, dense tasks"]
        focus = sparse if sparse else []
        for t in focus:
            header += [f"own task {t} (sparse)", f"any-step task {t}", f"train task {t}", f"solve task {t}"]
        if not focus:
            header += ["train, all tasks", "solve, mean over tasks"]
        header += ["shared steps", "shared length", "CPU s/cell"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for s in rows:
            cells = [s["label"], _ci(s["all_tasks"]["eval_success"]), _ci(s["dense_tasks"]["eval_success"])]
            for t in focus:
                cells += [
                    _ci(s["eval_success"][t]),
                    _ci(s["eval_success_any_step"][t]),
                    _ci(s["train_success"][t]),
                    _steps(s["steps_to_solve"][t]),
                ]
            if not focus:
                solved = [x["censored_mean"]["mean"] for x in s["steps_to_solve"] if x["censored_mean"]["mean"] is not None]
                cells += [_ci(s["all_tasks"]["train_success"]), f"{np.mean(solved) / 1000:.1f}k" if solved else "n/a"]
            cells += [
                _ci(s["all_tasks"]["share_fraction"]),
                _ci(s["all_tasks"]["mean_shared_length"], digits=1),
                "n/a" if s["cpu_seconds_mean"] is None else f"{s['cpu_seconds_mean']:.0f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Own-policy success per task (strict), {env_id}:", ""]
        header = ["config", *[f"{t}{'*' if t in sparse else ''}" for t in range(num_tasks)]]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for s in rows:
            cells = [s["label"], *[_ci(x) for x in s["eval_success"]]]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n" if lines else "(no finished cells)\n"


def study_aggregates(records: list[dict[str, Any]], envs: Sequence[str], configs: Sequence[str]) -> dict[str, Any]:
    """Per task set: IQM and mean of the final own-policy success over seeds and tasks with stratified-bootstrap
    intervals, and the probability that the package default (the authors' switch) improves on each other
    configuration (rliable's estimators, :mod:`sb3_qmp.grid.statistics`)."""
    result: dict[str, Any] = {}
    for env_id in envs:
        scores = {}
        for config in configs:
            rows = [r["eval_success"] for r in records if r["env"] == env_id and r["config"] == config]
            matrix = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64)
            matrix = matrix[np.isfinite(matrix).all(axis=1)] if matrix.size else matrix
            if len(matrix):
                scores[config] = matrix
        if scores:
            result[env_id] = compare(scores, CURRENT_DEFAULT if CURRENT_DEFAULT in scores else None)
    return result


def aggregates_markdown(result: dict[str, Any]) -> str:
    parts = ["## Aggregates over seeds and tasks (final own-policy success, strict)\n"]
    for env_id, comparison in result.items():
        parts.append(compare_markdown(comparison, env_id))
    return "\n".join(parts)


def write_summary(args: argparse.Namespace, records: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """Write ``sharing_study.{json,md}`` for the finished cells of the requested grid; return the JSON payload."""
    summary = []
    for env_id in args.envs:
        for config in args.configs:
            group = sorted((r for r in records if r["env"] == env_id and r["config"] == config), key=lambda r: r["seed"])
            if group:
                summary.append(summarize_group(group))
    # A summary of a few seeds (``--seeds 0``) must not call itself final: the bar is fixed.
    decision = decide(records, args.envs, args.configs, max(DECISION_SEEDS, len(args.seeds)))
    aggregates = study_aggregates(records, args.envs, args.configs)
    table = markdown(summary) + "\n" + decision_markdown(decision) + "\n" + aggregates_markdown(aggregates)
    payload = {
        "grid": {"envs": args.envs, "configs": args.configs, "seeds": list(args.seeds)},
        "steps_per_task": {env_id: args.steps[env_id] for env_id in args.envs},
        "cells_finished": len(records),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()},
        "command": " ".join(["python", *sys.argv]) if sys.argv else "",
        "wall_seconds_this_invocation": round(wall_s, 1),
        "summary": summary,
        "decision": decision,
        "aggregates": aggregates,
        "table_markdown": table,
    }
    atomic_write_json(os.path.join(args.out, f"{RESULTS_NAME}.json"), payload)
    atomic_write_text(os.path.join(args.out, f"{RESULTS_NAME}.md"), table)
    plot_sharing_study(
        records, summary, args.envs, args.configs, os.path.join(args.out, f"{RESULTS_NAME}.png"), args.solve_threshold
    )
    return payload


def plan(todo: list[tuple[dict[str, Any], int]], records: list[dict[str, Any]], jobs: int) -> str:
    """The cells still to run and the time they need, from the finished cells of each task set: at the wall
    time those cells took, and at their CPU time (a core per job)."""
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for r in records:
        wall.setdefault(r["env"], []).append(r["cell_seconds"])
        if r.get("cpu_seconds") is not None:
            cpu.setdefault(r["env"], []).append(r["cpu_seconds"])
    lines, total_wall, total_cpu, unknown = [], 0.0, 0.0, 0
    for env_id in dict.fromkeys(settings["env"] for settings, _ in todo):
        count = sum(settings["env"] == env_id for settings, _ in todo)
        if env_id not in wall:
            unknown += count
            lines.append(f"{env_id}: {count} cells to run, no finished cell to time")
            continue
        per_wall = float(np.mean(wall[env_id]))
        per_cpu = float(np.mean(cpu.get(env_id, wall[env_id])))
        total_wall += count * per_wall
        total_cpu += count * per_cpu
        lines.append(
            f"{env_id}: {count} cells to run; a finished cell took {per_wall:.0f} s wall, {per_cpu:.0f} s CPU "
            f"({len(wall[env_id])} finished)"
        )
    estimate = (
        f"estimate with --jobs {jobs}: {total_wall / jobs / 3600:.1f} h at the finished cells' wall times, "
        f"{total_cpu / jobs / 3600:.1f} h with a free core per job"
    )
    if unknown:
        estimate += f" (+ {unknown} untimed cells)"
    return "\n".join([*lines, f"{len(todo)} cells to run; {estimate}"])


def run_cells(args: argparse.Namespace, todo: list[tuple[dict[str, Any], int]], records: list[dict[str, Any]]) -> None:
    """Run the cells as Ray tasks (the package's grid engine: ``--jobs`` CPUs of a local instance, or the
    cluster at ``--address``), one CPU each; append each finished cell's record to ``records``."""
    from sb3_qmp.grid.engine import map_script

    calls = [(settings, seed, os.path.abspath(args.out)) for settings, seed in todo]
    done = 0

    def report(index: int, record: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        records.append(record)
        _report(done, len(todo), record)

    try:
        map_script(
            __file__,
            "run_cell",
            calls,
            num_cpus=args.jobs,
            address=args.address,
            nice=args.nice,
            threads=args.threads,
            on_result=report,
        )
    except RuntimeError as error:  # the other cells finished and are kept; the failed ones rerun next time
        raise SystemExit(f"{error}\nRerun the command to retry them.") from None


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the missing cells of the grid and write the summary. Returns the summary payload."""
    args = parse_args(argv)
    settings = {(e, c): cell_settings(args, e, c) for e in args.envs for c in args.configs}
    records, todo = [], []
    for seed in args.seeds:
        for env_id in args.envs:
            for config in args.configs:
                record = load_cell(cell_path(args.out, env_id, config, seed), settings[env_id, config])
                if record is None:
                    todo.append((settings[env_id, config], seed))
                else:
                    records.append(record)
    if args.plan:
        print(plan(todo, records, args.jobs))
        return {}
    start = time.perf_counter()
    if not args.summary_only and todo:
        print(f"{len(records)} cells finished, {len(todo)} to run", flush=True)
        run_cells(args, todo, records)
    payload = write_summary(args, records, time.perf_counter() - start)
    print(payload["table_markdown"])
    print(f"{len(records)} cells; results in {args.out}/{RESULTS_NAME}.{{json,md}} and {args.out}/cells/")
    return payload


def _report(i: int, total: int, record: dict[str, Any]) -> None:
    sparse = record["sparse_tasks"]
    own = [record["eval_success"][t] for t in sparse] if sparse else record["eval_success"]
    print(
        f"[{i}/{total}] {record['env']} {record['config']} seed={record['seed']}: own success "
        f"{'(sparse) ' if sparse else ''}{own}, {record['cell_seconds']:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
