"""Tests of the Multistage Reacher env (sb3_qmp.envs.reacher)."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering without a display; must precede `import mujoco`

import gymnasium as gym
import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")
pytest.importorskip("dm_control", reason="the Jaco model ships with dm-control")  # only located, never imported

from stable_baselines3.common.env_checker import check_env  # noqa: E402

import sb3_qmp  # noqa: E402, F401  (registers the env ids)
from sb3_qmp.envs.reacher import (  # noqa: E402
    GEARS,
    JOINT_RANGES,
    NUM_STAGES,
    PEDESTAL_HEIGHT,
    PEDESTAL_RADIUS,
    SHIFTED_TASK,
    SPARSE_TASK,
    START_QPOS,
    STAY_TASK,
    SUBGOALS,
    TASK_SEQUENCES,
    MultistageReacherEnv,
    make_env,
)

ENV_ID = "MultistageReacher-v0"
ZERO = np.zeros(6, dtype=np.float32)


def solve_ik(env: MultistageReacherEnv, target, q_init=START_QPOS, iters: int = 300, damping: float = 0.05):
    """Damped-least-squares IK of the hand site, clipped to the joint limits. Returns (qpos, error)."""
    model = env.model
    data = mujoco.MjData(model)
    site = model.site("hand").id
    jac = np.zeros((3, model.nv))
    q = np.array(q_init, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    for _ in range(iters):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        err = target - data.site_xpos[site]
        if np.linalg.norm(err) < 1e-4:
            break
        mujoco.mj_jacSite(model, data, jac, None, site)
        dq = jac.T @ np.linalg.solve(jac @ jac.T + damping**2 * np.eye(3), err)
        q = np.clip(q + dq, JOINT_RANGES[:, 0], JOINT_RANGES[:, 1])
    data.qpos[:] = q
    mujoco.mj_forward(model, data)  # also runs collision detection
    return q, float(np.linalg.norm(target - data.site_xpos[site])), int(data.ncon)


@pytest.fixture(scope="module")
def base_env():
    env = MultistageReacherEnv()
    yield env
    env.close()


@pytest.fixture(scope="module")
def ik_solutions(base_env):
    """A joint configuration per subgoal, each solved from the start pose."""
    return {name: solve_ik(base_env, pos)[0] for name, pos in SUBGOALS.items()}


def place_hand(env: MultistageReacherEnv, qpos) -> None:
    """Teleport the arm to ``qpos`` at rest (the next step() sees the hand there)."""
    env.data.qpos[:] = qpos
    env.data.qvel[:] = 0.0
    mujoco.mj_forward(env.model, env.data)


@pytest.mark.parametrize("task_id", range(5))
def test_check_env_every_task(task_id):
    env = MultistageReacherEnv(task_id=task_id)
    check_env(env)
    env.close()
    wrapped = gym.make(ENV_ID, task_id=task_id)
    check_env(wrapped)
    obs, info = wrapped.reset(seed=0)
    assert obs.shape == (16 + 5,)
    assert info["task_id"] == task_id
    np.testing.assert_array_equal(obs[-5:], np.eye(5)[task_id])
    wrapped.close()


def test_registered_env_spaces_and_time_limit():
    env = gym.make(ENV_ID)
    assert env.spec.max_episode_steps == 200
    assert env.action_space.shape == (6,)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    env.reset(seed=1)
    steps, truncated = 0, False
    while not truncated:  # zero torque: the gravity-compensated arm stays put and never finishes a goal task
        _, _, terminated, truncated, _ = env.step(ZERO)
        steps += 1
        if terminated:  # only the stay task can finish on its own
            assert env.unwrapped.task_id == STAY_TASK
            break
    assert steps in (90, 200)
    env.close()


def test_observation_layout():
    env = MultistageReacherEnv(task_id=0)
    obs, info = env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == (16,)
    np.testing.assert_allclose(obs[:6], env.data.qpos, atol=1e-6)
    np.testing.assert_allclose(obs[6:12], env.data.qvel, atol=1e-6)
    np.testing.assert_array_equal(obs[12:], [1, 0, 0, 0])
    # start pose perturbed by at most 0.01 per joint, at rest
    assert np.all(np.abs(obs[:6] - START_QPOS) <= 0.01 + 1e-6)
    assert not obs[6:12].any()
    assert set(info) == {"is_success", "success_any_step", "stages_completed", "distance"}
    assert info["is_success"] is False and info["success_any_step"] is False and info["stages_completed"] == 0
    assert info["distance"] == pytest.approx(np.linalg.norm(env.hand_pos - np.array(SUBGOALS["A"])))
    env.close()


def test_deterministic_reset_and_rollout():
    env1, env2 = MultistageReacherEnv(task_id=2), MultistageReacherEnv(task_id=2)
    o1, _ = env1.reset(seed=123)
    o2, _ = env2.reset(seed=123)
    np.testing.assert_array_equal(o1, o2)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(30, 6)).astype(np.float32)
    for a in actions:
        r1 = env1.step(a)
        r2 = env2.step(a)
        np.testing.assert_array_equal(r1[0], r2[0])
        assert r1[1] == r2[1]
    o3, _ = env2.reset(seed=124)
    assert not np.array_equal(o1, o3)
    # after the same seed, unseeded resets continue the same stream
    env1.reset(seed=7)
    env2.reset(seed=7)
    np.testing.assert_array_equal(env1.reset()[0], env2.reset()[0])
    env1.close()
    env2.close()


@pytest.mark.parametrize("name", sorted(SUBGOALS))
def test_every_subgoal_is_reachable(base_env, name):
    q, err, ncon = solve_ik(base_env, SUBGOALS[name])
    assert err < 0.01, f"subgoal {name} unreachable (IK error {err:.3f})"
    assert np.all(q >= JOINT_RANGES[:, 0]) and np.all(q <= JOINT_RANGES[:, 1])
    assert ncon == 0, f"IK solution for subgoal {name} is in collision"


def test_pedestal_supports_the_base(base_env):
    """The arm stands on a fixed cylinder whose top face is the base's bottom face (z = 0); the floor is below."""
    model, data = base_env.model, base_env.data
    place_hand(base_env, START_QPOS)
    pedestal = model.geom("pedestal")
    assert pedestal.type[0] == mujoco.mjtGeom.mjGEOM_CYLINDER
    assert model.geom_bodyid[pedestal.id] == 0  # fixed to the world
    radius, half_height = pedestal.size[:2]
    assert radius == pytest.approx(PEDESTAL_RADIUS) and 2 * half_height == pytest.approx(PEDESTAL_HEIGHT)
    centre = data.geom_xpos[pedestal.id]
    np.testing.assert_allclose(data.geom_xmat[pedestal.id].reshape(3, 3), np.eye(3), atol=1e-12)  # upright
    assert centre[0] == centre[1] == 0.0
    top, bottom = centre[2] + half_height, centre[2] - half_height
    # the base mesh, in world coordinates, rests on the top face and lies within its radius
    base = model.geom("base")
    mesh = base.dataid[0]
    verts = model.mesh_vert[model.mesh_vertadr[mesh] : model.mesh_vertadr[mesh] + model.mesh_vertnum[mesh]]
    verts = verts @ data.geom_xmat[base.id].reshape(3, 3).T + data.geom_xpos[base.id]
    assert top == pytest.approx(0.0) and verts[:, 2].min() == pytest.approx(top, abs=1e-3)
    assert np.hypot(verts[:, 0], verts[:, 1]).max() < radius
    # the floor is the pedestal's bottom face; subgoals stay in the base frame, above the pedestal
    assert data.geom_xpos[model.geom("floor").id][2] == pytest.approx(bottom)
    assert all(pos[2] > top for pos in SUBGOALS.values())
    # the arm links can hit the pedestal (contact masks match), but base and pedestal touch without contact
    link = model.geom("link_3").id
    assert model.geom_contype[pedestal.id] & model.geom_conaffinity[link] or (
        model.geom_contype[link] & model.geom_conaffinity[pedestal.id]
    )
    assert data.ncon == 0


