"""Tests of ``MultistageReacher-v1``: the authors' Multistage Reacher scene on dm-control's Jaco arm."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering without a display; must precede `import mujoco`

import gymnasium as gym
import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")
pytest.importorskip("dm_control", reason="the Jaco model ships with dm-control")  # only located, never imported

from gymnasium.utils.env_checker import check_env as gymnasium_check_env  # noqa: E402
from stable_baselines3.common.env_checker import check_env  # noqa: E402

import sb3_qmp  # noqa: E402, F401  (registers the env ids)
from sb3_qmp.envs.reacher import (  # noqa: E402
    GEARS,
    SHIFTED_TASK,
    STAY_TASK,
    SUBGOALS,
    TASK_SEQUENCES,
    MultistageReacherEnv,
)
from sb3_qmp.envs.reacher_scene import LINK_NAMES, SCENE_V1  # noqa: E402

ENV_ID = "MultistageReacher-v1"
ZERO = np.zeros(6, dtype=np.float32)
# Facts of the authors' scene (public repository clvrai/qmp): start hand position, its distance to every
# subgoal, and the masses of the moving links.
AUTHORS_START_HAND = (0.41, 0.12, 0.24)
AUTHORS_START_DISTANCES = {"A": 0.380, "B": 0.173, "C": 0.449, "D": 0.185}
AUTHORS_LINK_MASSES = (0.613, 1.850, 0.704, 0.227, 0.227, 0.581)


def make_v1(task_id: int = 0, **kwargs) -> MultistageReacherEnv:
    return MultistageReacherEnv(task_id=task_id, version=1, **kwargs)


def solve_ik(env: MultistageReacherEnv, target, iters: int = 3000, damping: float = 0.05):
    """Damped-least-squares IK of the hand site from the start pose, within the joint limits. Returns (qpos, error)."""
    model, data = env.model, mujoco.MjData(env.model)
    site, jac = model.site("hand").id, np.zeros((3, model.nv))
    q, target = env.start_qpos.copy(), np.asarray(target, dtype=np.float64)
    for _ in range(iters):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        err = target - data.site_xpos[site]
        if np.linalg.norm(err) < 1e-5:
            break
        mujoco.mj_jacSite(model, data, jac, None, site)
        q = np.clip(q + jac.T @ np.linalg.solve(jac @ jac.T + damping**2 * np.eye(3), err), *model.jnt_range.T)
    data.qpos[:] = q
    mujoco.mj_forward(model, data)
    return q, float(np.linalg.norm(target - data.site_xpos[site])), int(data.ncon)


def place_hand(env: MultistageReacherEnv, qpos) -> None:
    """Teleport the arm to ``qpos`` at rest."""
    env.data.qpos[:] = qpos
    env.data.qvel[:] = 0.0
    mujoco.mj_forward(env.model, env.data)


def motion_cost(env: MultistageReacherEnv) -> float:
    """The velocity and acceleration terms of the authors' control cost, from the env's current MjData."""
    return -0.001 * np.abs(env.data.qvel).mean() - 1e-5 * np.abs(env.data.qacc).mean()


@pytest.fixture(scope="module")
def env_v1():
    env = make_v1()
    yield env
    env.close()


@pytest.mark.filterwarnings("ignore:.*observation space (minimum|maximum) value is")  # joint angles: unbounded Box
@pytest.mark.parametrize("task_id", range(5))
def test_registered_and_check_env_every_task(task_id):
    env = gym.make(ENV_ID, task_id=task_id)
    assert env.spec.max_episode_steps == 200 and env.unwrapped.env.version == 1
    check_env(env)
    obs, info = env.reset(seed=0)
    assert obs.shape == (16 + 5,) and info["task_id"] == task_id
    assert set(info) == {"is_success", "success_any_step", "stages_completed", "distance", "task_id"}
    gymnasium_check_env(env.unwrapped, skip_render_check=True)  # the task wrapper around the base env
    env.close()
    check_env(make_v1(task_id))
    gymnasium_check_env(make_v1(task_id), skip_render_check=True)


def test_scene_geometry_and_start_pose(env_v1):
    """Base 0.25 above the floor, subgoals in the world frame, the authors' L-shaped start pose."""
    model, data = env_v1.model, env_v1.data
    place_hand(env_v1, env_v1.start_qpos)
    assert data.geom_xpos[model.geom("floor").id][2] == 0.0
    assert data.body("b_base").xpos[2] == pytest.approx(0.25)
    np.testing.assert_allclose(model.site_pos[[model.site(f"subgoal_{n}").id for n in "ABCD"]], list(SUBGOALS.values()))
    shoulder, elbow, wrist = (data.body(n).xpos for n in ("b_2", "b_3", "b_4"))
    upper_arm, forearm = elbow - shoulder, wrist - elbow
    assert upper_arm[0] > 0.4 and abs(upper_arm[2]) < 0.01  # horizontal, towards +x
    assert forearm[2] < -0.2 and np.hypot(*forearm[:2]) < 0.015  # hanging down
    np.testing.assert_allclose(env_v1.start_hand_pos, AUTHORS_START_HAND, atol=0.01)
    for name, expected in AUTHORS_START_DISTANCES.items():
        assert np.linalg.norm(env_v1.start_hand_pos - SUBGOALS[name]) == pytest.approx(expected, abs=0.02)
    assert data.ncon == 0


