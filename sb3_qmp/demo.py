"""Train QMP on the built-in 4-task point env, report per-task success, save the model.

Usage:

    python -m sb3_qmp.demo                 # ~30 s on 2 CPU cores: every task solved, the sparse one too
    python -m sb3_qmp.demo --steps 20000 --collector own --output separated.zip
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch as th

from sb3_qmp import QMP, make_multitask_vec_env
from sb3_qmp.common.collectors import COLLECTORS
from sb3_qmp.common.evaluation import evaluate_per_task
from sb3_qmp.envs.point import TASK_NAMES


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=28_000, help="total env steps over all tasks")
    parser.add_argument("--collector", default="qswitch", choices=sorted(COLLECTORS), help="behaviour policy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("qmp_demo.zip"), help="where to save the model")
    parser.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes per task")
    parser.add_argument("--progress-bar", action="store_true")
    args = parser.parse_args(argv)
    if args.steps <= 0:
        parser.error("--steps must be positive")

    th.set_num_threads(1)  # tiny networks: extra threads only add overhead
    env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=1, seed=args.seed)
    model = QMP(
        env,
        collector=args.collector,
        learning_starts=1_000,
        batch_size=128,
        policy_kwargs=dict(net_arch=[64, 64]),
        seed=args.seed,
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(args.steps, progress_bar=args.progress_bar)
    elapsed = time.perf_counter() - start
    model.save(args.output)

    results = evaluate_per_task(model, "MultiGoalPoint-v0", n_eval_episodes=args.eval_episodes, seed=args.seed + 1000)
    print(f"Trained QMP (collector={args.collector}) for {args.steps} env steps in {elapsed:.0f} s; saved {args.output}")
    print(f"{'task':<16}{'success':>9}{'return':>9}   policies used while collecting (row of Figure 5b)")
    selection = model.selection_matrix()
    for task, name in enumerate(TASK_NAMES):
        mix = " ".join(f"{p:.2f}" for p in selection[task])
        success, ret = results["success"][task], results["return"][task]
        print(f"{task} {name:<14}{success:>9.2f}{ret:>9.1f}   [{mix}]")
    print(f"mean success: {np.mean(results['success']):.2f}")
    return {"mean_success": float(np.mean(results["success"])), "seconds": elapsed}


if __name__ == "__main__":
    main()