def test_start_pose_is_collision_free_and_away_from_subgoals(base_env):
    place_hand(base_env, START_QPOS)
    assert base_env.data.ncon == 0
    for pos in SUBGOALS.values():
        assert np.linalg.norm(base_env.start_hand_pos - np.array(pos)) > 0.2


@pytest.mark.parametrize("task_id", [0, 1, 2, 3])
def test_reaching_subgoals_advances_stages_to_success(ik_solutions, task_id):
    env = make_env(task_id=task_id)  # the registered entry point: base env inside MultiTaskWrapper
    base = env.unwrapped.env
    obs, _ = env.reset(seed=0)
    for stage, name in enumerate(TASK_SEQUENCES[task_id]):
        np.testing.assert_array_equal(obs[12:16], np.eye(NUM_STAGES + 1)[stage])
        np.testing.assert_array_equal(base.goal, SUBGOALS[name])
        place_hand(base, ik_solutions[name])
        obs, reward, terminated, truncated, info = env.step(ZERO)
        assert info["distance"] < 0.05
        assert info["stages_completed"] == stage + 1
        assert terminated == (stage + 1 == NUM_STAGES) and not truncated
        assert info["is_success"] == (stage + 1 == NUM_STAGES)
        assert info["success_any_step"]  # from the first subgoal on
        remaining = NUM_STAGES - (stage + 1)
        if task_id == SHIFTED_TASK:
            assert reward == pytest.approx(-info["distance"] - 2.0 + base.subgoal_bonus)
        elif task_id == SPARSE_TASK:
            assert reward == pytest.approx(-0.4 * remaining)
        else:
            assert reward == pytest.approx(-info["distance"] - 0.4 * remaining)
    np.testing.assert_array_equal(obs[12:16], [0, 0, 0, 1])  # the "done" stage
    env.close()


