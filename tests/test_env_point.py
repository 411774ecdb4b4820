"""Success keys of the built-in point env (sb3_qmp.envs.point)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import sb3_qmp  # noqa: F401  (registers the env ids)
from sb3_qmp.envs.point import GOALS


def test_success_metrics_are_equal_and_end_the_episode() -> None:
    """MultiGoalPoint episodes end at the goal: strict and any-step success agree at every step."""
    env = gym.make("MultiGoalPoint-v0", task_id=0)
    _, info = env.reset(seed=0)
    assert info["is_success"] is False and info["success_any_step"] is False
    _, _, terminated, _, info = env.step(np.array([-1.0, 0.0], dtype=np.float32))  # away from the goal
    assert not terminated and info["is_success"] is False and info["success_any_step"] is False
    flags = []
    for _ in range(30):
        _, _, terminated, truncated, info = env.step(np.array([1.0, 0.0], dtype=np.float32))  # to goal (0.8, 0)
        flags.append((info["is_success"], info["success_any_step"]))
        if terminated or truncated:
            break
    assert terminated and flags[-1] == (True, True)
    assert all(strict is any_step for strict, any_step in flags)
    assert np.linalg.norm(env.unwrapped.env._pos - GOALS[0]) <= 0.15  # type: ignore[attr-defined]
    env.close()
