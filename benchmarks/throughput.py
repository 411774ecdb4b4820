"""Wall-time of multi-task training: QMP vs. MultiTaskSAC (own collector) vs. T separate SB3 SAC runs.

Every variant does the same work: the same env, the same env steps per task, and the same gradient
steps per task at the same batch size (one update of ``gradient_steps`` steps every ``train_freq``
env steps of each task, after ``learning_starts`` random steps per task).

    python benchmarks/throughput.py                       # paper's Reacher settings (batch 32)
    python benchmarks/throughput.py --env MultiGoalPoint-v0 --batch-size 256 --train-freq 1 --gradient-steps 1
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import torch as th
from report import report  # benchmarks/report.py (the script's folder is on sys.path)
from stable_baselines3 import SAC

import sb3_qmp  # noqa: F401  (registers the env ids)
from sb3_qmp import QMP, MultiTaskSAC, make_multitask_vec_env
from sb3_qmp.common.vec_env import get_num_tasks


def time_it(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict[str, Any]:
    th.set_num_threads(args.threads)
    num_tasks = get_num_tasks(gym.make(args.env))
    common = dict(
        batch_size=args.batch_size,
        train_freq=args.train_freq,
        gradient_steps=args.gradient_steps,
        buffer_size=args.steps_per_task,
        policy_kwargs=dict(net_arch=args.net_arch),
        seed=0,
    )

    def multitask(algo: type[MultiTaskSAC], **extra: Any) -> float:
        env = make_multitask_vec_env(args.env, n_envs_per_task=1, seed=0)
        policy_kwargs = {**common["policy_kwargs"], **extra.pop("policy_kwargs", {})}
        model = algo(
            env, learning_starts=args.learning_starts * num_tasks, **{**common, "policy_kwargs": policy_kwargs}, **extra
        )
        return time_it(lambda: model.learn(args.steps_per_task * num_tasks))

    def separate_sb3(fused: bool) -> float:
        total = 0.0
        for task in range(num_tasks):
            optimizer_kwargs = {"fused": True} if fused else {}
            policy_kwargs = {**common["policy_kwargs"], "optimizer_kwargs": optimizer_kwargs}
            model = SAC(
                "MlpPolicy",
                gym.make(args.env, task_id=task),
                learning_starts=args.learning_starts,
                **{**common, "policy_kwargs": policy_kwargs},
            )
            total += time_it(partial(model.learn, args.steps_per_task))
        return total

    variants: dict[str, Callable[[], float]] = {
        "QMP (Q-switch collector)": lambda: multitask(QMP),
        "QMP, commit_steps=5": lambda: multitask(QMP, collector_kwargs=dict(commit_steps=5)),
        "MultiTaskSAC (own collector)": lambda: multitask(MultiTaskSAC),
        "MultiTaskSAC, unfused Adam (before)": lambda: multitask(
            MultiTaskSAC, policy_kwargs=dict(optimizer_kwargs={"fused": False})
        ),
        f"{num_tasks} x SB3 SAC (default)": lambda: separate_sb3(fused=False),
        f"{num_tasks} x SB3 SAC, fused Adam": lambda: separate_sb3(fused=True),
    }
    if args.only:
        variants = {name: fn for name, fn in variants.items() if any(key in name for key in args.only)}
    # Rounds interleave the variants, and the best round counts: load from other processes on a shared
    # machine only ever adds time, so the minimum is the least disturbed measurement of each variant.
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            rounds[name].append(fn())
    times = {name: min(values) for name, values in rounds.items()}
    return {
        "settings": {**vars(args), "num_tasks": num_tasks},
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": args.threads, "processor": platform.processor()},
        "seconds": times,
        "rounds": rounds,
    }


def to_markdown(result: dict[str, Any]) -> str:
    times = result["seconds"]
    own = times.get("MultiTaskSAC (own collector)")
    sb3 = next((v for k, v in times.items() if k.endswith("SB3 SAC (default)")), None)

    def ratio(sec: float, ref: float | None) -> str:
        return f"{sec / ref:.2f}x" if ref else "-"

    lines = ["| variant | wall time (s) | vs. own collector | vs. separate SB3 SAC |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {sec:.1f} | {ratio(sec, own)} | {ratio(sec, sb3)} |" for name, sec in times.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MultistageReacher-v0")
    parser.add_argument("--steps-per-task", type=int, default=20_000)
    parser.add_argument("--learning-starts", type=int, default=1_000, help="random steps per task before updates")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-freq", type=int, default=1_000, help="env steps per task between updates")
    parser.add_argument("--gradient-steps", type=int, default=100, help="gradient steps per update")
    parser.add_argument("--net-arch", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (all variants)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds; each variant's best round is reported")
    parser.add_argument("--only", nargs="+", default=None, help="run only the variants whose name contains one of these")
    parser.add_argument("--output", type=Path, default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    result = run(args)
    header = (
        f"env={args.env} T={result['settings']['num_tasks']} steps/task={args.steps_per_task} batch={args.batch_size} "
        f"train_freq={args.train_freq} gradient_steps={args.gradient_steps} net={args.net_arch} "
        f"cores={os.cpu_count()} torch_threads={args.threads}"
    )
    report(result, header, to_markdown(result), args.output)
    return result


if __name__ == "__main__":
    main()
