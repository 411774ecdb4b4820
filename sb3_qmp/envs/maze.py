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
* Start and goal sit where the authors' code (D4RL's ``MazeEnv``) puts them: 0.2 cells past the cell's
  centre along both the row and the column index (see "Frames" below). Start: that point plus
  ``U(-0.1, 0.1)`` on x and y, initial velocity ``N(0, 0.1)`` on each axis. Goal: that point, exact.
* Reward ``exp(-dist) - 1`` per step; the episode terminates with success when ``dist <= 0.5``.
  ``info["is_success"]`` and ``info["success_any_step"]`` are equal (episodes end at success).
  The 600-step limit comes from the registration of ``MazeNavigation-v0``.

Frames. D4RL builds the maze with the wall of map entry ``[i][j]`` (row ``i``, column ``j``) at world
``(i + 1, j + 1)`` and the ball's body at ``(1.2, 1.2)``, so the ball's ``qpos`` (which the authors' task
file gives as the cell indices ``(i, j)`` of start and goal) is world ``(i + 1.2, j + 1.2)``: 0.2 past
the wall cell's centre along both indices. gymnasium-robotics puts the wall of ``[i][j]`` at
``x = j + 0.5 - 6``, ``y = 4.5 - (i + 0.5)`` (``Maze.cell_rowcol_to_xy``, linear in ``(i, j)``) with the
ball's ``qpos`` equal to its world position. The same maze, rotated by 90 degrees; the authors' point
of cell ``(i, j)`` is ``cell_rowcol_to_xy((i + 0.2, j + 0.2))``, i.e. the cell centre plus
``(+0.2, -0.2)`` in x, y here.

