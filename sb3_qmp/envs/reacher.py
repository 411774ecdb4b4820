"""Multistage Reacher: a 6-DoF Kinova Jaco arm that reaches ordered subgoals (paper task set, 5 tasks).

The arm is the Jaco model shipped with the ``dm-control`` package
(``dm_control/third_party/kinova/jaco_arm.xml``, read in place, never imported or copied), turned
into a scene with :class:`mujoco.MjSpec`: a cylindrical pedestal the arm is mounted on, a floor,
torque motors on the six hinge joints, a ``hand`` site at the wrist flange (origin of body ``b_6``,
where a gripper would attach), a ``target`` marker site and a camera.

Frame: all positions are in the arm base frame, which is the world frame of the scene. Its origin is
the centre of the bottom face of the base, which rests on the top face of the pedestal (the pedestal
spans ``-PEDESTAL_HEIGHT <= z <= 0``, the floor is the plane ``z = -PEDESTAL_HEIGHT``), ``z`` points
up along joint 1, ``x`` points into the plane the arm bends in at ``joint_1 = 0`` (the side the forearm
points to in the start pose) and ``y = z x x``.

====  ===========  =============================================  ====================================
task  name         goals (A..D below)                             reward per step (c = control cost)
====  ===========  =============================================  ====================================
0     ABC          A -> B -> C                                    ``-dist - 0.4 (3 - stage) + c``
1     ABD-shifted  A -> B -> D                                    ``-dist - 2 + c`` + 10 per subgoal reached
2     BDC          B -> D -> C                                    ``-dist - 0.4 (3 - stage) + c``
3     BCA-sparse   B -> C -> A                                    ``-0.4 (3 - stage) + c`` (no distance)
4     stay         the start hand position, 30 steps per stage    ``-dist + c``
====  ===========  =============================================  ====================================

A = (0.2, 0.3, 0.5), B = (0.3, 0.0, 0.3), C = (0.4, -0.3, 0.4), D = (0.4, 0.3, 0.2) and
``c = -0.01 * sum(a**2)``. A subgoal is reached when the hand is closer than 0.05 to it; the stage
then advances, and the episode terminates with success once 3 stages are done. In the stay task every
step with the hand closer than 0.05 to its start position counts; each 30 counted steps complete a
stage (90 in all). ``stage`` in the rewards is the stage after this step's advance.

Observation (16 float32): joint positions (6), joint velocities (6), one-hot of the stage (4: stages
0, 1, 2 and "done"). The goal is not observed. Action: 6 torques in ``[-1, 1]`` scaled by the motor
gears (5 on joint 1, 10 on the others). Physics: timestep 0.01, 4 steps per action; joint damping 0.5,
armature 0.01 and no friction loss, as in the authors' Jaco model (dm-control's model has the geared
hardware's armature and friction, under which random exploration hardly moves the arm). The arm is
gravity-compensated by default (MuJoCo ``gravcomp``), as a real Jaco in torque mode is; pass
``gravity_compensation=False`` for the raw arm.

``info``: ``is_success`` (all 3 stages done), ``stages_completed`` (0-3), ``distance`` (the ``dist`` of
the rewards: hand to the goal that was current when the step began, so on the step that reaches a
subgoal it is the distance to that subgoal, not to the next one; after ``reset`` it is the distance to
the first goal).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from sb3_qmp.common.multitask_env import MultiTaskWrapper, check_task_id

SUBGOALS: dict[str, tuple[float, float, float]] = {
    "A": (0.2, 0.3, 0.5),
    "B": (0.3, 0.0, 0.3),
    "C": (0.4, -0.3, 0.4),
    "D": (0.4, 0.3, 0.2),
}
# Subgoal order per task; ``None`` is the stay task (goal = start hand position).
TASK_SEQUENCES: tuple[str | None, ...] = ("ABC", "ABD", "BDC", "BCA", None)
TASK_NAMES = ["ABC", "ABD-shifted", "BDC", "BCA-sparse", "stay"]
SHIFTED_TASK, SPARSE_TASK, STAY_TASK = 1, 3, 4
NUM_STAGES = 3

JOINT_NAMES = tuple(f"joint_{i}" for i in range(1, 7))
# Start pose: base joint facing +x, upper arm vertical, forearm pointing forward and 30 degrees
# down, wrist straight. The hand starts at about (0.29, 0.06, 0.52), 0.23-0.46 from every subgoal.
START_QPOS = np.array([0.0, np.pi, 1.5 * np.pi + np.pi / 6, 0.0, 0.0, 0.0])
# Joint limits: the spans of the authors' Jaco model (joint 1 +-0.8, joint 2 -1.5..+0.7, the others
# +-0.7 rad) placed around this model's start pose, joint 1 widened to +-1.0 so that subgoals A and C
# (0.80 and 0.77 rad from the start) lie inside. Every subgoal stays reachable (tested), and exploration
# covers the compact workspace the paper's tasks live in instead of the whole sphere around the base.
JOINT_RANGES = np.array(
    [
        [START_QPOS[0] - 1.0, START_QPOS[0] + 1.0],
        [START_QPOS[1] - 1.5, START_QPOS[1] + 0.7],
        [START_QPOS[2] - 0.7, min(START_QPOS[2] + 0.7, 5.951573)],  # the hardware limit of joint 3
        [-0.7, 0.7],
        [-0.7, 0.7],
        [-0.7, 0.7],
    ]
)
GEARS = (5.0, 10.0, 10.0, 10.0, 10.0, 10.0)
# Joint dynamics of the authors' Jaco model (damping 0.5, armature 0.01, no friction loss). dm-control's
# model describes the geared hardware instead (armature 2-4, friction loss 1-2 N m): under it uniformly
# random torques move the hand by about 0.15 over a 200-step episode and no subgoal is ever reached by
# exploration; with the authors' values (and limits) random torques sweep the hand over 0.8-0.9 (numbers in
# docs/environments/reacher.md).
JOINT_DAMPING, JOINT_ARMATURE, JOINT_FRICTIONLOSS = 0.5, 0.01, 0.0
# Pedestal under the arm base: a cylinder whose top face is the base's bottom face (z = 0), wider
# than the base (radius 0.05). It and the base are both fixed to the world, so they never collide.
PEDESTAL_RADIUS = 0.08
PEDESTAL_HEIGHT = 0.3
_SUBGOAL_RGBA = {
    "A": (0.9, 0.6, 0.1, 0.5),
    "B": (0.2, 0.4, 0.9, 0.5),
    "C": (0.6, 0.2, 0.8, 0.5),
    "D": (0.1, 0.7, 0.3, 0.5),
}


def jaco_xml_path() -> Path:
    """Path of the Jaco arm MJCF inside the installed ``dm-control`` package (found without importing it)."""
    spec = importlib.util.find_spec("dm_control")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "third_party" / "kinova" / "jaco_arm.xml"
        if path.is_file():
            return path
    raise ImportError(
        "MultistageReacher needs the Jaco model shipped with dm-control "
        "(dm_control/third_party/kinova/jaco_arm.xml): pip install 'sb3-qmp[envs]' (dm-control==1.0.28)."
    )


def _look_at_quat(pos: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Quaternion of a MuJoCo camera at ``pos`` looking at ``target`` with world z up."""
    forward = target - pos
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.column_stack([right, up, -forward]).ravel())
    return quat


