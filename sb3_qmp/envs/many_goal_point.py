"""``ManyGoalPoint-v0``: twelve tasks, most of which share nothing (task set (b) of the sharing study, docs/commitment.md).

The point mass of :class:`~sb3_qmp.envs.point.PointTasksEnv` (start near the origin, velocity actions
scaled by 0.2, success within 0.15 of the goal ends the episode, 30-step limit). Ten dense tasks have
goals on a circle of radius 0.8, 36 degrees apart (task ``k`` at angle ``36 k`` degrees, task 0 due
east); neighbouring goals are 0.49 apart, so each dense task's behaviour leads away from every other
goal. Two sparse tasks (``-1`` per step, no distance signal) have the goals of dense tasks 0 and 5.

======  =========================  ==================  ==============================================
task    goal                       reward per step     relation to the other tasks
======  =========================  ==================  ==============================================
0-9     ``0.8 (cos, sin)(36 k°)``  ``-1 - dist``       distinct directions: nothing to share
10      = goal of task 0 (east)    ``-1`` (sparse)     only task 0's behaviour helps (1 of 11 others)
11      = goal of task 5 (west)    ``-1`` (sparse)     only task 5's behaviour helps (1 of 11 others)
======  =========================  ==================  ==============================================

What sharing should do here: almost nothing. For a dense task any other policy's behaviour leads
elsewhere; for a sparse task one policy in eleven is the route. This is the paper's other over-sharing
case (§5.3.4, many tasks): a switch with a flat critic spreads a sparse task's steps over eleven
policies, ten of which lead away. A good switch shares almost only between tasks 0 and 10 and
between tasks 5 and 11.

Success: as every point task set, ``info["is_success"]`` = within 0.15 of the goal (ends the episode)
and ``info["success_any_step"]`` is the same flag.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from sb3_qmp.envs.point import PointTasksEnv

NUM_DIRECTIONS = 10
_ANGLES = 2 * np.pi * np.arange(NUM_DIRECTIONS) / NUM_DIRECTIONS
DENSE_GOALS = 0.8 * np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1)
SPARSE_PARTNERS = (0, 5)  # the dense task whose goal each sparse task shares
GOALS = np.concatenate([DENSE_GOALS, DENSE_GOALS[list(SPARSE_PARTNERS)]]).astype(np.float32)
SPARSE = np.array([False] * NUM_DIRECTIONS + [True] * len(SPARSE_PARTNERS))
TASK_NAMES = [f"dir-{36 * k}" for k in range(NUM_DIRECTIONS)] + [f"dir-{36 * k}-sparse" for k in SPARSE_PARTNERS]


class ManyGoalPointEnv(PointTasksEnv):
    """Point mass with ten dense direction tasks and two sparse ones (see module docstring).

    :param task_id: initial task (changed with :meth:`set_task`, applied at the next reset).
    :param step_size: distance covered by a full-scale action.
    :param goal_radius: success radius.
    :param start_noise: half-width of the uniform noise on the start position (origin).
    :param render_mode: ``"rgb_array"`` for a small top-down picture.
    """

    goals: ClassVar[np.ndarray] = GOALS
    sparse: ClassVar[np.ndarray] = SPARSE
    task_names: ClassVar[list[str]] = TASK_NAMES
    num_tasks: ClassVar[int] = len(GOALS)