def test_joint_ranges_are_the_authors_spans_around_the_start(env_v1):
    spans = env_v1.model.jnt_range - env_v1.start_qpos[:, None]
    np.testing.assert_allclose(spans[0], [-0.8, 0.8])
    np.testing.assert_allclose(spans[1], [-1.5, 0.7])  # +0.7 lowers the upper arm (tested below)
    np.testing.assert_allclose(spans[2:], [[-0.698132, 0.698132]] * 4)
    env_v1.reset(seed=0)
    shoulder_start = env_v1.data.qpos[1]
    for _ in range(10):
        env_v1.step(ZERO)
    assert env_v1.data.qpos[1] > shoulder_start + 0.3  # the arm fell: joint 2 grew


@pytest.mark.parametrize("name", sorted(SUBGOALS))
def test_every_subgoal_is_reachable(env_v1, name):
    q, err, ncon = solve_ik(env_v1, SUBGOALS[name])
    assert err < 1e-3, f"subgoal {name} unreachable (IK error {err:.3f})"
    assert np.all(q >= env_v1.model.jnt_range[:, 0]) and np.all(q <= env_v1.model.jnt_range[:, 1])
    assert ncon == 0


def test_link_masses_gravity_and_no_compensation(env_v1):
    model = env_v1.model
    masses = [model.body(name).mass[0] for name in LINK_NAMES]
    np.testing.assert_allclose(masses, AUTHORS_LINK_MASSES, atol=1e-3)
    assert not model.body_gravcomp.any()
    np.testing.assert_allclose(model.opt.gravity, [0.0, 0.0, -9.8])
    # holding the start pose needs more than the 10 N m the shoulder motor has
    place_hand(env_v1, env_v1.start_qpos)
    assert abs(env_v1.data.qfrc_bias[1]) > GEARS[1]


def test_gravity_sinks_the_arm_to_the_floor_under_zero_torque():
    env = make_v1(task_id=0)
    env.reset(seed=1)
    start = env.hand_pos
    heights = []
    for _ in range(10):
        env.step(ZERO)
        heights.append(env.hand_pos[2])
    assert heights[0] < start[2] and np.all(np.diff(heights[:5]) < 0)  # sinks from the first step on
    assert start[2] - min(heights) > 0.15  # from 0.245 towards the floor
    assert min(heights) > 0.0  # ... which stops it
    floor = env.model.geom("floor").id
    assert env.data.ncon > 0
    assert all(floor in (c.geom1, c.geom2) for c in env.data.contact[: env.data.ncon])
    env.close()


def test_contacts_with_the_floor_only(env_v1):
    model = env_v1.model
    floor, pedestal = model.geom("floor").id, model.geom("pedestal").id
    arm = [g for g in range(model.ngeom) if model.body(model.geom_bodyid[g]).name in LINK_NAMES]
    assert model.geom("hand").id in arm

    def collide(g1: int, g2: int) -> bool:
        return bool(model.geom_contype[g1] & model.geom_conaffinity[g2] or model.geom_contype[g2] & model.geom_conaffinity[g1])

    assert all(collide(g, floor) for g in arm)
    assert not any(collide(g1, g2) for g1 in arm for g2 in arm)
    assert not any(collide(g, pedestal) for g in arm)


