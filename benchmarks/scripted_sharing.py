"""What sharing can give on the point-mass task sets, with scripted behaviours instead of learnt ones.

For one task ``i`` of a point task set (``MultiGoalPoint-v0``, ``DetourPoint-v0``, ``ManyGoalPoint-v0``,
``ConflictPoint-v0``) it runs episodes in which task ``j``'s *scripted* behaviour (head for goal ``j`` at
full speed; walls make it slide) acts for the first ``k`` steps and uniform random actions act after
that, and reports task ``i``'s success rate and mean return for every ``j`` and ``k``. ``k = 0`` is a
random walk, the exploration of a policy that knows nothing; ``k = all`` is behaviour ``j`` for the whole
episode. The numbers in ``docs/environments/point_sets.md`` come from this script::

    python benchmarks/scripted_sharing.py --env DetourPoint-v0 --task 3 --episodes 1500
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import gymnasium as gym
import numpy as np

import sb3_qmp  # noqa: F401  (registers the env ids)
from sb3_qmp.envs.point import PointTasksEnv


def run(base: PointTasksEnv, task: int, behaviour: int | None, steps: int, episodes: int, seed: int) -> tuple[float, float]:
    """Success rate and mean return of ``task`` when ``behaviour``'s scripted policy acts for the first ``steps``
    steps of each episode and random actions after that (``behaviour=None``: random throughout)."""
    rng = np.random.default_rng(seed)
    limit = base.spec.max_episode_steps if base.spec is not None and base.spec.max_episode_steps else 30
    base.set_task(task)
    successes, returns = 0, 0.0
    for _ in range(episodes):
        pos, _ = base.reset(seed=int(rng.integers(2**31)))
        for t in range(limit):
            if behaviour is not None and t < steps:
                action = np.clip((base.goals[behaviour] - pos) / base.step_size, -1.0, 1.0)
            else:
                action = rng.uniform(-1.0, 1.0, size=2)
            pos, reward, terminated, _, _ = base.step(action.astype(np.float32))
            returns += reward
            if terminated:
                successes += 1
                break
    return successes / episodes, returns / episodes


def main(argv: Sequence[str] | None = None) -> str:
    """Print (and return) a markdown table: one row per behaviour, success / return per ``k``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="DetourPoint-v0", help="a point-mass task set id")
    parser.add_argument("--task", type=int, default=3, help="the task whose success is measured")
    parser.add_argument("--steps", type=int, nargs="+", default=[3, 5, 10], help="values of k besides 0 and all")
    parser.add_argument("--episodes", type=int, default=1500, help="episodes per (behaviour, k)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    env = gym.make(args.env)
    base = env.unwrapped.env  # type: ignore[attr-defined]  # the MultiTaskWrapper's base env
    if not isinstance(base, PointTasksEnv):
        parser.error(f"{args.env} is not a point-mass task set")
    base.spec = env.spec
    if not 0 <= args.task < base.num_tasks:
        parser.error(f"--task must be in [0, {base.num_tasks - 1}]")
    random_success, random_return = run(base, args.task, None, 0, args.episodes, args.seed)
    columns = [*args.steps, "all"]
    lines = [
        f"{args.env}, task {args.task} ({base.task_names[args.task]}), {args.episodes} episodes per cell; "
        f"random actions throughout: success {random_success:.3f}, return {random_return:.1f}",
        "",
        "| behaviour for the first k steps | " + " | ".join(f"k={k}" for k in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    horizon = env.spec.max_episode_steps if env.spec is not None and env.spec.max_episode_steps else 30
    for j in range(base.num_tasks):
        cells = []
        for k in columns:
            success, ret = run(base, args.task, j, horizon if k == "all" else int(k), args.episodes, args.seed)
            cells.append(f"{success:.3f} ({ret:.1f})")
        lines.append(f"| task {j} ({base.task_names[j]}) | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    return table


if __name__ == "__main__":
    main()
