"""A tiny 2-D multi-goal point mass: the built-in env for the demo and the fast tests.

It is small enough to learn in a couple of minutes on two CPU cores, yet shaped so that
*selective* behaviour sharing matters:

====  ==================  ==================  ===========================================
task  goal                reward per step     relation to the other tasks
====  ==================  ==================  ===========================================
0     right (0.8, 0.0)    ``-1 - dist``       the path the sparse task needs
1     up-right (0.6, 0.6) ``-1 - dist``       shares the first part of the path with 0
2     left (-0.8, 0.0)    ``-1 - dist``       conflicts with tasks 0, 1 and 3
3     right (0.8, 0.0)    ``-1`` (sparse)     no distance signal: only reaching the goal
                                              (task 0's behaviour) ends the step cost
====  ==================  ==================  ===========================================

The state is the position in ``[-1, 1]^2``; an action is a velocity in ``[-1, 1]^2`` scaled by
``step_size=0.2`` per step. An episode ends with success within ``goal_radius=0.15`` of the
goal (the step cost makes reaching it early pay, whatever the entropy bonus), or after 30
steps (time limit added at registration). Plain SAC learns a dense task in ~3k steps; the
sparse task needs luck, which is what behaviour sharing supplies.

Success: ``info["is_success"]`` is "within ``goal_radius`` of the goal at this step". As the episode ends
there, the any-step success ``info["success_any_step"]`` (the package's convention for every env) is
the same flag: an episode succeeds if and only if it ended at the goal.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_qmp.common.multitask_env import check_task_id

GOALS = np.array([[0.8, 0.0], [0.6, 0.6], [-0.8, 0.0], [0.8, 0.0]], dtype=np.float32)
SPARSE = np.array([False, False, False, True])
TASK_NAMES = ["right", "up-right", "left", "right-sparse"]


class MultiGoalPointEnv(gym.Env):
    """Point mass with four goal-reaching tasks (see module docstring).

    :param task_id: initial task (changed with :meth:`set_task`, applied at the next reset).
    :param step_size: distance covered by a full-scale action.
    :param goal_radius: success radius.
    :param start_noise: half-width of the uniform noise on the start position (origin).
    :param render_mode: ``"rgb_array"`` for a small top-down picture.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 20}
    num_tasks = len(GOALS)
    task_names = TASK_NAMES

    def __init__(
        self,
        task_id: int = 0,
        step_size: float = 0.2,
        goal_radius: float = 0.15,
        start_noise: float = 0.05,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.task_id = check_task_id(task_id, self.num_tasks)
        self.step_size = step_size
        self.goal_radius = goal_radius
        self.start_noise = start_noise
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._pos = np.zeros(2, dtype=np.float32)

    def set_task(self, task_id: int) -> None:
        self.task_id = check_task_id(task_id, self.num_tasks)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options:
            raise ValueError(f"MultiGoalPointEnv.reset takes no options (got {sorted(options)}); use set_task().")
        self._pos = self.np_random.uniform(-self.start_noise, self.start_noise, size=2).astype(np.float32)
        return self._pos.copy(), {"is_success": False, "success_any_step": False}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        self._pos = np.clip(self._pos + self.step_size * action, -1.0, 1.0).astype(np.float32)
        dist = float(np.linalg.norm(self._pos - GOALS[self.task_id]))
        success = dist <= self.goal_radius
        # Every step costs 1 until the goal is reached (so ending the episode early pays);
        # dense tasks add the distance to the goal, the sparse task has no distance term.
        reward = -1.0 if SPARSE[self.task_id] else -1.0 - dist
        # The episode ends at success, so success at any step so far is this step's success.
        info = {"is_success": success, "success_any_step": success, "distance": dist}
        return self._pos.copy(), reward, success, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        size = 64
        img = np.full((size, size, 3), 255, dtype=np.uint8)

        def to_px(p: np.ndarray) -> tuple[int, int]:
            col = int(np.clip((p[0] + 1) / 2 * (size - 1), 0, size - 1))
            row = int(np.clip((1 - p[1]) / 2 * (size - 1), 0, size - 1))
            return row, col

        r, c = to_px(GOALS[self.task_id])
        img[max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3] = (0, 160, 0)
        r, c = to_px(self._pos)
        img[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = (200, 0, 0)
        return img
