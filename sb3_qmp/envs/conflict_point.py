"""``ConflictPoint-v0``: four tasks with nothing to share, where sharing can only cost (study task
set (c) of the sharing study, docs/commitment.md).

The point mass of :class:`~sb3_qmp.envs.point.PointTasksEnv` (start near the origin, velocity actions
scaled by 0.2, success within 0.15 of the goal ends the episode, 30-step limit). Four dense tasks go
to four goals in four directions, and every task's goal is a *trap* for the other three: a step that
ends within 0.3 of another task's goal costs 5 more.

====  ================  ====================================  ==================================
task  goal              reward per step                       relation to the other tasks
====  ================  ====================================  ==================================
0     east (0.8, 0)     ``-1 - dist`` (``-5`` more in a trap)  every other task's behaviour leads
1     north (0, 0.8)    as task 0                              away from its goal and into a trap
2     west (-0.8, 0)    as task 0
3     south (0, -0.8)   as task 0
====  ================  ====================================  ==================================

What sharing should do here: nothing. Another task's behaviour moves the point at right angles to, or
away from, the task's goal, and ends in a trap: every step collected with another policy is a cost to
the task's return and a transition of no use to its policy. The traps lie off every task's own route
(the straight line from the origin to its goal), so the own policies never meet them: Separated is the
best possible behaviour, and a switch should learn to keep each task's own policy.

Success: as every point task set, ``info["is_success"]`` = within 0.15 of the goal (ends the episode)
and ``info["success_any_step"]`` is the same flag.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from sb3_qmp.envs.point import PointTasksEnv

GOALS = np.array([[0.8, 0.0], [0.0, 0.8], [-0.8, 0.0], [0.0, -0.8]], dtype=np.float32)
SPARSE = np.zeros(len(GOALS), dtype=bool)
TASK_NAMES = ["east", "north", "west", "south"]
TRAP_PENALTY = 5.0
TRAP_RADIUS = 0.3


class ConflictPointEnv(PointTasksEnv):
    """Point mass with four dense tasks whose goals are each other's traps (see module docstring).

    :param task_id: initial task (changed with :meth:`set_task`, applied at the next reset).
    :param step_size: distance covered by a full-scale action.
    :param goal_radius: success radius.
    :param start_noise: half-width of the uniform noise on the start position (origin).
    :param render_mode: ``"rgb_array"`` for a small top-down picture.
    """

    goals: ClassVar[np.ndarray] = GOALS
    sparse: ClassVar[np.ndarray] = SPARSE
    task_names: ClassVar[list[str]] = TASK_NAMES
    trap_penalty: ClassVar[float] = TRAP_PENALTY
    trap_radius: ClassVar[float] = TRAP_RADIUS
    num_tasks: ClassVar[int] = len(GOALS)
