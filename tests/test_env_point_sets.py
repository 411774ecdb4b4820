"""The point-mass task sets of the sharing study: DetourPoint-v0, ManyGoalPoint-v0, ConflictPoint-v0."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sb3_qmp
from sb3_qmp import make_multitask_vec_env
from sb3_qmp.envs.conflict_point import ConflictPointEnv
from sb3_qmp.envs.detour_point import DetourPointEnv
from sb3_qmp.envs.many_goal_point import ManyGoalPointEnv
from sb3_qmp.envs.point import PointTasksEnv

SETS = {"DetourPoint-v0": (4, 40), "ManyGoalPoint-v0": (12, 30), "ConflictPoint-v0": (4, 30)}


def towards(goal: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The scripted behaviour "head for ``goal`` at full speed"."""
    return lambda pos: np.clip((goal - pos) / 0.2, -1.0, 1.0).astype(np.float32)


def run(env_id: str, task: int, script: Callable[[np.ndarray], np.ndarray] | list[Callable], seed: int = 0):
    """Run one episode; ``script`` is one behaviour or one per step (the last one repeats). Returns the positions,
    rewards, infos, and whether it terminated."""
    env = gym.make(env_id, task_id=task)
    obs, info = env.reset(seed=seed)
    assert info["is_success"] is False and info["success_any_step"] is False
    positions, rewards, infos = [obs[:2]], [], []
    scripts = script if isinstance(script, list) else [script]
    for t in range(env.spec.max_episode_steps):  # type: ignore[union-attr]
        obs, reward, terminated, truncated, info = env.step(scripts[min(t, len(scripts) - 1)](obs[:2]))
        positions.append(obs[:2])
        rewards.append(reward)
        infos.append(info)
        assert info["is_success"] is info["success_any_step"] is terminated
        if terminated or truncated:
            break
    env.close()
    return np.array(positions), np.array(rewards), infos, terminated


@pytest.mark.parametrize("env_id", list(SETS))
def test_registered_and_checked(env_id: str) -> None:
    num_tasks, limit = SETS[env_id]
    env = gym.make(env_id)
    assert env.spec is not None and env.spec.max_episode_steps == limit
    assert env.unwrapped.num_tasks == num_tasks  # type: ignore[attr-defined]
    assert env_id in sb3_qmp.envs.package_env_ids()
    for task in (0, num_tasks - 1):
        base = gym.make(env_id, task_id=task).unwrapped
        gym_check_env(base, skip_render_check=True)
        sb3_check_env(base, warn=True)
    venv = make_multitask_vec_env(env_id, n_envs_per_task=1, seed=0)
    assert venv.num_envs == num_tasks and venv.observation_space.shape == (2 + num_tasks,)
    frame = gym.make(env_id, task_id=0, render_mode="rgb_array")
    frame.reset(seed=0)
    assert frame.render().shape == (64, 64, 3)  # type: ignore[union-attr]


def test_detour_wall_blocks_the_straight_line_and_the_route_through_the_gap_succeeds() -> None:
    goal = DetourPointEnv.goals[3]
    # Straight for the goal: the wall at y = 0.3 (x <= 0.5) stops it below, and the step cost stays -1.
    positions, rewards, _, terminated = run("DetourPoint-v0", 3, towards(goal))
    assert not terminated and positions[:, 1].max() < 0.3
    np.testing.assert_array_equal(rewards, -1.0)  # sparse: no distance signal
    # Task 2's behaviour (north-east) for 5 steps, then for the goal: through the gap, then back west.
    route = [towards(DetourPointEnv.goals[2])] * 5 + [towards(goal)]
    positions, rewards, infos, terminated = run("DetourPoint-v0", 3, route)
    assert terminated and np.linalg.norm(positions[-1] - goal) <= 0.15
    assert (positions[:, 0] > 0.5).any() and positions[-1, 1] > 0.3  # went round the wall's east end
    # Task 2's behaviour throughout goes to its own corner and never succeeds for task 3.
    _, _, _, terminated = run("DetourPoint-v0", 3, towards(DetourPointEnv.goals[2]))
    assert not terminated
    # The dense tasks reach their goals with their own behaviour; reward -1 - distance.
    for task in range(3):
        positions, rewards, infos, terminated = run("DetourPoint-v0", task, towards(DetourPointEnv.goals[task]))
        assert terminated
        np.testing.assert_allclose(rewards, [-1.0 - info["distance"] for info in infos], atol=1e-6)