def test_reset_noise_on_angles_and_velocities():
    env = make_v1()
    observations = []
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        assert np.all(np.abs(obs[:6] - env.start_qpos) <= 0.01 + 1e-6)
        assert np.all(np.abs(obs[6:12]) <= 0.001 + 1e-7) and np.abs(obs[6:12]).max() > 1e-5
        observations.append(obs)
    assert not np.array_equal(observations[0], observations[1])
    env.close()


def test_stay_goal_is_the_episodes_own_start_hand_position():
    env = make_v1(task_id=STAY_TASK)
    goals = []
    for seed in (0, 1):
        _, info = env.reset(seed=seed)
        np.testing.assert_array_equal(env.goal, env.hand_pos)
        assert info["distance"] == 0.0 and not info["success_any_step"]
        goals.append(env.goal)
        _, reward, _, _, info = env.step(ZERO)  # one step of sinking: still within 0.05 of the start
        assert info["success_any_step"] and not info["is_success"] and info["stages_completed"] == 0
        assert reward == pytest.approx(-info["distance"] + motion_cost(env))
    assert np.linalg.norm(goals[0] - goals[1]) > 1e-4  # the noise moves the goal
    assert np.linalg.norm(goals[0] - env.start_hand_pos) > 1e-4
    env.close()


def test_shifted_task_gets_200_per_subgoal_reached(env_v1):
    env = make_v1(task_id=SHIFTED_TASK)
    q_a = solve_ik(env, SUBGOALS["A"])[0]
    env.reset(seed=0)
    place_hand(env, q_a)
    _, reward, _, _, info = env.step(ZERO)
    assert info["stages_completed"] == 1
    assert reward == pytest.approx(-info["distance"] - 2.0 + 200.0 + motion_cost(env))
    _, reward, _, _, info = env.step(ZERO)  # no second bonus for the same subgoal
    assert info["stages_completed"] == 1 and reward == pytest.approx(-info["distance"] - 2.0 + motion_cost(env))
    env.close()


def test_control_cost_has_the_velocity_and_acceleration_terms():
    env = make_v1(task_id=0)
    env.reset(seed=0)
    action = np.array([0.5, -1.0, 0.3, 0.0, 0.2, -0.4], dtype=np.float32)
    for _ in range(3):
        _, reward, _, _, info = env.step(action)
        assert abs(motion_cost(env)) > 1e-4  # the terms matter here
        ctrl = -0.01 * float(np.sum(action.astype(np.float64) ** 2))
        assert reward == pytest.approx(-info["distance"] - 1.2 + ctrl + motion_cost(env), rel=1e-9)
    env.close()


@pytest.mark.parametrize("version", [0, 1])
def test_first_subgoal_only_is_an_any_step_success_not_a_strict_one(version):
    """Reaching subgoal A, then letting go: the authors' metric counts the episode, the strict one does not."""
    env = gym.make("MultistageReacher-v1" if version else "MultistageReacher-v0", task_id=0)
    base = env.unwrapped.env
    q_a = solve_ik(base, SUBGOALS["A"])[0]
    _, info = env.reset(seed=0)
    assert not info["success_any_step"]
    flags = []
    for t in range(200):
        if t == 20:
            place_hand(base, q_a)
        _, _, terminated, truncated, info = env.step(ZERO)
        flags.append(info["success_any_step"])
        if terminated or truncated:
            break
    assert truncated and not terminated
    assert flags == [False] * 20 + [True] * 180  # set on the step A is reached, then kept (monotone)
    assert info["stages_completed"] == 1 and not info["is_success"] and info["success_any_step"]
    _, info = env.reset(seed=1)  # reset clears it
    assert not info["success_any_step"]
    env.close()


def test_version_is_validated():
    with pytest.raises(ValueError, match="version must be one of"):
        MultistageReacherEnv(version=2)
    with pytest.raises(ValueError, match="version must be one of"):
        gym.make(ENV_ID, version=True)


