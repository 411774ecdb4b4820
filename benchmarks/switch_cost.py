"""Where the Q-switch's collection time goes: microseconds per vec-env step of action selection.

Times ``_sample_action`` (the collection step's action selection) for the own collector, the
Q-switch and the Q-switch with temporal commitment, and splits the Q-switch into its two network
passes (every policy proposes on every row; every row's task critic scores T candidates) next to the
own collector's single actor pass. One sub-env per task, as in ``throughput.py``.

    python benchmarks/switch_cost.py                              # paper's Reacher (T=5, 2 x 256)
    python benchmarks/switch_cost.py --env MazeNavigation-v0      # T=10
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch as th
from report import report  # benchmarks/report.py (the script's folder is on sys.path)

from sb3_qmp import QMP, MultiTaskSAC, make_multitask_vec_env


def microseconds(fn: Callable[[], Any], repeats: int) -> float:
    """Best of 5 rounds of ``repeats`` calls, in microseconds per call (load only ever adds time)."""
    for _ in range(min(repeats, 200)):
        fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best * 1e6


def run(args: argparse.Namespace) -> dict[str, Any]:
    th.set_num_threads(args.threads)
    env = make_multitask_vec_env(args.env, n_envs_per_task=1, seed=0)
    kwargs: dict[str, Any] = dict(learning_starts=0, policy_kwargs=dict(net_arch=args.net_arch), seed=0)
    models = {
        "own collector": MultiTaskSAC(env, **kwargs),
        "Q-switch (k=1)": QMP(env, **kwargs),
        "Q-switch, commit_steps=5": QMP(env, collector_kwargs=dict(commit_steps=5), **kwargs),
    }
    obs = cast(np.ndarray, env.reset())  # a Box observation space
    per_step: dict[str, float] = {}
    for name, model in models.items():
        model._last_obs = obs
        per_step[name] = microseconds(partial(model._sample_action, 0, None, model.n_envs), args.repeats)

    qmp = models["Q-switch (k=1)"]
    with th.no_grad():
        features, tasks = qmp.policy.split_obs(th.as_tensor(obs, dtype=th.float32))
        proposals = qmp.actor.propose(features)
        candidates = proposals[0].transpose(0, 1)
        parts = {
            "own: each row's actor (N rows)": microseconds(lambda: qmp.actor.task_actions(features, tasks), args.repeats),
            "switch: every actor on every row (T x N rows)": microseconds(lambda: qmp.actor.propose(features), args.repeats),
            "switch: task critics score T candidates (N x T rows)": microseconds(
                lambda: qmp.critic.score(features, candidates, tasks), args.repeats
            ),
        }
    return {
        "settings": {**vars(args), "num_tasks": qmp.num_tasks, "n_envs": qmp.n_envs},
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": args.threads},
        "per_step_us": per_step,
        "network_passes_us": parts,
    }


def to_markdown(result: dict[str, Any]) -> str:
    own = result["per_step_us"]["own collector"]
    lines = ["| action selection per vec-env step | µs | vs. own |", "|---|---:|---:|"]
    lines += [f"| {name} | {us:.0f} | {us / own:.2f}x |" for name, us in result["per_step_us"].items()]
    lines += ["", "| network pass | µs |", "|---|---:|"]
    lines += [f"| {name} | {us:.0f} |" for name, us in result["network_passes_us"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MultistageReacher-v0")
    parser.add_argument("--net-arch", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=2000, help="calls per timing round")
    parser.add_argument("--output", type=Path, default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    result = run(args)
    header = f"env={args.env} T={result['settings']['num_tasks']} net={args.net_arch} cores={os.cpu_count()}"
    report(result, header, to_markdown(result), args.output)
    return result


if __name__ == "__main__":
    main()