def test_walls_slide_and_block_from_both_sides() -> None:
    env = DetourPointEnv()
    env.reset(seed=0)
    below, above = np.array([0.0, 0.2], np.float32), np.array([0.0, 0.4], np.float32)
    np.testing.assert_allclose(env.move(below, np.array([1.0, 1.0])), [0.2, 0.2])  # slides east under the wall
    np.testing.assert_allclose(env.move(above, np.array([-1.0, -1.0])), [-0.2, 0.4])  # slides west on top
    np.testing.assert_allclose(env.move(np.array([0.6, 0.2], np.float32), np.array([0.0, 1.0])), [0.6, 0.4])  # gap


def test_many_goal_structure_and_sparse_partners() -> None:
    goals, sparse = ManyGoalPointEnv.goals, ManyGoalPointEnv.sparse
    assert len(goals) == 12 and sparse.sum() == 2 and not sparse[:10].any()
    np.testing.assert_allclose(np.linalg.norm(goals, axis=1), 0.8, atol=1e-6)
    dense = goals[:10]
    gaps = np.linalg.norm(dense[:, None] - dense[None], axis=-1) + np.eye(10)
    assert gaps.min() > 0.45  # ten distinct goals, none within reach of another's success radius
    np.testing.assert_allclose(goals[10], goals[0])
    np.testing.assert_allclose(goals[11], goals[5])
    for task in (10, 11):
        _, rewards, _, terminated = run("ManyGoalPoint-v0", task, towards(goals[task]))
        assert terminated and (rewards == -1.0).all()
        _, _, _, terminated = run("ManyGoalPoint-v0", task, towards(goals[3]))  # an unrelated behaviour
        assert not terminated


def test_conflict_other_goals_are_traps() -> None:
    goals = ConflictPointEnv.goals
    for task in range(4):
        positions, rewards, infos, terminated = run("ConflictPoint-v0", task, towards(goals[task]))
        assert terminated  # the own behaviour succeeds, off every trap: plain dense reward
        np.testing.assert_allclose(rewards, [-1.0 - info["distance"] for info in infos], atol=1e-6)
    # Task 0 with task 1's behaviour: into task 1's goal region, which costs 5 more per step there.
    positions, rewards, infos, terminated = run("ConflictPoint-v0", 0, towards(goals[1]))
    assert not terminated
    in_trap = np.linalg.norm(positions[1:] - goals[1], axis=1) <= 0.3
    assert in_trap.sum() > 10
    np.testing.assert_allclose(rewards, [-1.0 - info["distance"] for info in infos] - 5.0 * in_trap, atol=1e-6)


def test_point_tasks_env_checks_its_table() -> None:
    class Broken(PointTasksEnv):
        goals = np.zeros((3, 2), dtype=np.float32)
        num_tasks = 3

    with pytest.raises(ValueError, match="one entry per task"):
        Broken()


def test_scripted_sharing_script() -> None:
    from conftest import load_script

    module = load_script("scripted_sharing")
    table = module.main(["--env", "DetourPoint-v0", "--task", "3", "--steps", "5", "--episodes", "10"])
    rows = [line for line in table.splitlines() if line.startswith("| task ")]
    assert len(rows) == 4 and "| k=5 | k=all |" in table
    # Task 2's behaviour for 5 steps often leads to task 3's goal (about half the episodes), for the whole episode
    # never; neither does the straight line.
    assert float(rows[2].split("|")[2].split()[0]) >= 0.3
    assert rows[2].split("|")[3].strip().startswith("0.000") and rows[3].split("|")[3].strip().startswith("0.000")
    with pytest.raises(SystemExit):
        module.main(["--env", "DetourPoint-v0", "--task", "7"])