@pytest.mark.parametrize("task_id", range(5))
def test_joint_pd_controller_solves_every_task_within_time_limit(ik_solutions, task_id):
    """The motors are strong enough: a saturated joint-space PD controller on IK targets finishes in time.

    The gains act through the arm's mass matrix (critically damped at 10 rad/s on every joint): with the
    authors' light joints (armature 0.01) fixed per-joint gains would be unstable on the wrist at 25 Hz.
    """
    env = gym.make(ENV_ID, task_id=task_id)
    base = env.unwrapped.env
    env.reset(seed=task_id)
    targets = {name: ik_solutions[name] for name in SUBGOALS}
    mass_matrix = np.zeros((6, 6))
    terminated = truncated = False
    steps = 0
    while not (terminated or truncated):
        seq = TASK_SEQUENCES[task_id]
        q_goal = START_QPOS if seq is None else targets[seq[base.stage]]
        mujoco.mj_fullM(base.model, mass_matrix, base.data.qM)
        torque = mass_matrix @ (100.0 * (q_goal - base.data.qpos) - 20.0 * base.data.qvel)
        action = np.clip(torque / np.array(GEARS), -1.0, 1.0)
        _, _, terminated, truncated, info = env.step(action.astype(np.float32))
        steps += 1
    assert terminated and info["is_success"] and info["stages_completed"] == 3
    assert steps <= (90 if task_id == STAY_TASK else 60), "every subgoal sequence takes well under the 200-step limit"
    env.close()


def test_joint_dynamics_are_the_authors_and_configurable():
    env = MultistageReacherEnv()
    np.testing.assert_allclose(env.model.dof_damping, 0.5)
    np.testing.assert_allclose(env.model.dof_armature, 0.01)
    np.testing.assert_allclose(env.model.dof_frictionloss, 0.0)
    hardware = MultistageReacherEnv(joint_armature=2.0, joint_frictionloss=1.0)
    np.testing.assert_allclose(hardware.model.dof_armature, 2.0)
    np.testing.assert_allclose(hardware.model.dof_frictionloss, 1.0)
    # Random torques explore the workspace (the point of the authors' light joints); zero torque holds still.
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    hands = [env.step(rng.uniform(-1, 1, 6).astype(np.float32)) and env.hand_pos for _ in range(200)]
    assert np.ptp(np.array(hands), axis=0).max() > 0.5
    env.reset(seed=0)
    start = env.hand_pos
    for _ in range(50):
        env.step(np.zeros(6, dtype=np.float32))
    assert np.linalg.norm(env.hand_pos - start) < 1e-3
    with pytest.raises(ValueError, match="must be >= 0"):
        MultistageReacherEnv(joint_damping=-1.0)


def test_no_stage_advance_away_from_goal(ik_solutions):
    env = MultistageReacherEnv(task_id=0)
    env.reset(seed=0)
    place_hand(env, ik_solutions["B"])  # B is the second subgoal of task 0, not the current one
    _, reward, terminated, _, info = env.step(ZERO)
    assert info["stages_completed"] == 0 and not terminated and not info["is_success"]
    assert info["distance"] > 0.2
    assert reward == pytest.approx(-info["distance"] - 1.2)
    env.close()


