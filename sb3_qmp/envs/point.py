"""A tiny 2-D multi-goal point mass: the built-in env for the demo and the fast tests.

:class:`PointTasksEnv` is the shared machinery of the point-mass task sets (``MultiGoalPoint-v0``
here; ``DetourPoint-v0``, ``ManyGoalPoint-v0`` and ``ConflictPoint-v0`` in their own modules): a point
in ``[-1, 1]^2`` moved by velocity actions, optional horizontal walls, one goal per task, a dense or
sparse step cost, and optional *traps* (the other tasks' goals, penalised). A task set is a subclass
that sets the class attributes.

:class:`MultiGoalPointEnv` is small enough to learn in a couple of minutes on two CPU cores, yet
shaped so that *selective* behaviour sharing matters:

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

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_qmp.common.checks import check_real
from sb3_qmp.common.multitask_env import check_task_id

GOALS = np.array([[0.8, 0.0], [0.6, 0.6], [-0.8, 0.0], [0.8, 0.0]], dtype=np.float32)
SPARSE = np.array([False, False, False, True])
TASK_NAMES = ["right", "up-right", "left", "right-sparse"]


class PointTasksEnv(gym.Env):
    """A 2-D point mass with one goal-reaching task per goal; task sets subclass it and set the class
    attributes below.

    Every step costs 1 until the goal is reached (the episode then ends with success); a dense task adds
    the distance to its goal. Walls are horizontal segments ``(y, x_min, x_max)``: a move that would
    cross one keeps its x part and cancels its y part (the point slides along the wall). With
    ``trap_penalty > 0`` a task also pays that much per step within ``trap_radius`` of another task's
    goal (goals equal to its own excepted).

    :param task_id: initial task (changed with :meth:`set_task`, applied at the next reset).
    :param step_size: distance covered by a full-scale action.
    :param goal_radius: success radius.
    :param start_noise: half-width of the uniform noise on the start position (origin).
    :param render_mode: ``"rgb_array"`` for a small top-down picture.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 20}
    goals: ClassVar[np.ndarray] = GOALS
    sparse: ClassVar[np.ndarray] = SPARSE
    task_names: ClassVar[list[str]] = TASK_NAMES
    walls: ClassVar[tuple[tuple[float, float, float], ...]] = ()
    trap_penalty: ClassVar[float] = 0.0
    trap_radius: ClassVar[float] = 0.0
    num_tasks: ClassVar[int] = len(GOALS)

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
        if not (len(self.goals) == len(self.sparse) == len(self.task_names) == self.num_tasks):
            raise ValueError(f"{type(self).__name__}: goals, sparse, task_names and num_tasks need one entry per task.")
        self.task_id = check_task_id(task_id, self.num_tasks)
        check_real("step_size", step_size, 0.0, math.inf, low_open=True)
        check_real("goal_radius", goal_radius, 0.0, math.inf, low_open=True)
        check_real("start_noise", start_noise, 0.0, math.inf)
        self.step_size = step_size
        self.goal_radius = goal_radius
        self.start_noise = start_noise
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._pos = np.zeros(2, dtype=np.float32)
        # Every task's traps: the other tasks' goals, except those equal to its own goal.
        self._traps = [self.goals[np.any(self.goals != goal, axis=1)] for goal in self.goals]

    def set_task(self, task_id: int) -> None:
        self.task_id = check_task_id(task_id, self.num_tasks)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options:
            raise ValueError(f"{type(self).__name__}.reset takes no options (got {sorted(options)}); use set_task().")
        self._pos = self.np_random.uniform(-self.start_noise, self.start_noise, size=2).astype(np.float32)
        return self._pos.copy(), {"is_success": False, "success_any_step": False}

    def move(self, pos: np.ndarray, action: np.ndarray) -> np.ndarray:
        """The position after ``action`` from ``pos`` (clipped to the arena; walls cancel the y part)."""
        new = np.clip(pos + self.step_size * action, -1.0, 1.0).astype(np.float32)
        for y, x_min, x_max in self.walls:
            if (pos[1] < y) == (new[1] < y):
                continue  # stays on one side of the wall's line
            x_cross = pos[0] + (y - pos[1]) / (new[1] - pos[1]) * (new[0] - pos[0])
            if x_min <= x_cross <= x_max:
                new[1] = pos[1]  # blocked: keep the x part of the move (slide along the wall)
        return new

    def trap_cost(self, pos: np.ndarray) -> float:
        """The step's trap penalty at ``pos`` for the current task (0 without traps)."""
        if self.trap_penalty <= 0.0:
            return 0.0
        offsets = self._traps[self.task_id] - pos
        near = np.einsum("ij,ij->i", offsets, offsets) <= self.trap_radius**2
        return self.trap_penalty if bool(near.any()) else 0.0

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        self._pos = self.move(self._pos, action)
        dist = float(np.linalg.norm(self._pos - self.goals[self.task_id]))
        success = dist <= self.goal_radius
        # Every step costs 1 until the goal is reached (so ending the episode early pays);
        # dense tasks add the distance to the goal, sparse tasks have no distance term.
        reward = (-1.0 if self.sparse[self.task_id] else -1.0 - dist) - self.trap_cost(self._pos)
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

        for y, x_min, x_max in self.walls:
            (r, c0), (_, c1) = to_px(np.array([x_min, y])), to_px(np.array([x_max, y]))
            img[r, c0 : c1 + 1] = (90, 90, 90)
        r, c = to_px(self.goals[self.task_id])
        img[max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3] = (0, 160, 0)
        r, c = to_px(self._pos)
        img[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = (200, 0, 0)
        return img


class MultiGoalPointEnv(PointTasksEnv):
    """Point mass with four goal-reaching tasks (see module docstring).

    :param task_id: initial task (changed with :meth:`set_task`, applied at the next reset).
    :param step_size: distance covered by a full-scale action.
    :param goal_radius: success radius.
    :param start_noise: half-width of the uniform noise on the start position (origin).
    :param render_mode: ``"rgb_array"`` for a small top-down picture.
    """