A step does the same MuJoCo calls as ``PointEnv.step`` (bit-identical states) without its
per-step dict building, which roughly doubles throughput.
"""

from __future__ import annotations

import math
from pathlib import Path
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


def maze_distances(goal: tuple[int, int]) -> dict[tuple[int, int], int]:
    """Moves (steps to a side-by-side cell) from every cell of ``LARGE_MAZE`` that can reach ``goal`` to it.

    :param goal: ``(row, col)`` of an open cell.
    """
    if LARGE_MAZE[goal[0]][goal[1]] == 1:
        raise ValueError(f"{goal} is a wall cell of LARGE_MAZE")
    distances, frontier = {goal: 0}, [goal]
    while frontier:  # breadth first: every cell of the next ring is one move further
        ring = []
        for row, col in frontier:
            for cell in ((row + 1, col), (row - 1, col), (row, col + 1), (row, col - 1)):
                if LARGE_MAZE[cell[0]][cell[1]] != 1 and cell not in distances:
                    distances[cell] = distances[(row, col)] + 1
                    ring.append(cell)
        frontier = ring
    return distances


MAX_VELOCITY = 5.0  # PointEnv clips the ball's velocity to this before every step
#: Where D4RL (the authors' maze) puts the ball relative to a wall cell's centre, in cells along both the
#: row and the column index (its ball body sits at (1.2, 1.2), its walls at (i + 1, j + 1)).
D4RL_CELL_OFFSET = 0.2
BALL_RADIUS = 0.1  # the ball's collision sphere (gymnasium-robotics' and D4RL's point model)


class MazeNavigationEnv(gym.Env):
    """Point mass in the large maze with 10 fixed start/goal tasks (see module docstring).

    :param task_id: initial task (changed with :meth:`set_task`, applied at the next reset).
    :param start_noise: half-width of the uniform noise added to the start position (metres).
    :param velocity_noise: standard deviation of the Gaussian initial velocity on each axis (m/s);
        0.1 as in D4RL.
    :param cell_offset: where start and goal sit in their cells: this many cells past the centre along
        both the row and the column index; 0.2 is D4RL's (the authors'), 0 the cell centre.
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
        velocity_noise: float = 0.1,
        cell_offset: float = D4RL_CELL_OFFSET,
        goal_radius: float = 0.5,
        render_mode: str | None = None,
        width: int = 480,
        height: int = 360,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if start_noise < 0:
            raise ValueError(f"start_noise must be >= 0, got {start_noise}")
        if velocity_noise < 0:
            raise ValueError(f"velocity_noise must be >= 0, got {velocity_noise}")
        if abs(cell_offset) + start_noise + BALL_RADIUS >= 0.5:
            raise ValueError(
                f"cell_offset={cell_offset} with start_noise={start_noise} could start the ball (radius "
                f"{BALL_RADIUS}) inside a wall: keep |cell_offset| + start_noise below {0.5 - BALL_RADIUS}."
            )
        if goal_radius <= 0:
            raise ValueError(f"goal_radius must be > 0, got {goal_radius}")
        self.task_id = check_task_id(task_id, self.num_tasks)
        self.goal_radius = float(goal_radius)
        self.start_noise = float(start_noise)
        self.velocity_noise = float(velocity_noise)
        self.cell_offset = float(cell_offset)
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
        # gymnasium-robotics writes the maze's MuJoCo XML to a new file in the system temp folder for every
        # instance and never removes it (thousands over a campaign). The model is loaded by now.
        Path(self.maze_env.tmp_xml_file_path).unlink(missing_ok=True)
        # gymnasium-robotics' own start/goal noise is off (not a constructor argument: set on the instance);
        # reset() places start and goal and draws the noise itself.
        self.maze_env.position_noise_range = 0.0
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

    def cell_xy(self, cell: tuple[int, int], offset: float = 0.0) -> np.ndarray:
        """(x, y) of a maze cell given as (row, col): its centre, or ``offset`` cells past it along both indices.

        :param cell: ``(row, col)`` in ``LARGE_MAZE``.
        :param offset: 0 for the centre; :attr:`cell_offset` for where the tasks start and end.
        """
        rowcol = np.asarray(cell, dtype=np.float64) + offset
        # gymnasium-robotics' conversion is linear in (row, col), so fractional indices are fine.
        return np.asarray(self.maze_env.maze.cell_rowcol_to_xy(rowcol), dtype=np.float64)

    def task_positions(self, task_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The noise-free start and the goal (x, y) of a task (default: the current one)."""
        task = self.task_id if task_id is None else check_task_id(task_id, self.num_tasks)
        start, goal = TASK_CELLS[task]
        return self.cell_xy(start, self.cell_offset), self.cell_xy(goal, self.cell_offset)

    def set_task(self, task_id: int) -> None:
        self.task_id = check_task_id(task_id, self.num_tasks)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options:
            raise ValueError(f"MazeNavigationEnv.reset takes no options (got {sorted(options)}); use set_task().")
        start, goal = TASK_CELLS[self.task_id]
        # gymnasium-robotics' reset (MuJoCo data reset and its bookkeeping; its own noise is off), then
        # the authors' placement with noise from this env's generator: position first, then velocity.
        self.maze_env.reset(options={"reset_cell": np.array(start), "goal_cell": np.array(goal)})
        start_xy, goal_xy = self.task_positions()
        self.maze_env.goal = goal_xy.copy()
        self.maze_env.update_target_site_pos()
        self._goal = (float(goal_xy[0]), float(goal_xy[1]))
        qpos = start_xy + self.np_random.uniform(-self.start_noise, self.start_noise, size=2)
        qvel = self.np_random.normal(0.0, self.velocity_noise, size=2)
        self.maze_env.reset_pos = qpos.copy()
        self._point.set_state(qpos, qvel)
        obs = self._obs()
        dist = self._distance()
        success = dist <= self.goal_radius
        return obs, {"is_success": success, "success_any_step": success, "distance": dist}

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
        # Episodes end at the first success, so "success at any step" is the success of this step.
        info = {"is_success": success, "success_any_step": success, "distance": dist}
        return obs, math.exp(-dist) - 1.0, success, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self.maze_env.render()  # type: ignore[no-any-return]

    def close(self) -> None:
        self.maze_env.close()


def make_env(task_id: int | None = None, **kwargs: Any) -> MultiTaskWrapper:
    """Entry point of ``MazeNavigation-v0``: :class:`MazeNavigationEnv` with the one-hot task suffix."""
    return MultiTaskWrapper(MazeNavigationEnv(**kwargs), task_id=task_id)
