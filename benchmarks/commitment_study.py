"""Commitment study (issue 6): does a Q-switch that shares *behaviours* beat the per-step switch?

Runs, on the built-in ``MultiGoalPoint-v0`` (three dense tasks and one sparse task whose goal is
task 0's goal), the Separated baseline (:class:`~sb3_qmp.MultiTaskSAC`, every task collects with its
own policy), the paper's per-step Q-switch (QMP, ``commit_steps=1``) and the QMP variants with
temporal commitment (``commit_steps=k``), own-policy bias (``own_prob``) and early switching
(``switch_margin``), several seeds each, with identical settings and env-step budgets.

For every run it records:

* the final per-task success of each task's *own* policy, deterministic (``--eval-episodes``
  episodes per task on a separately seeded env);
* the training-time success of every task (``rollout/task_{i}/success_rate``: the last 100
  collection episodes, i.e. with the behaviour mixture acting);
* the mixture's T x T selection matrix and the mean commitment-window length per task.

Results go to ``<out>/commitment_study.json`` (every run plus the summary) and
``<out>/commitment_study.csv`` (one row per run), and a markdown table (mean ± std over seeds) is
printed and written to ``<out>/commitment_study.md``.

Example (the budget used in ``docs/commitment.md``)::

    nice python benchmarks/commitment_study.py --steps 16000 --seeds 0 1 2 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ENV_ID = "MultiGoalPoint-v0"
SPARSE_TASK = 3


@dataclass(frozen=True)
class StudyConfig:
    """One arm of the study.

    :param name: short identifier used on the command line and in the results.
    :param algo: ``"separated"`` (MultiTaskSAC, own-policy collection) or ``"qmp"``.
    :param collector_kwargs: keyword arguments of the Q-switch collector (QMP only).
    :param label: human-readable description for the table.
    """

    name: str
    algo: str
    collector_kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""


CONFIGS: dict[str, StudyConfig] = {
    c.name: c
    for c in (
        StudyConfig("separated", "separated", {}, "Separated (own policy)"),
        StudyConfig("qmp_k1", "qmp", {"commit_steps": 1}, "QMP k=1 (paper)"),
        StudyConfig("qmp_k5", "qmp", {"commit_steps": 5}, "QMP k=5"),
        StudyConfig("qmp_k10", "qmp", {"commit_steps": 10}, "QMP k=10"),
        StudyConfig("qmp_k20", "qmp", {"commit_steps": 20}, "QMP k=20"),
        StudyConfig("qmp_own0.3", "qmp", {"own_prob": 0.3}, "QMP k=1, own_prob=0.3"),
        StudyConfig("qmp_own0.7", "qmp", {"own_prob": 0.7}, "QMP k=1, own_prob=0.7"),
        StudyConfig("qmp_k10_own0.3", "qmp", {"commit_steps": 10, "own_prob": 0.3}, "QMP k=10, own_prob=0.3"),
        StudyConfig("qmp_k10_margin", "qmp", {"commit_steps": 10, "switch_margin": 1.0}, "QMP k=10, switch_margin=1"),
    )
}
DEFAULT_CONFIGS = list(CONFIGS)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the study."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=16_000, help="env steps per run (all 4 tasks together)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (one run per config and seed)")
    parser.add_argument(
        "--configs",
        type=str,
        nargs="+",
        default=DEFAULT_CONFIGS,
        help=f"configs to run (space- or comma-separated); known: {', '.join(CONFIGS)}",
    )
    parser.add_argument("--out", type=str, default="benchmarks/results", help="output folder")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (CPUs of the local Ray instance)")
    parser.add_argument("--learning-starts", type=int, default=1000, help="uniform-random env steps before learning")
    parser.add_argument("--batch-size", type=int, default=256, help="minibatch per task and gradient step")
    parser.add_argument("--net-arch", type=int, nargs="+", default=[64, 64], help="hidden layers of actors and critics")
    parser.add_argument("--eval-episodes", type=int, default=20, help="deterministic evaluation episodes per task")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    args = parser.parse_args(argv)
    names = [n for item in args.configs for n in item.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {unknown}; known: {list(CONFIGS)}")
    args.configs = names
    if args.steps < 1 or args.jobs < 1 or args.eval_episodes < 1:
        parser.error("--steps, --jobs and --eval-episodes must be positive")
    return args


def evaluate_own_policies(model: Any, episodes_per_task: int, seed: int) -> np.ndarray:
    """Deterministic success rate of every task's own policy, ``(T,)``.

    One sub-env per (episode, task) pair; each row's one-hot task id routes it to its task's policy.
    """
    from sb3_qmp import make_multitask_vec_env

    env = make_multitask_vec_env(ENV_ID, n_envs_per_task=episodes_per_task, seed=seed)
    num_tasks = model.num_tasks
    success = np.zeros(env.num_envs, dtype=bool)
    finished = np.zeros(env.num_envs, dtype=bool)
    obs = env.reset()
    while not finished.all():
        actions, _ = model.predict(obs, deterministic=True)
        obs, _, dones, infos = env.step(actions)
        for e in np.flatnonzero(dones & ~finished):
            success[e] = bool(infos[e].get("is_success", False))
        finished |= dones
    env.close()
    # Sub-env e runs task e % T.
    return success.reshape(episodes_per_task, num_tasks).mean(axis=0)


def run_one(config_name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one config with one seed and return its record (JSON-serialisable)."""
    import torch as th

    from sb3_qmp import QMP, MultiTaskSAC, make_multitask_vec_env

    th.set_num_threads(args.threads)
    cfg = CONFIGS[config_name]
    env = make_multitask_vec_env(ENV_ID, n_envs_per_task=1, seed=seed)
    common: dict[str, Any] = dict(
        learning_starts=args.learning_starts,
        batch_size=args.batch_size,
        train_freq=1,
        gradient_steps=1,
        policy_kwargs=dict(net_arch=list(args.net_arch)),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    if cfg.algo == "separated":
        model: Any = MultiTaskSAC(env, **common)
    else:
        model = QMP(env, collector_kwargs=dict(cfg.collector_kwargs), **common)
    start = time.perf_counter()
    model.learn(args.steps)
    train_s = time.perf_counter() - start
    eval_success = evaluate_own_policies(model, args.eval_episodes, seed=10_000 + seed)
    train_success = [float(np.mean(buf)) if len(buf) else float("nan") for buf in model.task_success_buffer]
    commitment = model.collector.mean_commitment() if cfg.algo != "separated" else np.ones(model.num_tasks)
    env.close()
    return {
        "config": config_name,
        "seed": seed,
        "steps": args.steps,
        "eval_success": [float(x) for x in eval_success],
        "train_success": train_success,
        "selection_matrix": model.selection_matrix().round(4).tolist(),
        "mean_commitment": [float(x) for x in commitment],
        "train_seconds": round(train_s, 2),
    }


def _nan_to_none(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


def _mean_std(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std())


def summarize(runs: list[dict[str, Any]], configs: Sequence[str]) -> list[dict[str, Any]]:
    """Per-config summary: mean and std over seeds of every per-task metric."""
    summary = []
    for name in configs:
        rows = [r for r in runs if r["config"] == name]
        if not rows:
            continue
        eval_s = np.array([r["eval_success"] for r in rows])
        train_s = np.array([r["train_success"] for r in rows], dtype=np.float64)
        sel = np.array([r["selection_matrix"] for r in rows])
        commit = np.array([r["mean_commitment"] for r in rows], dtype=np.float64)
        num_tasks = eval_s.shape[1]
        summary.append(
            {
                "config": name,
                "label": CONFIGS[name].label,
                "collector_kwargs": CONFIGS[name].collector_kwargs,
                "seeds": [r["seed"] for r in rows],
                "eval_success_mean": eval_s.mean(axis=0).tolist(),
                "eval_success_std": eval_s.std(axis=0).tolist(),
                "eval_success_all_tasks": list(_mean_std(eval_s.mean(axis=1).tolist())),
                "train_success_mean": [_nan_to_none(_mean_std(train_s[:, t])[0]) for t in range(num_tasks)],
                "train_success_std": [_nan_to_none(_mean_std(train_s[:, t])[1]) for t in range(num_tasks)],
                "own_policy_frac_mean": np.diagonal(sel, axis1=1, axis2=2).mean(axis=0).tolist(),
                "selection_matrix_mean": sel.mean(axis=0).round(3).tolist(),
                "mean_commitment_mean": [_nan_to_none(_mean_std(commit[:, t])[0]) for t in range(num_tasks)],
                "train_seconds_mean": float(np.mean([r["train_seconds"] for r in rows])),
            }
        )
    return summary


def _fmt(mean: float | None, std: float | None = None, digits: int = 2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(summary: list[dict[str, Any]]) -> str:
    """Markdown table: final deterministic success per task (mean ± std over seeds) and diagnostics."""
    if not summary:
        return "(no runs)\n"
    num_tasks = len(summary[0]["eval_success_mean"])
    task_cols = [f"task {t}{' (sparse)' if t == SPARSE_TASK else ''}" for t in range(num_tasks)]
    header = ["config", *task_cols, "mean over tasks", "task 3 train success", "task 3 own frac", "task 3 commitment", "s/run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summary:
        cells = [s["label"] or s["config"]]
        cells += [_fmt(m, sd) for m, sd in zip(s["eval_success_mean"], s["eval_success_std"])]
        cells.append(_fmt(*s["eval_success_all_tasks"]))
        sparse = min(SPARSE_TASK, num_tasks - 1)
        cells.append(_fmt(s["train_success_mean"][sparse], s["train_success_std"][sparse]))
        cells.append(_fmt(s["own_policy_frac_mean"][sparse]))
        cells.append(_fmt(s["mean_commitment_mean"][sparse], digits=1))
        cells.append(f"{s['train_seconds_mean']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(out: str, args: argparse.Namespace, runs: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """Write the JSON, CSV and markdown outputs; return the JSON payload."""
    os.makedirs(out, exist_ok=True)
    summary = summarize(runs, args.configs)
    table = markdown_table(summary)
    payload = {
        "env": ENV_ID,
        "settings": {
            "steps": args.steps,
            "seeds": list(args.seeds),
            "configs": list(args.configs),
            "learning_starts": args.learning_starts,
            "batch_size": args.batch_size,
            "net_arch": list(args.net_arch),
            "train_freq": 1,
            "gradient_steps": 1,
            "eval_episodes_per_task": args.eval_episodes,
            "jobs": args.jobs,
            "threads": args.threads,
        },
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()},
        "command": " ".join(["python", *sys.argv]) if sys.argv else "",
        "wall_seconds": round(wall_s, 1),
        "summary": summary,
        "runs": runs,
        "table_markdown": table,
    }
    with open(os.path.join(out, "commitment_study.json"), "w") as f:
        json.dump(payload, f, indent=1)
    with open(os.path.join(out, "commitment_study.md"), "w") as f:
        f.write(table)
    num_tasks = len(runs[0]["eval_success"]) if runs else 0
    fields = ["config", "seed", "steps", "train_seconds"]
    fields += [f"eval_success_task_{t}" for t in range(num_tasks)] + [f"train_success_task_{t}" for t in range(num_tasks)]
    fields += [f"own_frac_task_{t}" for t in range(num_tasks)] + [f"mean_commitment_task_{t}" for t in range(num_tasks)]
    with open(os.path.join(out, "commitment_study.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in runs:
            own = [r["selection_matrix"][t][t] for t in range(num_tasks)]
            head = [r["config"], r["seed"], r["steps"], r["train_seconds"]]
            writer.writerow([*head, *r["eval_success"], *r["train_success"], *own, *r["mean_commitment"]])
    return payload


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the study and write its outputs. Returns the JSON payload (also written to ``--out``)."""
    args = parse_args(argv)
    jobs = [(name, seed) for seed in args.seeds for name in args.configs]
    start = time.perf_counter()
    runs: list[dict[str, Any]] = []
    from sb3_qmp.grid.engine import map_script

    def report(index: int, r: dict[str, Any]) -> None:
        print(
            f"{r['config']} seed={r['seed']}: eval={r['eval_success']} "
            f"train={[round(x, 2) for x in r['train_success']]} ({r['train_seconds']:.0f} s)",
            flush=True,
        )

    # Every run a Ray task (the package's grid engine), --jobs at a time.
    runs = map_script(__file__, "run_one", [(name, seed, args) for name, seed in jobs], num_cpus=args.jobs, on_result=report)
    wall_s = time.perf_counter() - start
    payload = write_results(args.out, args, runs, wall_s)
    print(payload["table_markdown"])
    print(f"{len(runs)} runs in {wall_s:.0f} s; results in {args.out}/commitment_study.{{json,csv,md}}")
    return payload


if __name__ == "__main__":
    main()
