"""Env steps per second of every registered task set (random actions, resets included, through
``gym.make`` with the one-hot wrapper and time limit), one process, one core.

    python benchmarks/env_speed.py --steps 20000
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import numpy as np

import sb3_qmp  # noqa: F401  (registers the env ids)

ENV_IDS = [
    "MultiGoalPoint-v0",
    "DetourPoint-v0",
    "ManyGoalPoint-v0",
    "ConflictPoint-v0",
    "MultistageReacher-v1",
    "MultistageReacher-v0",
    "MazeNavigation-v0",
    "MetaWorldDoorDrawer-v0",
    "MetaWorldMT10-v0",
]


def steps_per_second(env_id: str, steps: int, seed: int = 0) -> float:
    env = gym.make(env_id)  # a task drawn per episode
    env.reset(seed=seed)
    env.action_space.seed(seed)
    actions = np.stack([env.action_space.sample() for _ in range(steps)])
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--envs", nargs="+", default=ENV_IDS)
    args = parser.parse_args(argv)
    results = {}
    print("| env | tasks | obs dim (incl. one-hot) | action dim | episode steps | steps/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for env_id in args.envs:
        env = gym.make(env_id)
        results[env_id] = steps_per_second(env_id, args.steps)
        num_tasks = env.get_wrapper_attr("num_tasks")
        assert env.observation_space.shape is not None and env.action_space.shape is not None and env.spec is not None
        print(
            f"| `{env_id}` | {num_tasks} | {env.observation_space.shape[0]} | {env.action_space.shape[0]} | "
            f"{env.spec.max_episode_steps} | {results[env_id]:,.0f} |"
        )
    return results


if __name__ == "__main__":
    main()
