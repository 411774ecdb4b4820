"""How the cost grows with the number of tasks T: collection, gradient steps and replay-buffer memory, per task.

For T in ``--tasks`` (default 4, 10, 50), side by side in one run and on the same synthetic task set (a 2-D
point mass with T goals on a circle, so that the env's own cost is negligible and what is measured is the
algorithm's), one sub-env per task, the packaged Maze settings (networks 2 x 256, batch 256 per task):

* **collection**: seconds per vec-env step with the own policies (Separated) and with the Q-switch (QMP),
  divided by T (time per task-step); the Q-switch scores every policy's proposal with the row's critic, so
  its work per row is T proposals by design;
* **gradient step**: seconds per gradient step of all tasks (each on its own batch), divided by T;
* **replay buffer**: allocated bytes per task (observations and next observations stored without their
  one-hot suffix since issue 23; ``--buffer-size`` transitions per task).

Also the mixture's ``predict`` on N rows of ONE task (the unbalanced layout that used to pad every task to
N rows) against N rows spread over all tasks.

    python benchmarks/task_scaling.py --output benchmarks/results/task_scaling.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import numpy as np
import torch as th

from sb3_qmp import QMP, Separated, make_multitask_vec_env
from sb3_qmp.common.multitask_env import MultiTaskWrapper
from sb3_qmp.envs.point import PointTasksEnv


def circle_task_set(num_tasks: int) -> type[PointTasksEnv]:
    """A point-mass task set with ``num_tasks`` goals evenly on a circle of radius 0.8 (all dense)."""
    angles = 2 * np.pi * np.arange(num_tasks) / num_tasks
    goals = (0.8 * np.stack([np.cos(angles), np.sin(angles)], axis=1)).astype(np.float32)
    return type(
        f"Circle{num_tasks}PointEnv",
        (PointTasksEnv,),
        {
            "goals": goals,
            "sparse": np.zeros(num_tasks, bool),
            "task_names": [f"goal_{i}" for i in range(num_tasks)],
            "num_tasks": num_tasks,
        },
    )


def make_env(num_tasks: int) -> Any:
    cls = circle_task_set(num_tasks)
    return make_multitask_vec_env(lambda: MultiTaskWrapper(cls()), n_envs_per_task=1, seed=0)


def timed(fn: Any, repeats: int) -> float:
    """Best of ``repeats`` wall times of ``fn()`` (other load only ever adds time)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(num_tasks: int, args: argparse.Namespace) -> dict[str, Any]:
    common = dict(
        buffer_size=args.buffer_size,
        batch_size=args.batch_size,
        learning_starts=0,
        gradient_steps=0,  # collection only; gradient steps are timed on their own below
        train_freq=1,
        policy_kwargs=dict(net_arch=[256, 256]),
        seed=0,
        device="cpu",
    )
    row: dict[str, Any] = {"tasks": num_tasks}
    for name, cls in (("own", Separated), ("qswitch", QMP)):
        model = cls(make_env(num_tasks), **common)
        model.learn(num_tasks * 20)  # warm-up: buffers, caches
        seconds = timed(lambda model=model: model.learn(num_tasks * args.steps, reset_num_timesteps=False), args.repeats)
        row[f"collect_{name}_ms_per_vec_step"] = 1e3 * seconds / args.steps
        row[f"collect_{name}_ms_per_task_step"] = 1e3 * seconds / args.steps / num_tasks
        if name == "own":
            model.train(2, args.batch_size)
            grad = timed(lambda model=model: model.train(args.gradient_steps, args.batch_size), args.repeats)
            row["gradient_step_ms"] = 1e3 * grad / args.gradient_steps
            row["gradient_step_ms_per_task"] = row["gradient_step_ms"] / num_tasks
            buffer = model.replay_buffer
            stored = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
            row["buffer_bytes_per_task"] = sum(getattr(buffer, key).nbytes for key in stored) / num_tasks
        else:
            assert model.env is not None
            obs = np.asarray(model.env.reset())
            one_task = np.repeat(obs[:1], args.rows, axis=0)  # N rows of task 0
            spread = np.concatenate([obs] * -(-args.rows // num_tasks))[: args.rows]  # N rows over all tasks
            mixture = model.mixture_policy(seed=0)
            for key, rows_obs in (("one_task", one_task), ("all_tasks", spread)):
                seconds = timed(lambda m=mixture, o=rows_obs: m.predict(o, deterministic=True), args.repeats)
                row[f"mixture_predict_ms_{key}"] = 1e3 * seconds
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="+", default=[4, 10, 50])
    parser.add_argument("--steps", type=int, default=100, help="vec-env steps of collection per measurement")
    parser.add_argument("--gradient-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256, help="per task")
    parser.add_argument("--buffer-size", type=int, default=100_000, help="per task")
    parser.add_argument("--rows", type=int, default=500, help="rows of the mixture predict measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    th.set_num_threads(args.threads)
    rows = [measure(t, args) for t in args.tasks]
    first = rows[0]
    keys = [
        "collect_own_ms_per_task_step",
        "collect_qswitch_ms_per_task_step",
        "gradient_step_ms_per_task",
        "buffer_bytes_per_task",
    ]
    for row in rows:
        row["relative_to_first"] = {key: row[key] / first[key] for key in keys}
    header = (
        "| T | own collection ms / task-step | Q-switch collection ms / task-step | gradient step ms / task "
        "| buffer MB / task | mixture predict, N rows of one task / spread (ms) |"
    )
    lines = [header, "|" + "---|" * 6]
    for row in rows:
        rel = row["relative_to_first"]
        lines.append(
            f"| {row['tasks']} | {row['collect_own_ms_per_task_step']:.3f} ({rel['collect_own_ms_per_task_step']:.2f}x) "
            f"| {row['collect_qswitch_ms_per_task_step']:.3f} ({rel['collect_qswitch_ms_per_task_step']:.2f}x) "
            f"| {row['gradient_step_ms_per_task']:.2f} ({rel['gradient_step_ms_per_task']:.2f}x) "
            f"| {row['buffer_bytes_per_task'] / 2**20:.2f} ({rel['buffer_bytes_per_task']:.2f}x) "
            f"| {row['mixture_predict_ms_one_task']:.1f} / {row['mixture_predict_ms_all_tasks']:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    result = {"settings": vars(args), "machine": platform.platform(), "torch": th.__version__, "rows": rows, "table": table}
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
