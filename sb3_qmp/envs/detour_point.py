"""``DetourPoint-v0``: a sparse task whose only route is another task's multi-step behaviour, which
conflicts with it past the shared part (task set (a) of the sharing study, docs/commitment.md).

The point mass of :class:`~sb3_qmp.envs.point.PointTasksEnv` (start near the origin, velocity actions
scaled by 0.2, success within 0.15 of the goal ends the episode, 40-step limit) with a horizontal wall
at ``y = 0.3`` from ``x = -1`` to ``x = 0.5``: the only way from below the wall to above it is the gap
``x > 0.5`` at the east end.

====  =====================  ==================  ==================================================
task  goal                   reward per step     relation to the other tasks
====  =====================  ==================  ==================================================
0     east (0.8, 0.0)        ``-1 - dist``       shares the first leg (east, under the wall) with 2, 3
1     west (-0.8, 0.0)       ``-1 - dist``       conflicts with every other task
2     north-east (0.8, 0.7)  ``-1 - dist``       east under the wall, north through the gap: the
                                                 route task 3 needs; past the gap it pulls to its
                                                 corner, away from task 3's goal
3     over the wall          ``-1`` (sparse)     goal (0.4, 0.65), right above the wall's end: no
      (0.4, 0.65)                                distance signal, and the straight line is walled
====  =====================  ==================  ==================================================

What sharing should do here: task 3 gains from task 2's behaviour (and task 0's) *for a few steps*, and
loses if it keeps it: task 2 executed for a whole episode never reaches task 3's goal. Measured with
scripted behaviours (``benchmarks/scripted_sharing.py``, 1,500 episodes each; ``docs/environments/point_sets.md``):
uniform random actions reach task 3's goal in 4% of episodes; task 2's behaviour for the first 5 steps
then random actions in 52%; task 2's behaviour throughout in 0%; heading straight for the goal in 0%.
A per-step switch with a flat critic mixes east, west and north-east (close to a random walk); a
commitment that ends when task 2's advantage vanishes is the behaviour the adaptive switch aims at.

Success: ``info["is_success"]`` = within 0.15 of the goal at this step, which ends the episode, so the
any-step success ``info["success_any_step"]`` is the same flag.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from sb3_qmp.envs.point import PointTasksEnv

GOALS = np.array([[0.8, 0.0], [-0.8, 0.0], [0.8, 0.7], [0.4, 0.65]], dtype=np.float32)
SPARSE = np.array([False, False, False, True])
TASK_NAMES = ["east", "west", "north-east", "over-the-wall-sparse"]
WALL = (0.3, -1.0, 0.5)  # y, x_min, x_max


class DetourPointEnv(PointTasksEnv):
    """Point mass with a wall and four tasks, one sparse behind the wall (see module docstring).

    :param task_id: initial task (changed with :meth:`set_task`, applied at the next reset).
    :param step_size: distance covered by a full-scale action.
    :param goal_radius: success radius.
    :param start_noise: half-width of the uniform noise on the start position (origin).
    :param render_mode: ``"rgb_array"`` for a small top-down picture.
    """

    goals: ClassVar[np.ndarray] = GOALS
    sparse: ClassVar[np.ndarray] = SPARSE
    task_names: ClassVar[list[str]] = TASK_NAMES
    walls: ClassVar[tuple[tuple[float, float, float], ...]] = (WALL,)
    num_tasks: ClassVar[int] = len(GOALS)
