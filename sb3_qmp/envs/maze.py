"""Maze Navigation: 10 start-to-goal tasks of a point mass in the D4RL large maze (paper section 5.1).

The simulation is gymnasium-robotics' ``PointMazeEnv`` on ``LARGE_MAZE`` (9 x 12 cells, 1 m each,
force control, velocity clipped to 5). Every task fixes a start cell and a goal cell (row, col):

====  ======  =======  ==================
task  start   goal     shortest path
====  ======  =======  ==================
0     (1, 3)  (5, 8)   9 moves
1     (1, 10) (2, 4)   9 moves
2     (4, 1)  (1, 7)   9 moves
3     (7, 4)  (4, 10)  9 moves
4     (1, 3)  (7, 4)   11 moves
5     (1, 7)  (7, 10)  11 moves
6     (5, 4)  (7, 9)   11 moves
7     (7, 1)  (2, 6)   12 moves
8     (1, 2)  (3, 10)  14 moves
9     (7, 2)  (6, 8)   15 moves
====  ======  =======  ==================

* Observation ``[x, y, vx, vy]`` (float32); the goal is *not* observed, only felt through the reward.
* Start: the start cell's centre plus ``U(-0.1, 0.1)`` on x and y. Goal: the goal cell's centre, exact.
* Reward ``exp(-dist) - 1`` per step; the episode terminates with success when ``dist <= 0.5``.
  The 600-step limit comes from the registration of ``MazeNavigation-v0``.

A step does the same MuJoCo calls as ``PointEnv.step`` (bit-identical states) without its
per-step dict building, which roughly doubles throughput.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium_robotics.envs.maze.maps import LARGE_MAZE
from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv

from sb3_qmp.common.multitask_env import MultiTaskWrapper, check_task_id

#: (start cell, goal cell) of every task, as (row, col) in ``LARGE_MAZE``.
TASK_CELLS: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (
    ((1, 3), (5, 8)),
    ((1, 10), (2, 4)),
    ((4, 1), (1, 7)),
    ((7, 4), (4, 10)),
    ((1, 3), (7, 4)),
    ((1, 7), (7, 10)),
    ((5, 4), (7, 9)),
    ((7, 1), (2, 6)),
    ((1, 2), (3, 10)),
    ((7, 2), (6, 8)),
)
TASK_NAMES = [f"{s[0]},{s[1]}->{g[0]},{g[1]}" for s, g in TASK_CELLS]
MAX_VELOCITY = 5.0  # PointEnv clips the ball's velocity to this before every step


class MazeNavigationEnv(gym.Env):
    """Point mass in the large maze with 10 fixed start/goal tasks (see module docstring).

    :param task_id: initial task (changed with :meth:`set_task`, applied at the next reset).
    :param start_noise: half-width of the uniform noise added to the start cell's centre (metres).
    :param goal_radius: success (and termination) distance to the goal.
    :param render_mode: ``"rgb_array"`` for a top-down MuJoCo picture.
    :param width: rendered image width.
    :param height: rendered image height.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 100}
    num_tasks = len(TASK_CELLS)
    task_names = TASK_NAMES

    def __init__(
        self,
        task_id: int = 0,
        start_noise: float = 0.1,
        goal_radius: float = 0.5,
        render_mode: str | None = None,
        width: int = 480,
        height: int = 360,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if start_noise < 0:
            raise ValueError(f"start_noise must be >= 0, got {start_noise}")
        if goal_radius <= 0:
            raise ValueError(f"goal_radius must be > 0, got {goal_radius}")
        self.task_id = check_task_id(task_id, self.num_tasks)
        self.goal_radius = float(goal_radius)
        self.render_mode = render_mode
        self.maze_env = PointMazeEnv(
            maze_map=LARGE_MAZE,
            render_mode=render_mode,
            reward_type="dense",
            continuing_task=False,
            reset_target=False,
            width=width,
            height=height,
        )
        # Not a constructor argument (it would reach MujocoEnv and fail): set on the instance.
        # Its noise applies to the start and the goal; the goal is put back on the cell centre in reset().
        self.maze_env.position_noise_range = float(start_noise)
        self._point = self.maze_env.point_env
        # Top-down camera that frames the whole 12 x 9 maze (best with a 4:3 image).
        self._point.mujoco_renderer.default_cam_config = {
            "distance": 11.5,
            "elevation": -90.0,
            "azimuth": 90.0,
            "lookat": np.zeros(3),
        }
        self._model: mujoco.MjModel = self._point.model
        self._data: mujoco.MjData = self._point.data

        maze = self.maze_env.maze
        half_w, half_h = maze.map_width / 2 * maze.maze_size_scaling, maze.map_length / 2 * maze.maze_size_scaling
        # Velocities are clipped to 5 before every step; after it wall contacts can push them a little
        # higher (at most 6.5 seen in 100k random steps): the space allows twice the clip value.
        high = np.array([half_w, half_h, 2 * MAX_VELOCITY, 2 * MAX_VELOCITY], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._goal = (0.0, 0.0)

    @property
    def maze(self) -> Any:
        """gymnasium-robotics' ``Maze`` (map, cell <-> xy conversions)."""
        return self.maze_env.maze

    @property
    def goal(self) -> np.ndarray:
        """The current task's goal position (x, y)."""
        return np.array(self._goal)

    def cell_xy(self, cell: tuple[int, int]) -> np.ndarray:
        """Centre (x, y) of a maze cell given as (row, col)."""
        return np.asarray(self.maze_env.maze.cell_rowcol_to_xy(np.asarray(cell)), dtype=np.float64)

    def set_task(self, task_id: int) -> None:
        self.task_id = check_task_id(task_id, self.num_tasks)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options:
            raise ValueError(f"MazeNavigationEnv.reset takes no options (got {sorted(options)}); use set_task().")
        start, goal = TASK_CELLS[self.task_id]
        # The inner env draws its noise from its own generator, seeded here from ours.
        inner_seed = int(self.np_random.integers(2**31)) if seed is not None else None
        self.maze_env.reset(seed=inner_seed, options={"reset_cell": np.array(start), "goal_cell": np.array(goal)})
        goal_xy = self.cell_xy(goal)
        self.maze_env.goal = goal_xy.copy()
        self.maze_env.update_target_site_pos()
        self._goal = (float(goal_xy[0]), float(goal_xy[1]))
        obs = self._obs()
        dist = self._distance()
        return obs, {"is_success": dist <= self.goal_radius, "distance": dist}

    def _obs(self) -> np.ndarray:
        d = self._data
        return np.array((d.qpos[0], d.qpos[1], d.qvel[0], d.qvel[1]), dtype=np.float32)

    def _distance(self) -> float:
        qpos = self._data.qpos
        return math.hypot(float(qpos[0]) - self._goal[0], float(qpos[1]) - self._goal[1])

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,):
            raise ValueError(f"action must have shape (2,), got {action.shape}")
        d = self._data
        # Same calls as gymnasium-robotics' PointEnv.step (clip velocity, set_state -> mj_forward, step).
        np.clip(d.qvel, -MAX_VELOCITY, MAX_VELOCITY, out=d.qvel)
        mujoco.mj_forward(self._model, d)
        np.clip(action, -1.0, 1.0, out=d.ctrl)
        mujoco.mj_step(self._model, d)
        obs = self._obs()
        dist = self._distance()
        success = dist <= self.goal_radius
        return obs, math.exp(-dist) - 1.0, success, False, {"is_success": success, "distance": dist}

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self.maze_env.render()  # type: ignore[no-any-return]

    def close(self) -> None:
        self.maze_env.close()


def make_env(task_id: int | None = None, **kwargs: Any) -> MultiTaskWrapper:
    """Entry point of ``MazeNavigation-v0``: :class:`MazeNavigationEnv` with the one-hot task suffix."""
    return MultiTaskWrapper(MazeNavigationEnv(**kwargs), task_id=task_id)