def test_sparse_task_reward_has_no_distance_term(ik_solutions):
    env = MultistageReacherEnv(task_id=SPARSE_TASK)  # goals B, C, A
    rewards, distances = [], []
    action = np.full(6, 0.5, dtype=np.float32)
    for q in (START_QPOS, ik_solutions["A"], ik_solutions["D"]):
        env.reset(seed=0)
        place_hand(env, q)
        _, reward, _, _, info = env.step(action)
        assert info["stages_completed"] == 0
        rewards.append(reward)
        distances.append(info["distance"])
    assert max(distances) - min(distances) > 0.05  # the hand distances really differ ...
    assert rewards == pytest.approx([-1.2 - 0.01 * 6 * 0.25] * 3)  # ... the rewards do not
    # the dense twin (task 0) does see the distance
    env.set_task(0)
    env.reset(seed=0)
    place_hand(env, ik_solutions["D"])
    _, reward, _, _, info = env.step(ZERO)
    assert reward == pytest.approx(-info["distance"] - 1.2)
    env.close()


def test_shifted_task_bonus_is_one_time(ik_solutions):
    env = MultistageReacherEnv(task_id=SHIFTED_TASK, subgoal_bonus=7.0)
    env.reset(seed=0)
    place_hand(env, ik_solutions["A"])
    _, r_reach, _, _, info = env.step(ZERO)
    assert info["stages_completed"] == 1 and r_reach == pytest.approx(-info["distance"] - 2.0 + 7.0)
    _, r_next, _, _, info = env.step(ZERO)  # still at A, now heading for B: no bonus again
    assert info["stages_completed"] == 1 and r_next == pytest.approx(-info["distance"] - 2.0)
    env.close()


def test_stay_task_counts_steps_near_start():
    env = MultistageReacherEnv(task_id=STAY_TASK)
    env.reset(seed=5)
    np.testing.assert_allclose(env.goal, env.start_hand_pos)
    far = START_QPOS + np.array([0.6, -0.3, 0.3, 0.0, 0.0, 0.0])
    counted = 0
    stages = []
    for t in range(140):
        away = 40 <= t < 60  # 20 steps with the hand far from the goal do not count
        if away:
            place_hand(env, far)
        elif t == 60:
            place_hand(env, START_QPOS)
        obs, reward, terminated, _, info = env.step(ZERO)
        if away:
            assert info["distance"] > 0.05
        else:
            assert info["distance"] < 0.05
            counted += 1
        assert reward == pytest.approx(-info["distance"])
        assert info["success_any_step"]  # set at the first step (the hand starts at the goal), then kept
        assert info["stages_completed"] == min(counted // 30, 3)
        assert np.argmax(obs[12:16]) == info["stages_completed"]
        stages.append(info["stages_completed"])
        if terminated:
            break
    assert terminated and info["is_success"] and counted == 90
    assert t == 90 + 20 - 1
    assert stages.index(1) == 29 and stages.index(2) == 59 + 20
    env.close()


def test_bad_input_raises():
    env = MultistageReacherEnv()
    with pytest.raises(ValueError, match="out of range"):
        env.set_task(5)
    with pytest.raises(TypeError):
        env.set_task("0")
    with pytest.raises(ValueError, match="unknown options"):
        env.reset(options={"goal": (0, 0, 0)})
    with pytest.raises(ValueError, match="out of range"):
        env.reset(options={"task_id": -1})
    env.reset(options={"task_id": 3})
    assert env.task_id == 3
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.full(6, np.nan))
    with pytest.raises(ValueError, match="render_mode"):
        MultistageReacherEnv(render_mode="human")
    with pytest.raises(ValueError, match="frame_skip"):
        MultistageReacherEnv(frame_skip=0)
    with pytest.raises(ValueError, match="out of range"):
        make_env(task_id=9)
    with pytest.raises(ValueError, match="out of range"):
        gym.make(ENV_ID).reset(options={"task_id": 5})
    env.close()


def test_wrapper_reset_option_selects_task():
    env = gym.make(ENV_ID)
    _, info = env.reset(seed=0, options={"task_id": 3})
    assert info["task_id"] == 3 and env.unwrapped.env.task_id == 3
    np.testing.assert_array_equal(env.unwrapped.env.goal, SUBGOALS["B"])
    env.close()


def test_render_rgb_array():
    env = gym.make(ENV_ID, task_id=0, render_mode="rgb_array", width=96, height=64)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (64, 96, 3) and frame.dtype == np.uint8
    assert frame.std() > 5  # not a blank image
    env.close()
    assert MultistageReacherEnv().render() is None
