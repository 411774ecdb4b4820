"""Multi-task environments, registered with gymnasium on ``import sb3_qmp``.

Every registered id builds a :class:`~sb3_qmp.common.multitask_env.MultiTaskWrapper`: the
observation ends with a one-hot task suffix and ``info["task_id"]`` is set. Pass
``task_id=i`` to ``gym.make`` for a fixed task, or leave it out to draw a task per episode.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from sb3_qmp.common.multitask_env import MultiTaskWrapper


def make_multi_goal_point(task_id: int | None = None, **kwargs: Any) -> MultiTaskWrapper:
    """Entry point of ``MultiGoalPoint-v0`` (see :mod:`sb3_qmp.envs.point`)."""
    from sb3_qmp.envs.point import MultiGoalPointEnv

    return MultiTaskWrapper(MultiGoalPointEnv(**kwargs), task_id=task_id)


def make_detour_point(task_id: int | None = None, **kwargs: Any) -> MultiTaskWrapper:
    """Entry point of ``DetourPoint-v0`` (see :mod:`sb3_qmp.envs.detour_point`)."""
    from sb3_qmp.envs.detour_point import DetourPointEnv

    return MultiTaskWrapper(DetourPointEnv(**kwargs), task_id=task_id)


def make_many_goal_point(task_id: int | None = None, **kwargs: Any) -> MultiTaskWrapper:
    """Entry point of ``ManyGoalPoint-v0`` (see :mod:`sb3_qmp.envs.many_goal_point`)."""
    from sb3_qmp.envs.many_goal_point import ManyGoalPointEnv

    return MultiTaskWrapper(ManyGoalPointEnv(**kwargs), task_id=task_id)


def make_conflict_point(task_id: int | None = None, **kwargs: Any) -> MultiTaskWrapper:
    """Entry point of ``ConflictPoint-v0`` (see :mod:`sb3_qmp.envs.conflict_point`)."""
    from sb3_qmp.envs.conflict_point import ConflictPointEnv

    return MultiTaskWrapper(ConflictPointEnv(**kwargs), task_id=task_id)


def register_envs() -> None:
    """Register this package's env ids (idempotent)."""
    specs: dict[str, dict[str, Any]] = {
        "MultiGoalPoint-v0": {"entry_point": "sb3_qmp.envs:make_multi_goal_point", "max_episode_steps": 30},
        # Point-mass task sets of the sharing study (docs/commitment.md): a sparse detour, many tasks, nothing to share.
        "DetourPoint-v0": {"entry_point": "sb3_qmp.envs:make_detour_point", "max_episode_steps": 40},
        "ManyGoalPoint-v0": {"entry_point": "sb3_qmp.envs:make_many_goal_point", "max_episode_steps": 30},
        "ConflictPoint-v0": {"entry_point": "sb3_qmp.envs:make_conflict_point", "max_episode_steps": 30},
        # The paper's task sets (need the `envs` extra: mujoco, dm-control, gymnasium-robotics, metaworld).
        # v1: the authors' scene as their code ran it; v0: the first rebuild, kept for earlier numbers.
        "MultistageReacher-v1": {
            "entry_point": "sb3_qmp.envs.reacher:make_env",
            "max_episode_steps": 200,
            "kwargs": {"version": 1},
        },
        "MultistageReacher-v0": {"entry_point": "sb3_qmp.envs.reacher:make_env", "max_episode_steps": 200},
        "MazeNavigation-v0": {"entry_point": "sb3_qmp.envs.maze:make_env", "max_episode_steps": 600},
        "MetaWorldDoorDrawer-v0": {
            "entry_point": "sb3_qmp.envs.metaworld_door_drawer:make_env",
            "max_episode_steps": 500,
        },
        "MetaWorldMT10-v0": {"entry_point": "sb3_qmp.envs.mt10:make_env", "max_episode_steps": 500},
        "MetaWorldMT50-v0": {"entry_point": "sb3_qmp.envs.mt10:make_mt50_env", "max_episode_steps": 500},
    }
    for env_id, kwargs in specs.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, **kwargs)


def package_env_ids() -> list[str]:
    """The gymnasium ids this package registers (every id whose entry point lives in ``sb3_qmp``)."""
    return sorted(env_id for env_id, spec in gym.registry.items() if str(spec.entry_point).startswith("sb3_qmp."))


register_envs()