def test_v1_is_the_scene_v1_with_the_authors_task_settings(env_v1):
    assert env_v1.scene is SCENE_V1
    assert env_v1.subgoal_bonus == 200.0 and env_v1.init_vel_noise == 0.001
    assert (env_v1.vel_cost_weight, env_v1.acc_cost_weight) == (0.001, 1e-5)
    assert env_v1.goal_radius == 0.05 and env_v1.stay_steps == 30 and env_v1.frame_skip == 4
    assert env_v1.model.opt.timestep == 0.01
    np.testing.assert_allclose(env_v1.model.actuator_gear[:, 0], GEARS)
    assert TASK_SEQUENCES[SHIFTED_TASK] == "ABD"


def static_load(env: MultistageReacherEnv, qpos) -> np.ndarray:
    """Joint torques that hold ``qpos`` at rest against gravity, as fractions of the motors' maxima."""
    data = mujoco.MjData(env.model)
    data.qpos[:] = qpos
    mujoco.mj_forward(env.model, data)
    return np.abs(data.qfrc_bias) / np.array(GEARS)


@pytest.fixture(scope="module")
def subgoal_poses(env_v1):
    return {name: solve_ik(env_v1, pos)[0] for name, pos in SUBGOALS.items()}


def test_which_poses_the_arm_can_hold(env_v1, subgoal_poses):
    """The authors' link masses and 10 N m shoulder: A and B can be held, C, D and the start pose cannot."""
    assert static_load(env_v1, env_v1.start_qpos).max() > 1.0
    for name, qpos in subgoal_poses.items():
        load = static_load(env_v1, qpos)
        assert (load.max() < 1.0) == (name in "AB"), f"subgoal {name}: load {load.round(2)}"
        assert load.argmax() == 1  # always the shoulder


@pytest.mark.parametrize("task_id", range(5))
def test_a_controller_passes_through_every_subgoal(env_v1, subgoal_poses, task_id):
    """Gravity feed-forward plus joint PD on IK poses solves tasks 0-3; the stay pose cannot be held.

    Subgoals A and B are held. C and D are beyond the shoulder's strength: the controller first raises the shoulder
    0.1 rad above the subgoal pose with the elbow and wrist folded in (a pose the shoulder can hold), then unfolds
    them; the hand sweeps through the subgoal while the arm sinks. PD gains are scaled by the diagonal of the mass
    matrix, so a saturated shoulder does not disturb the other joints.
    """
    env = gym.make(ENV_ID, task_id=task_id)
    base = env.unwrapped.env
    fold = base.start_qpos[2:] + np.array([-1, 1, 1, -1]) * 0.698  # elbow and wrist at the limits that pull in
    holdable = {name: static_load(base, q).max() < 1.0 for name, q in subgoal_poses.items()}
    env.reset(seed=task_id)
    data, mass_matrix = base.data, np.zeros((6, 6))
    terminated = truncated = folded = False
    stage, steps, counted = 0, 0, 0
    while not (terminated or truncated):
        sequence = TASK_SEQUENCES[task_id]
        name = None if sequence is None else sequence[base.stage]
        if base.stage != stage:
            stage, folded = base.stage, False
        target = base.start_qpos.copy() if name is None else subgoal_poses[name].copy()
        if name is not None and not holdable[name]:
            target[1] -= 0.1
            if not folded:
                target[2:] = fold
                folded = np.abs(data.qpos - target).max() < 0.1 and np.abs(data.qvel).max() < 0.5
        mujoco.mj_fullM(base.model, mass_matrix, data.qM)
        torque = np.diag(mass_matrix) * (100.0 * (target - data.qpos) - 20.0 * data.qvel) + data.qfrc_bias
        _, _, terminated, truncated, info = env.step((np.clip(torque / np.array(GEARS), -1, 1)).astype(np.float32))
        steps += 1
        counted += info["distance"] < 0.05
    if task_id == STAY_TASK:  # gravity pulls the hand out of the goal ball within a few steps, for good
        assert truncated and info["success_any_step"] and not info["is_success"]
        assert 0 < counted < 30 and info["distance"] > 0.05
    else:
        assert terminated and info["is_success"] and info["stages_completed"] == 3
        assert steps <= 100
    env.close()
