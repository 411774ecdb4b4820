"""The MuJoCo scenes of Multistage Reacher: dm-control's Jaco arm on a pedestal, one scene per env version.

The arm is the Jaco model shipped with the ``dm-control`` package (``dm_control/third_party/kinova/jaco_arm.xml``,
read in place, never imported or copied), turned into a scene with :class:`mujoco.MjSpec`: a cylindrical
pedestal the arm stands on, a floor, torque motors on the six hinge joints, a ``hand`` site at the wrist flange
(origin of body ``b_6``, where a gripper would attach), a ``target`` marker site, subgoal markers and a camera.

A :class:`ReacherScene` holds what differs between versions (start pose, joint ranges, heights, link inertias,
gravity compensation, contacts); :func:`build_model` compiles one. :data:`SCENE_V0` is the first rebuild
(``MultistageReacher-v0``), :data:`SCENE_V1` the rebuild of the authors' scene (``MultistageReacher-v1``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

SUBGOALS: dict[str, tuple[float, float, float]] = {
    "A": (0.2, 0.3, 0.5),
    "B": (0.3, 0.0, 0.3),
    "C": (0.4, -0.3, 0.4),
    "D": (0.4, 0.3, 0.2),
}
JOINT_NAMES = tuple(f"joint_{i}" for i in range(1, 7))
LINK_NAMES = tuple(f"b_{i}" for i in range(1, 7))
GEARS = (5.0, 10.0, 10.0, 10.0, 10.0, 10.0)
# Joint dynamics of the authors' Jaco model (damping 0.5, armature 0.01, no friction loss). dm-control's
# model describes the geared hardware instead (armature 2-4, friction loss 1-2 N m): under it uniformly
# random torques move the hand by about 0.15 over a 200-step episode and no subgoal is ever reached by
# exploration (numbers in docs/environments/reacher.md).
JOINT_DAMPING, JOINT_ARMATURE, JOINT_FRICTIONLOSS = 0.5, 0.01, 0.0
# The authors' joint ranges, relative to their start pose (all joint angles zero but the wrist).
_WRIST_SPAN = (-0.698132, 0.698132)  # 40 degrees either way
AUTHORS_JOINT_SPANS: tuple[tuple[float, float], ...] = ((-0.8, 0.8), (-1.5, 0.7)) + (_WRIST_SPAN,) * 4

_SUBGOAL_RGBA = {
    "A": (0.9, 0.6, 0.1, 0.5),
    "B": (0.2, 0.4, 0.9, 0.5),
    "C": (0.6, 0.2, 0.8, 0.5),
    "D": (0.1, 0.7, 0.3, 0.5),
}


@dataclass(frozen=True)
class LinkInertia:
    """Mass properties of one arm body, in that body's frame.

    :param mass: mass (kg).
    :param pos: centre of mass.
    :param full_inertia: inertia tensor about the centre of mass, ``(ixx, iyy, izz, ixy, ixz, iyz)``.
    """

    mass: float
    pos: tuple[float, float, float]
    full_inertia: tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class ReacherScene:
    """Geometry and physics of one version of the reacher scene.

    :param start_qpos: joint angles of the start pose (before the reset noise).
    :param joint_ranges: ``(low, high)`` of every joint.
    :param base_z: world height of the arm base's bottom face (the pedestal's top face).
    :param floor_z: world height of the floor (the pedestal's bottom face).
    :param pedestal_radius: radius of the pedestal cylinder.
    :param gravity_compensation: compensate gravity on the arm bodies (MuJoCo ``gravcomp``).
    :param link_inertias: mass properties of bodies ``b_1..b_6``, or ``None`` for dm-control's (from the meshes).
    :param ground_contacts_only: the arm collides with the floor only (no self or pedestal collisions);
        otherwise dm-control's contact masks hold (self, pedestal and floor collisions).
    :param hand_length: length of a capsule on the wrist flange standing for the authors' hand (0: none).
    :param gravity: magnitude of the gravitational acceleration (m/s^2).
    """

    start_qpos: tuple[float, ...]
    joint_ranges: tuple[tuple[float, float], ...]
    base_z: float
    floor_z: float
    pedestal_radius: float
    gravity_compensation: bool
    link_inertias: tuple[LinkInertia, ...] | None = None
    ground_contacts_only: bool = False
    hand_length: float = 0.0
    gravity: float = 9.81  # MuJoCo's default

    @property
    def pedestal_height(self) -> float:
        """Height of the pedestal: the arm base above the floor."""
        return self.base_z - self.floor_z


# ---------------------------------------------------------------- v0: the first rebuild
# Start pose: base joint facing +x, upper arm vertical, forearm pointing forward and 30 degrees down, wrist
# straight. The hand starts at about (0.29, 0.06, 0.52), 0.23-0.46 from every subgoal.
_V0_START = (0.0, np.pi, 1.5 * np.pi + np.pi / 6, 0.0, 0.0, 0.0)
# Joint limits: the authors' spans around this start pose, joint 1 widened to +-1.0 so that subgoals A and C
# (0.80 and 0.77 rad of base rotation from this start) lie inside.
_V0_RANGES = (
    (_V0_START[0] - 1.0, _V0_START[0] + 1.0),
    (_V0_START[1] - 1.5, _V0_START[1] + 0.7),
    (_V0_START[2] - 0.7, min(_V0_START[2] + 0.7, 5.951573)),  # the hardware limit of joint 3
    (-0.7, 0.7),
    (-0.7, 0.7),
    (-0.7, 0.7),
)
SCENE_V0 = ReacherScene(
    start_qpos=_V0_START,
    joint_ranges=_V0_RANGES,
    base_z=0.0,  # subgoals in the arm base frame
    floor_z=-0.3,
    pedestal_radius=0.08,
    gravity_compensation=True,
)

# ---------------------------------------------------------------- v1: the authors' scene
# The authors' start pose, an L: upper arm horizontal towards +x, forearm hanging down, wrist bent sideways
# (their joint angles are all zero but the wrist's). dm-control's joint zero points differ; these angles put
# the elbow and the three wrist bodies where the authors' sit relative to the shoulder (within 1 cm), so the
# hand starts at about (0.411, 0.118, 0.245), 0.378 / 0.172 / 0.446 / 0.188 from subgoals A / B / C / D
# (the authors': 0.380 / 0.173 / 0.449 / 0.185). Joint 6 only rolls the hand about its own axis.
_V1_START = (3.1434, 4.7147, 1.5927, 3.4121, 2.4030, 0.0)
# The authors' spans around the start pose. Joint 2 is asymmetric: +0.7 lowers the upper arm (in both models
# the joint turns the same way). Joint 5 is centred on the start: the authors' wrist starts at -2.8, outside
# their own range of +-0.7, and its limit swings it by 2.1 rad in the first 3 steps; here it starts inside.
_V1_RANGES = tuple((q + low, q + high) for q, (low, high) in zip(_V1_START, AUTHORS_JOINT_SPANS))
# The authors' moving-link masses, centres of mass and inertia tensors, moved into dm-control's body frames so
# that at the start pose every link's centre of mass and inertia sit where the authors' do. The hand (b_6; no
# geometry in dm-control's model) keeps the authors' hand-frame values, centred on the joint-6 axis.
_V1_INERTIAS = (
    LinkInertia(0.613, (0.0, -0.0102, -0.0605), (1.440e-03, 1.441e-03, 4.540e-04, 0.0, -4.188e-07, -2.333e-04)),
    LinkInertia(1.850, (0.0030, -0.2067, -0.0287), (3.981e-02, 4.028e-02, 1.220e-03, 1.069e-06, -1.631e-07, -7.059e-05)),
    LinkInertia(0.704, (0.0017, 0.0873, -0.0226), (3.731e-03, 3.642e-04, 3.863e-03, -6.579e-05, -2.603e-06, -1.203e-04)),
    LinkInertia(0.227, (0.0017, -0.0122, -0.0393), (1.718e-04, 1.623e-04, 1.229e-04, -2.180e-06, -6.488e-06, -2.720e-05)),
    LinkInertia(0.227, (-0.0090, -0.0104, -0.0383), (1.735e-04, 1.617e-04, 1.219e-04, -2.137e-07, 4.019e-06, -2.667e-05)),
    LinkInertia(0.581, (0.0036, -0.0001, -0.0584), (6.454e-04, 8.171e-04, 6.326e-04, 1.323e-06, 3.156e-05, 3.898e-07)),
)
SCENE_V1 = ReacherScene(
    start_qpos=_V1_START,
    joint_ranges=_V1_RANGES,
    base_z=0.25,  # the authors' stand; subgoals in the world frame, so D is 0.2 above the floor
    floor_z=0.0,
    pedestal_radius=0.045,
    gravity_compensation=False,
    link_inertias=_V1_INERTIAS,
    ground_contacts_only=True,
    hand_length=0.09,
    gravity=9.8,  # the authors' model
)


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


def _add_visuals(spec: mujoco.MjSpec, scene: ReacherScene) -> None:
    """Floor, pedestal, light, marker sites and camera."""
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
    floor = world.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        pos=[0.0, 0.0, scene.floor_z],
        size=[1.5, 1.5, 0.05],
        material="floor",
    )
    pedestal = world.add_geom(
        name="pedestal",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        pos=[0.0, 0.0, (scene.base_z + scene.floor_z) / 2],
        size=[scene.pedestal_radius, scene.pedestal_height / 2, 0.0],
        material="light_gray",
    )
    if scene.ground_contacts_only:  # the floor touches the arm geoms (contype 1); the pedestal touches nothing
        floor.contype, floor.conaffinity = 1, 1
        pedestal.contype = pedestal.conaffinity = 0
    world.add_light(name="top", pos=[0.3, -0.3, 2.0], dir=[0.0, 0.0, -1.0], directional=True, diffuse=[0.7] * 3)
    spec.body("b_6").add_site(name="hand", size=[0.02, 0, 0], rgba=[0.9, 0.1, 0.1, 1.0], group=0)
    world.add_site(name="target", pos=SUBGOALS["A"], size=[0.05, 0, 0], rgba=[1.0, 0.9, 0.2, 0.4], group=0)
    for name, pos in SUBGOALS.items():
        world.add_site(name=f"subgoal_{name}", pos=pos, size=[0.02, 0, 0], rgba=_SUBGOAL_RGBA[name], group=2)
    cam_pos = np.array([1.1, -0.95, 0.85])
    world.add_camera(name="overview", pos=cam_pos, quat=_look_at_quat(cam_pos, np.array([0.2, 0.0, 0.3])), fovy=45)


def _set_mass_and_contacts(spec: mujoco.MjSpec, scene: ReacherScene) -> None:
    """The v1 changes to dm-control's bodies: explicit inertias, a hand capsule, floor-only contacts."""
    if scene.link_inertias is not None:
        for name, inertia in zip(LINK_NAMES, scene.link_inertias):
            body = spec.body(name)
            body.explicitinertial = True
            body.mass = inertia.mass
            body.ipos = list(inertia.pos)
            body.fullinertia = list(inertia.full_inertia)
    if scene.hand_length > 0:
        # The authors' hand mesh (palm, no fingers) reaches out along the joint-6 axis (-z of b_6).
        spec.body("b_6").add_geom(
            name="hand",
            type=mujoco.mjtGeom.mjGEOM_CAPSULE,
            fromto=[0.0, 0.0, 0.0, 0.0, 0.0, -scene.hand_length],
            size=[0.035, 0.0, 0.0],
            mass=0.0,
            material="dark_gray",
        )
    if scene.ground_contacts_only:
        # As in the authors' scene: arm geoms have contype 1 and conaffinity 0, so they never collide with one
        # another; the floor (conaffinity 1) is the only thing they touch. (dm-control's default class gives
        # every geom, the floor included, contype 3 and conaffinity 2: all pairs collide.)
        for body in spec.bodies:
            if body.name.startswith("b_"):
                for geom in body.geoms:
                    is_arm = body.name != "b_base"
                    geom.contype, geom.conaffinity = (1, 0) if is_arm else (0, 0)


def build_model(
    scene: ReacherScene = SCENE_V0,
    timestep: float = 0.01,
    gears: tuple[float, ...] = GEARS,
    gravity_compensation: bool | None = None,
    render_size: tuple[int, int] = (480, 480),
    joint_damping: float = JOINT_DAMPING,
    joint_armature: float = JOINT_ARMATURE,
    joint_frictionloss: float = JOINT_FRICTIONLOSS,
) -> mujoco.MjModel:
    """Compile a reacher scene (see module docstring) from dm-control's Jaco arm.

    :param scene: the version's geometry and physics.
    :param timestep: physics timestep (s).
    :param gears: motor gears of joints 1-6.
    :param gravity_compensation: compensate gravity on the arm bodies (MuJoCo ``gravcomp``); ``None``: the scene's.
    :param render_size: ``(width, height)`` of the largest image to render (sizes the offscreen buffer).
    :param joint_damping: viscous damping of every arm joint (the authors' model: 0.5).
    :param joint_armature: rotor inertia of every arm joint (the authors' model: 0.01).
    :param joint_frictionloss: dry friction of every arm joint (the authors' model: 0).
    :return: the compiled model.
    """
    spec = mujoco.MjSpec.from_file(str(jaco_xml_path()))
    spec.option.timestep = timestep
    spec.option.gravity = [0.0, 0.0, -scene.gravity]
    spec.visual.global_.offwidth = max(640, render_size[0])
    spec.visual.global_.offheight = max(480, render_size[1])
    if scene.base_z != 0.0:
        spec.body("b_base").pos = [0.0, 0.0, scene.base_z]
    _add_visuals(spec, scene)

    for joint_name, (low, high) in zip(JOINT_NAMES, scene.joint_ranges):
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
    if scene.gravity_compensation if gravity_compensation is None else gravity_compensation:
        for body in spec.bodies:
            if body.name.startswith("b_"):
                body.gravcomp = 1.0
    _set_mass_and_contacts(spec, scene)
    return spec.compile()
