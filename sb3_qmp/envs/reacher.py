"""Multistage Reacher: a 6-DoF Kinova Jaco arm that reaches ordered subgoals (paper task set, 5 tasks).

Two versions (gymnasium's convention: a new id version when the dynamics change), both built on dm-control's
Jaco model by :mod:`sb3_qmp.envs.reacher_scene`:

* ``MultistageReacher-v1`` (``version=1``) rebuilds the authors' task as their released code ran it: arm base
  0.25 above the floor, subgoals in the world frame, their L-shaped start pose, full gravity without
  compensation on their link masses, contacts with the floor only, +200 per subgoal in task 1, velocity and
  acceleration penalties, the stay task's goal at the episode's own start, velocity noise at reset.
* ``MultistageReacher-v0`` (``version=0``, the default of :class:`MultistageReacherEnv`) is the first rebuild,
  kept so that earlier numbers stay reproducible: subgoals in the arm base frame (pedestal 0.3 high), an
  upright start pose, gravity compensation, dm-control's masses and contacts, +10 per subgoal in task 1,
  action penalty only, a fixed stay goal.

====  ===========  =============================================  =========================================
task  name         goals (A..D below)                             reward per step (c = control cost)
====  ===========  =============================================  =========================================
0     ABC          A -> B -> C                                    ``-dist - 0.4 (3 - stage) + c``
1     ABD-shifted  A -> B -> D                                    ``-dist - 2 + c`` + bonus per subgoal reached
2     BDC          B -> D -> C                                    ``-dist - 0.4 (3 - stage) + c``
3     BCA-sparse   B -> C -> A                                    ``-0.4 (3 - stage) + c`` (no distance)
4     stay         the start hand position, 30 steps per stage    ``-dist + c``
====  ===========  =============================================  =========================================

A = (0.2, 0.3, 0.5), B = (0.3, 0.0, 0.3), C = (0.4, -0.3, 0.4), D = (0.4, 0.3, 0.2). The bonus is 200 in v1 (the
authors' ``(|shift| + 1) * 200 / 3`` with shift -2), 10 in v0. ``c = -0.01 * sum(a**2)`` in v0; v1 adds the
authors' ``- 0.001 * mean|qvel| - 1e-5 * mean|qacc|``. A subgoal is reached when the hand is closer than 0.05
to it; the stage then advances, and the episode terminates with success once 3 stages are done. In the stay
task every step with the hand closer than 0.05 to its goal counts; each 30 counted steps complete a stage (90
in all). ``stage`` in the rewards is the stage after this step's advance.

Observation (16 float32): joint positions (6), joint velocities (6), one-hot of the stage (4: stages 0, 1, 2
and "done"). The goal is not observed. Action: 6 torques in ``[-1, 1]`` scaled by the motor gears (5 on joint
1, 10 on the others). Physics: timestep 0.01, 4 steps per action; joint damping 0.5, armature 0.01, no friction
loss, as in the authors' Jaco model.

``info``: ``is_success`` (strict: all 3 stages done), ``success_any_step`` (the authors' metric: the hand has
been within 0.05 of the current goal at some step of this episode, so reaching the first subgoal counts and
the stay task counts from its first step at the start), ``stages_completed`` (0-3), ``distance`` (the ``dist``
of the rewards: hand to the goal that was current when the step began; after ``reset``, to the first goal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from sb3_qmp.common.multitask_env import MultiTaskWrapper, check_task_id
from sb3_qmp.envs.reacher_scene import (
    GEARS,
    JOINT_ARMATURE,
    JOINT_DAMPING,
    JOINT_FRICTIONLOSS,
    JOINT_NAMES,
    SCENE_V0,
    SCENE_V1,
    SUBGOALS,
    ReacherScene,
    build_model,
    jaco_xml_path,
)

__all__ = [
    "GEARS",
    "JOINT_NAMES",
    "JOINT_RANGES",
    "NUM_STAGES",
    "PEDESTAL_HEIGHT",
    "PEDESTAL_RADIUS",
    "SHIFTED_TASK",
    "SPARSE_TASK",
    "START_QPOS",
    "STAY_TASK",
    "SUBGOALS",
    "TASK_NAMES",
    "TASK_SEQUENCES",
    "VERSIONS",
    "MultistageReacherEnv",
    "ReacherVersion",
    "build_model",
    "jaco_xml_path",
    "make_env",
]

# Subgoal order per task; ``None`` is the stay task (goal = start hand position).
TASK_SEQUENCES: tuple[str | None, ...] = ("ABC", "ABD", "BDC", "BCA", None)
TASK_NAMES = ["ABC", "ABD-shifted", "BDC", "BCA-sparse", "stay"]
SHIFTED_TASK, SPARSE_TASK, STAY_TASK = 1, 3, 4
NUM_STAGES = 3
# The v0 scene's numbers under their earlier names.
START_QPOS = np.array(SCENE_V0.start_qpos)
JOINT_RANGES = np.array(SCENE_V0.joint_ranges)
PEDESTAL_RADIUS, PEDESTAL_HEIGHT = SCENE_V0.pedestal_radius, SCENE_V0.pedestal_height


@dataclass(frozen=True)
class ReacherVersion:
    """What one env version fixes: the scene and the defaults of the version-specific task settings.

    :param scene: geometry and physics (:mod:`sb3_qmp.envs.reacher_scene`).
    :param subgoal_bonus: one-time reward of task 1 for every subgoal reached.
    :param vel_cost_weight: weight of ``mean|qvel|`` in the control cost.
    :param acc_cost_weight: weight of ``mean|qacc|`` in the control cost.
    :param init_vel_noise: half-width of the uniform noise on the start joint velocities.
    :param stay_goal_at_reset: the stay task's goal is the episode's own (noisy) start hand position;
        otherwise the hand position of the unperturbed start pose.
    """

    scene: ReacherScene
    subgoal_bonus: float
    vel_cost_weight: float
    acc_cost_weight: float
    init_vel_noise: float
    stay_goal_at_reset: bool


VERSIONS: dict[int, ReacherVersion] = {
    0: ReacherVersion(SCENE_V0, 10.0, 0.0, 0.0, 0.0, False),
    1: ReacherVersion(SCENE_V1, 200.0, 0.001, 1e-5, 0.001, True),
}


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class MultistageReacherEnv(gym.Env):
    """Jaco arm with the paper's 5 Multistage Reacher tasks (see module docstring).

    Settings left at ``None`` take the version's value (:data:`VERSIONS`).

    :param task_id: initial task (changed with :meth:`set_task` or ``reset(options={"task_id": i})``).
    :param version: 1 for the authors' scene (``MultistageReacher-v1``), 0 for the first rebuild (``-v0``).
    :param render_mode: ``"rgb_array"`` or ``None``.
    :param frame_skip: physics steps per action.
    :param init_noise: half-width of the uniform noise added to every start joint angle.
    :param init_vel_noise: half-width of the uniform noise on every start joint velocity (v1: 0.001, v0: 0).
    :param goal_radius: a subgoal is reached when the hand is closer than this.
    :param stage_penalty: per-step penalty per unfinished stage (tasks 0, 2, 3).
    :param reward_shift: constant per-step penalty of task 1.
    :param subgoal_bonus: one-time reward of task 1 for every subgoal reached (v1: 200, v0: 10).
    :param ctrl_cost_weight: weight of the control cost ``sum(a**2)``.
    :param vel_cost_weight: weight of ``mean|qvel|`` in the control cost (v1: 0.001, v0: 0).
    :param acc_cost_weight: weight of ``mean|qacc|`` in the control cost (v1: 1e-5, v0: 0).
    :param stay_steps: counted steps per stage in the stay task.
    :param gravity_compensation: compensate gravity on the arm (MuJoCo ``gravcomp``; v1: no, v0: yes).
    :param joint_damping: viscous damping of every arm joint (default: the authors' Jaco model).
    :param joint_armature: rotor inertia of every arm joint (default: the authors' Jaco model).
    :param joint_frictionloss: dry friction of every arm joint (default: the authors' Jaco model, none).
    :param width: rendered image width.
    :param height: rendered image height.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 25}
    num_tasks = len(TASK_SEQUENCES)
    task_names = TASK_NAMES

    def __init__(
        self,
        task_id: int = 0,
        version: int = 0,
        render_mode: str | None = None,
        frame_skip: int = 4,
        init_noise: float = 0.01,
        init_vel_noise: float | None = None,
        goal_radius: float = 0.05,
        stage_penalty: float = 0.4,
        reward_shift: float = 2.0,
        subgoal_bonus: float | None = None,
        ctrl_cost_weight: float = 0.01,
        vel_cost_weight: float | None = None,
        acc_cost_weight: float | None = None,
        stay_steps: int = 30,
        gravity_compensation: bool | None = None,
        joint_damping: float = JOINT_DAMPING,
        joint_armature: float = JOINT_ARMATURE,
        joint_frictionloss: float = JOINT_FRICTIONLOSS,
        width: int = 480,
        height: int = 480,
    ) -> None:
        if isinstance(version, bool) or version not in VERSIONS:
            raise ValueError(f"version must be one of {sorted(VERSIONS)}, got {version!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.frame_skip = _check_positive_int("frame_skip", frame_skip)
        self.stay_steps = _check_positive_int("stay_steps", stay_steps)
        if not goal_radius > 0:
            raise ValueError(f"goal_radius must be > 0, got {goal_radius!r}")
        defaults = VERSIONS[int(version)]
        init_vel_noise = defaults.init_vel_noise if init_vel_noise is None else init_vel_noise
        if not (init_noise >= 0 and init_vel_noise >= 0):
            raise ValueError(f"init_noise and init_vel_noise must be >= 0, got {init_noise!r}, {init_vel_noise!r}")
        if int(width) < 1 or int(height) < 1:
            raise ValueError(f"width and height must be positive, got {width}x{height}")
        if min(joint_damping, joint_armature, joint_frictionloss) < 0:
            raise ValueError(
                f"joint_damping, joint_armature and joint_frictionloss must be >= 0, got "
                f"{joint_damping}, {joint_armature}, {joint_frictionloss}"
            )
        self.version = int(version)
        self.scene = defaults.scene
        self.task_id = check_task_id(task_id, self.num_tasks)
        self._next_task = self.task_id
        self.render_mode = render_mode
        self.init_noise = float(init_noise)
        self.init_vel_noise = float(init_vel_noise)
        self.goal_radius = float(goal_radius)
        self.stage_penalty = float(stage_penalty)
        self.reward_shift = float(reward_shift)
        self.subgoal_bonus = float(defaults.subgoal_bonus if subgoal_bonus is None else subgoal_bonus)
        self.ctrl_cost_weight = float(ctrl_cost_weight)
        self.vel_cost_weight = float(defaults.vel_cost_weight if vel_cost_weight is None else vel_cost_weight)
        self.acc_cost_weight = float(defaults.acc_cost_weight if acc_cost_weight is None else acc_cost_weight)
        self.stay_goal_at_reset = defaults.stay_goal_at_reset
        self.width, self.height = int(width), int(height)

        self.model = build_model(
            self.scene,
            gravity_compensation=gravity_compensation,
            render_size=(self.width, self.height),
            joint_damping=joint_damping,
            joint_armature=joint_armature,
            joint_frictionloss=joint_frictionloss,
        )
        self.data = mujoco.MjData(self.model)
        self.dt = self.model.opt.timestep * self.frame_skip
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.dt)}
        self._hand_id = self.model.site("hand").id
        self._target_id = self.model.site("target").id
        self._renderer: mujoco.Renderer | None = None

        # Views into MjData (kept for the whole life of the env: no lookups in step()).
        self._qpos, self._qvel, self._ctrl = self.data.qpos, self.data.qvel, self.data.ctrl
        self._qacc = self.data.qacc
        self._hand = self.data.site_xpos[self._hand_id]
        self.start_qpos = np.array(self.scene.start_qpos)

        self.data.qpos[:] = self.start_qpos
        mujoco.mj_kinematics(self.model, self.data)
        self.start_hand_pos = self._hand.copy()
        # goals[task] is a (3, 3) array: the goal of every stage (v1's stay goal is replaced at every reset).
        self.goals = np.array(
            [
                [SUBGOALS[name] for name in seq] if seq is not None else [self.start_hand_pos] * NUM_STAGES
                for seq in TASK_SEQUENCES
            ],
            dtype=np.float64,
        )

        nq = self.model.nq
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2 * nq + NUM_STAGES + 1,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.model.nu,), dtype=np.float32)
        self._stage_one_hot = np.eye(NUM_STAGES + 1, dtype=np.float32)
        self._stage = 0
        self._stay_count = 0
        self._any_success = False
        self._goal = self.goals[self.task_id, 0]

    # ------------------------------------------------------------------ tasks
    def set_task(self, task_id: int) -> None:
        """Select the task used from the next :meth:`reset` on."""
        self._next_task = check_task_id(task_id, self.num_tasks)

    @property
    def stage(self) -> int:
        """Number of stages completed in this episode (0-3)."""
        return self._stage

    @property
    def goal(self) -> np.ndarray:
        """Current goal position (a copy)."""
        return self._goal.copy()

    @property
    def hand_pos(self) -> np.ndarray:
        """Current hand position (a copy)."""
        return self._hand.copy()

    # -------------------------------------------------------------- gym API
    def _get_obs(self) -> np.ndarray:
        nq = self.model.nq
        obs = np.empty(2 * nq + NUM_STAGES + 1, dtype=np.float32)
        obs[:nq] = self._qpos
        obs[nq : 2 * nq] = self._qvel
        obs[2 * nq :] = self._stage_one_hot[self._stage]
        return obs

    def _set_goal(self) -> None:
        self._goal = self.goals[self.task_id, min(self._stage, NUM_STAGES - 1)]
        self.model.site_pos[self._target_id] = self._goal
        self.data.site_xpos[self._target_id] = self._goal  # the marker moves now, not at the next step

    def _distance(self) -> float:
        dx = self._hand[0] - self._goal[0]
        dy = self._hand[1] - self._goal[1]
        dz = self._hand[2] - self._goal[2]
        return math.sqrt(dx * dx + dy * dy + dz * dz)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options:
            unknown = sorted(set(options) - {"task_id"})
            if unknown:
                raise ValueError(f"MultistageReacherEnv.reset got unknown options {unknown}; the only option is 'task_id'.")
            self.set_task(options["task_id"])
        self.task_id = self._next_task
        mujoco.mj_resetData(self.model, self.data)
        self._qpos[:] = self.start_qpos + self.np_random.uniform(-self.init_noise, self.init_noise, size=self.model.nq)
        if self.init_vel_noise > 0:  # v0 draws no velocity noise: its random stream stays as it was
            self._qvel[:] = self.np_random.uniform(-self.init_vel_noise, self.init_vel_noise, size=self.model.nv)
        self._stage = 0
        self._stay_count = 0
        self._any_success = False
        mujoco.mj_forward(self.model, self.data)
        if self.stay_goal_at_reset:
            self.goals[STAY_TASK] = self._hand
        self._set_goal()
        info = {"is_success": False, "success_any_step": False, "stages_completed": 0, "distance": self._distance()}
        return self._get_obs(), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        ctrl = self._ctrl
        if np.shape(action) != ctrl.shape:
            raise ValueError(f"action must have shape {ctrl.shape}, got {np.shape(action)}")
        # Clip into MjData's control buffer in place (np.clip is several times slower than this).
        np.maximum(action, -1.0, out=ctrl)
        np.minimum(ctrl, 1.0, out=ctrl)
        sq_norm = float(np.dot(ctrl, ctrl))
        if not math.isfinite(sq_norm):  # NaN survives clipping
            raise ValueError(f"action must be finite, got {action}")
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        # mj_step leaves positions computed before the last integration: refresh the hand position.
        mujoco.mj_kinematics(self.model, self.data)

        ctrl_cost = -self.ctrl_cost_weight * sq_norm
        if self.vel_cost_weight or self.acc_cost_weight:
            ctrl_cost -= self.vel_cost_weight * float(np.abs(self._qvel).mean())
            ctrl_cost -= self.acc_cost_weight * float(np.abs(self._qacc).mean())
        dist = self._distance()
        reached = dist < self.goal_radius
        self._any_success = self._any_success or reached
        task = self.task_id
        advanced = False
        if task == STAY_TASK:
            if reached:
                self._stay_count += 1
                stage = min(self._stay_count // self.stay_steps, NUM_STAGES)
                advanced = stage > self._stage
                self._stage = stage
        elif reached:
            self._stage += 1
            advanced = True
            if self._stage < NUM_STAGES:
                self._set_goal()
        success = self._stage >= NUM_STAGES

        if task == STAY_TASK:
            reward = -dist + ctrl_cost
        elif task == SHIFTED_TASK:
            reward = -dist - self.reward_shift + ctrl_cost + (self.subgoal_bonus if advanced else 0.0)
        elif task == SPARSE_TASK:
            reward = -self.stage_penalty * (NUM_STAGES - self._stage) + ctrl_cost
        else:
            reward = -dist - self.stage_penalty * (NUM_STAGES - self._stage) + ctrl_cost
        info = {
            "is_success": success,
            "success_any_step": self._any_success,
            "stages_completed": self._stage,
            "distance": dist,
        }
        return self._get_obs(), reward, success, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' to the constructor.")
            return None
        if self._renderer is None:
            try:
                self._renderer = mujoco.Renderer(self.model, height=self.height, width=self.width)
            except Exception as err:
                raise RuntimeError(
                    "MuJoCo offscreen rendering failed. Without a display, set MUJOCO_GL=egl (or osmesa) in the "
                    "environment before mujoco is imported."
                ) from err
        self._renderer.update_scene(self.data, camera="overview")
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def make_env(task_id: int | None = None, version: int = 0, **kwargs: Any) -> MultiTaskWrapper:
    """Entry point of ``MultistageReacher-v0`` and ``-v1``: the base env with a one-hot task suffix.

    :param task_id: fixed task, or ``None`` to draw a task at every reset.
    :param version: the env version (see :class:`MultistageReacherEnv`).
    :param kwargs: passed to :class:`MultistageReacherEnv`.
    """
    first_task = 0 if task_id is None else check_task_id(task_id, len(TASK_SEQUENCES))
    return MultiTaskWrapper(MultistageReacherEnv(task_id=first_task, version=version, **kwargs), task_id=task_id)