def build_model(
    timestep: float = 0.01,
    gears: tuple[float, ...] = GEARS,
    gravity_compensation: bool = True,
    render_size: tuple[int, int] = (480, 480),
    joint_damping: float = JOINT_DAMPING,
    joint_armature: float = JOINT_ARMATURE,
    joint_frictionloss: float = JOINT_FRICTIONLOSS,
) -> mujoco.MjModel:
    """Compile the reacher scene (see module docstring) from dm-control's Jaco arm.

    :param timestep: physics timestep (s).
    :param gears: motor gears of joints 1-6.
    :param gravity_compensation: compensate gravity on the arm bodies (MuJoCo ``gravcomp``).
    :param joint_damping: viscous damping of every arm joint (the authors' model: 0.5).
    :param joint_armature: rotor inertia of every arm joint (the authors' model: 0.01).
    :param joint_frictionloss: dry friction of every arm joint (the authors' model: 0).
    :param render_size: ``(width, height)`` of the largest image to render (sizes the offscreen buffer).
    :return: the compiled model.
    """
    spec = mujoco.MjSpec.from_file(str(jaco_xml_path()))
    spec.option.timestep = timestep
    spec.visual.global_.offwidth = max(640, render_size[0])
    spec.visual.global_.offheight = max(480, render_size[1])

    spec.add_texture(
        name="grid",
        type=mujoco.mjtTexture.mjTEXTURE_2D,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        rgb1=[0.55, 0.6, 0.65],
        rgb2=[0.45, 0.5, 0.55],
        width=256,
        height=256,
    )
    spec.add_texture(
        name="sky",
        type=mujoco.mjtTexture.mjTEXTURE_SKYBOX,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
        rgb1=[0.45, 0.6, 0.75],
        rgb2=[0.05, 0.05, 0.1],
        width=256,
        height=1536,
    )
    floor_mat = spec.add_material(name="floor", texrepeat=[8, 8])
    floor_mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "grid"
    world = spec.worldbody
    world.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        pos=[0.0, 0.0, -PEDESTAL_HEIGHT],
        size=[1.5, 1.5, 0.05],
        material="floor",
    )
    world.add_geom(
        name="pedestal",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        pos=[0.0, 0.0, -PEDESTAL_HEIGHT / 2],
        size=[PEDESTAL_RADIUS, PEDESTAL_HEIGHT / 2, 0.0],
        material="light_gray",
    )
    world.add_light(name="top", pos=[0.3, -0.3, 2.0], dir=[0.0, 0.0, -1.0], directional=True, diffuse=[0.7] * 3)

    for joint_name, (low, high) in zip(JOINT_NAMES, JOINT_RANGES):
        joint = spec.joint(joint_name)
        joint.range = [low, high]
        joint.limited = mujoco.mjtLimited.mjLIMITED_TRUE
        joint.damping = joint_damping
        joint.armature = joint_armature
        joint.frictionloss = joint_frictionloss
    for i, (joint_name, gear) in enumerate(zip(JOINT_NAMES, gears)):
        motor = spec.add_actuator(name=f"motor_{i + 1}", target=joint_name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        motor.gear[0] = gear
        motor.ctrlrange = [-1.0, 1.0]
        motor.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
    if gravity_compensation:
        for body in spec.bodies:
            if body.name.startswith("b_"):
                body.gravcomp = 1.0

    spec.body("b_6").add_site(name="hand", size=[0.02, 0, 0], rgba=[0.9, 0.1, 0.1, 1.0], group=0)
    world.add_site(name="target", pos=SUBGOALS["A"], size=[0.05, 0, 0], rgba=[1.0, 0.9, 0.2, 0.4], group=0)
    for name, pos in SUBGOALS.items():
        world.add_site(name=f"subgoal_{name}", pos=pos, size=[0.02, 0, 0], rgba=_SUBGOAL_RGBA[name], group=2)
    cam_pos = np.array([1.1, -0.95, 0.85])
    world.add_camera(name="overview", pos=cam_pos, quat=_look_at_quat(cam_pos, np.array([0.2, 0.0, 0.3])), fovy=45)
    return spec.compile()


class MultistageReacherEnv(gym.Env):
    """Jaco arm with the paper's 5 Multistage Reacher tasks (see module docstring).

    :param task_id: initial task (changed with :meth:`set_task` or ``reset(options={"task_id": i})``).
    :param render_mode: ``"rgb_array"`` or ``None``.
    :param frame_skip: physics steps per action.
    :param init_noise: half-width of the uniform noise added to every start joint angle.
    :param goal_radius: a subgoal is reached when the hand is closer than this.
    :param stage_penalty: per-step penalty per unfinished stage (tasks 0, 2, 3).
    :param reward_shift: constant per-step penalty of task 1.
    :param subgoal_bonus: one-time reward of task 1 for every subgoal reached.
    :param ctrl_cost_weight: weight of the control cost ``sum(a**2)``.
    :param stay_steps: counted steps per stage in the stay task.
    :param gravity_compensation: compensate gravity on the arm (MuJoCo ``gravcomp``).
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
        render_mode: str | None = None,
        frame_skip: int = 4,
        init_noise: float = 0.01,
        goal_radius: float = 0.05,
        stage_penalty: float = 0.4,
        reward_shift: float = 2.0,
        subgoal_bonus: float = 10.0,
        ctrl_cost_weight: float = 0.01,
        stay_steps: int = 30,
        gravity_compensation: bool = True,
        joint_damping: float = JOINT_DAMPING,
        joint_armature: float = JOINT_ARMATURE,
        joint_frictionloss: float = JOINT_FRICTIONLOSS,
        width: int = 480,
        height: int = 480,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if isinstance(frame_skip, bool) or not isinstance(frame_skip, (int, np.integer)) or frame_skip < 1:
            raise ValueError(f"frame_skip must be a positive int, got {frame_skip!r}")
        if isinstance(stay_steps, bool) or not isinstance(stay_steps, (int, np.integer)) or stay_steps < 1:
            raise ValueError(f"stay_steps must be a positive int, got {stay_steps!r}")
        if not goal_radius > 0:
            raise ValueError(f"goal_radius must be > 0, got {goal_radius!r}")
        if not init_noise >= 0:
            raise ValueError(f"init_noise must be >= 0, got {init_noise!r}")
        if int(width) < 1 or int(height) < 1:
            raise ValueError(f"width and height must be positive, got {width}x{height}")
        self.task_id = check_task_id(task_id, self.num_tasks)
        self._next_task = self.task_id
        self.render_mode = render_mode
        self.frame_skip = int(frame_skip)
        self.init_noise = float(init_noise)
        self.goal_radius = float(goal_radius)
        self.stage_penalty = float(stage_penalty)
        self.reward_shift = float(reward_shift)
        self.subgoal_bonus = float(subgoal_bonus)
        self.ctrl_cost_weight = float(ctrl_cost_weight)
        self.stay_steps = int(stay_steps)
        self.width, self.height = int(width), int(height)

        if min(joint_damping, joint_armature, joint_frictionloss) < 0:
            raise ValueError(
                f"joint_damping, joint_armature and joint_frictionloss must be >= 0, got "
                f"{joint_damping}, {joint_armature}, {joint_frictionloss}"
            )
        self.model = build_model(
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
        self._hand = self.data.site_xpos[self._hand_id]

        self.data.qpos[:] = START_QPOS
        mujoco.mj_kinematics(self.model, self.data)
        self.start_hand_pos = self._hand.copy()
        # goals[task] is a (3, 3) array: the goal of every stage.
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
        noise = self.np_random.uniform(-self.init_noise, self.init_noise, size=self.model.nq)
        self._qpos[:] = START_QPOS + noise
        self._stage = 0
        self._stay_count = 0
        self._set_goal()
        mujoco.mj_forward(self.model, self.data)
        info = {"is_success": False, "stages_completed": 0, "distance": self._distance()}
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
        dist = self._distance()
        reached = dist < self.goal_radius
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
        info = {"is_success": success, "stages_completed": self._stage, "distance": dist}
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


def make_env(task_id: int | None = None, **kwargs: Any) -> MultiTaskWrapper:
    """Entry point of ``MultistageReacher-v0``: the base env with a one-hot task suffix.

    :param task_id: fixed task, or ``None`` to draw a task at every reset.
    :param kwargs: passed to :class:`MultistageReacherEnv`.
    """
    base = MultistageReacherEnv(task_id=0 if task_id is None else check_task_id(task_id, len(TASK_SEQUENCES)), **kwargs)
    return MultiTaskWrapper(base, task_id=task_id)
