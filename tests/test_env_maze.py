"""Tests of the Maze Navigation task set (sb3_qmp.envs.maze)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium_robotics.envs.maze.maps import LARGE_MAZE
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sb3_qmp  # noqa: F401  (registers the env ids)
from sb3_qmp.envs.maze import TASK_CELLS, MazeNavigationEnv, make_env, maze_distances

NUM_TASKS = 10
#: D4RL's LARGE_MAZE (d4rl/pointmaze/maze_model.py), row by row: '#' wall, 'O' free, 'G' its default goal.
D4RL_LARGE_MAZE = [
    "############",
    "#OOOO#OOOOO#",
    "#O##O#O#O#O#",
    "#OOOOOO#OOO#",
    "#O####O###O#",
    "#OO#O#OOOOO#",
    "##O#O#O#O###",
    "#OO#OOO#OGO#",
    "############",
]
#: The authors' task file (qmp environments/maze/asset/large/large_10t_train_goals.csv): the ball's D4RL
#: qpos at start and goal, per task.
AUTHORS_QPOS = [
    ((1, 3), (5, 8)),
    ((1, 10), (2, 4)),
    ((4, 1), (1, 7)),
    ((7, 4), (4, 10)),
    ((1, 3), (7, 4)),
    ((1, 7), (7, 10)),
    ((5, 4), (7, 9)),
    ((7, 1), (2, 6)),
    ((1, 2), (3, 10)),
    ((7, 2), (6, 8)),
]


def d4rl_world_to_gymnasium(xy: np.ndarray) -> np.ndarray:
    """D4RL's world (x, y) -> gymnasium-robotics' world (x, y) of the same maze point.

    D4RL: wall of map[i][j] at (i + 1, j + 1). gymnasium-robotics: at (j + 0.5 - 6, 4.5 - (i + 0.5)).
    Hence x_gym = y_d4rl - 6.5, y_gym = 5 - x_d4rl (a rotation by -90 degrees plus a shift).
    """
    return np.array([xy[1] - 6.5, 5.0 - xy[0]])


def authors_position(qpos: tuple[int, int]) -> np.ndarray:
    """Where the authors' ball is for a D4RL qpos: its body sits at (1.2, 1.2), so world = qpos + 1.2."""
    return d4rl_world_to_gymnasium(np.asarray(qpos, dtype=float) + 1.2)


@pytest.fixture(scope="module")
def base_env() -> Iterator[MazeNavigationEnv]:
    env = MazeNavigationEnv()
    yield env
    env.close()


def test_task_set_layout() -> None:
    assert MazeNavigationEnv.num_tasks == NUM_TASKS == len(MazeNavigationEnv.task_names)
    assert len(LARGE_MAZE) == 9 and all(len(row) == 12 for row in LARGE_MAZE)
    for start, goal in TASK_CELLS:
        assert LARGE_MAZE[start[0]][start[1]] == 0, start
        assert LARGE_MAZE[goal[0]][goal[1]] == 0, goal
    assert [maze_distances(g)[s] for s, g in TASK_CELLS] == [9, 9, 9, 9, 11, 11, 11, 12, 14, 15]


def test_maze_distances_are_moves_through_open_cells() -> None:
    distances = maze_distances((1, 1))
    open_cells = {(r, c) for r, row in enumerate(LARGE_MAZE) for c, v in enumerate(row) if v != 1}
    assert set(distances) == open_cells  # the large maze is connected; walls have no distance
    for (r, c), d in distances.items():  # each cell is one move further than its closest open neighbour
        neighbours = [distances[n] for n in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)) if n in distances]
        assert d == (0 if (r, c) == (1, 1) else min(neighbours) + 1)
    with pytest.raises(ValueError, match="wall"):
        maze_distances((0, 0))


@pytest.mark.parametrize("task_id", range(NUM_TASKS))
def test_check_env_every_task(base_env: MazeNavigationEnv, task_id: int) -> None:
    base_env.set_task(task_id)
    gym_check_env(base_env, skip_render_check=True)
    env = gym.make("MazeNavigation-v0", task_id=task_id)
    assert env.spec is not None and env.spec.max_episode_steps == 600
    sb3_check_env(env.unwrapped, warn=True)
    obs, info = env.reset(seed=task_id)
    assert obs.shape == (4 + NUM_TASKS,) and obs.dtype == np.float32
    assert obs[4 + task_id] == 1.0 and obs[4:].sum() == 1.0
    assert info["task_id"] == task_id
    env.close()


def test_d4rl_and_gymnasium_frames_hold_the_same_maze(base_env: MazeNavigationEnv) -> None:
    """The frame map used below sends every D4RL wall onto gymnasium-robotics' wall of the same cell."""
    assert [[1 if ch == "#" else 0 for ch in row] for row in D4RL_LARGE_MAZE] == LARGE_MAZE
    model = base_env.maze_env.point_env.model
    walls = 0
    for i, row in enumerate(D4RL_LARGE_MAZE):
        for j, ch in enumerate(row):
            if ch == "#":
                pos = model.geom(f"block_{i}_{j}").pos[:2]
                np.testing.assert_allclose(pos, d4rl_world_to_gymnasium(np.array([i + 1.0, j + 1.0])), atol=1e-12)
                walls += 1
    assert walls == sum(map(sum, LARGE_MAZE))
    # The authors' task file is this package's task table.
    assert [tuple(map(tuple, t)) for t in AUTHORS_QPOS] == list(TASK_CELLS)


def test_start_and_goal_are_the_authors_positions(base_env: MazeNavigationEnv) -> None:
    # Worked examples (task 0: cell (1, 3) has its centre at (-2.5, 3.0), goal cell (5, 8) at (2.5, -1.0)).
    np.testing.assert_allclose(base_env.task_positions(0)[0], [-2.3, 2.8], atol=1e-12)
    np.testing.assert_allclose(base_env.task_positions(0)[1], [2.7, -1.2], atol=1e-12)
    np.testing.assert_allclose(base_env.task_positions(9)[1], [2.7, -2.2], atol=1e-12)
    for task_id, (start_qpos, goal_qpos) in enumerate(AUTHORS_QPOS):
        start, goal = base_env.task_positions(task_id)
        np.testing.assert_allclose(start, authors_position(start_qpos), atol=1e-12)
        np.testing.assert_allclose(goal, authors_position(goal_qpos), atol=1e-12)
        # In gymnasium-robotics' x, y: the cell centre plus (+0.2, -0.2).
        np.testing.assert_allclose(start - base_env.cell_xy(TASK_CELLS[task_id][0]), [0.2, -0.2], atol=1e-12)
        base_env.set_task(task_id)
        for seed in range(3):
            obs, info = base_env.reset(seed=seed)
            assert np.all(np.abs(obs[:2] - start) <= 0.1 + 1e-6)
            np.testing.assert_array_equal(base_env.goal, goal)  # the goal is exact
            assert info["is_success"] is False and info["success_any_step"] is False
            # The red target site is drawn on the exact goal.
            site = base_env.maze_env.point_env.model.site_pos[base_env.maze_env.target_site_id]
            np.testing.assert_allclose(site[:2], goal)
    centred = MazeNavigationEnv(task_id=3, cell_offset=0.0)
    np.testing.assert_array_equal(centred.task_positions()[0], centred.cell_xy(TASK_CELLS[3][0]))
    centred.close()


def test_start_noise_and_velocity_noise() -> None:
    """Start: U(-0.1, 0.1) around the authors' point; velocity: N(0, 0.1) per axis (D4RL's reset)."""
    env = MazeNavigationEnv(task_id=2)
    start = env.task_positions()[0]
    obs = np.array([env.reset(seed=seed)[0] for seed in range(600)], dtype=np.float64)
    offsets, velocities = obs[:, :2] - start, obs[:, 2:]
    assert np.abs(offsets).max() <= 0.1 + 1e-6 and np.abs(offsets).max() > 0.09
    assert abs(offsets.std() - 0.1 / math.sqrt(3)) < 0.005  # std of U(-0.1, 0.1)
    assert np.abs(velocities.mean(axis=0)).max() < 0.015
    np.testing.assert_allclose(velocities.std(axis=0), 0.1, atol=0.01)
    assert np.abs(velocities).max() > 0.25  # Gaussian tails, not a uniform of width 0.1
    env.close()
    quiet = MazeNavigationEnv(task_id=2, start_noise=0.0, velocity_noise=0.0)
    obs, _ = quiet.reset(seed=0)
    np.testing.assert_array_equal(obs[:2], start.astype(np.float32))
    np.testing.assert_array_equal(obs[2:], 0.0)
    quiet.close()


def test_success_metrics_are_equal_and_end_the_episode() -> None:
    """Maze episodes end at success, so the strict and the any-step success agree at every step."""
    env = gym.make("MazeNavigation-v0", task_id=0)
    _, info = env.reset(seed=0)
    assert info["is_success"] is False and info["success_any_step"] is False
    base = env.unwrapped.env  # type: ignore[attr-defined]
    goal = base.goal
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, _, terminated, _, info = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
        assert info["is_success"] is info["success_any_step"] is False and not terminated
    data = base.maze_env.data
    data.qpos[:2] = goal + np.array([0.2, 0.1])
    data.qvel[:] = 0.0
    mujoco.mj_forward(base.maze_env.model, data)
    _, _, terminated, _, info = env.step(np.zeros(2, dtype=np.float32))
    assert terminated and info["is_success"] is True and info["success_any_step"] is True
    env.close()


def test_seeded_reset_is_reproducible() -> None:
    def rollout(seed: int) -> np.ndarray:
        env = gym.make("MazeNavigation-v0")
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        trace = [obs]
        for _ in range(30):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            trace.append(obs)
            if terminated or truncated:
                trace.append(env.reset()[0])
        trace.append(env.reset()[0])  # unseeded reset continues the seeded stream
        env.close()
        return np.array(trace)

    np.testing.assert_array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3)[0], rollout(4)[0])


def test_reward_formula_and_termination(base_env: MazeNavigationEnv) -> None:
    base_env.set_task(0)
    base_env.reset(seed=0)
    goal = base_env.goal
    _, reward, terminated, truncated, info = base_env.step(np.array([0.3, -0.2], dtype=np.float32))
    dist = float(np.linalg.norm(base_env.maze_env.data.qpos[:2] - goal))
    assert reward == pytest.approx(math.exp(-dist) - 1.0)
    assert reward < 0.0
    assert info["distance"] == pytest.approx(dist)
    assert not terminated and not truncated and info["is_success"] is False

    # Teleport the ball close to the goal: the next step terminates with success.
    data, model = base_env.maze_env.data, base_env.maze_env.model
    data.qpos[:2] = goal + np.array([0.3, 0.0])
    data.qvel[:] = 0.0
    mujoco.mj_forward(model, data)
    _, reward, terminated, truncated, info = base_env.step(np.zeros(2, dtype=np.float32))
    assert terminated and not truncated and info["is_success"] is True
    assert info["distance"] <= 0.5
    assert reward == pytest.approx(math.exp(-info["distance"]) - 1.0)

    # Just outside the success radius: no termination.
    base_env.reset(seed=0)
    data.qpos[:2] = goal + np.array([0.0, 0.56])
    data.qvel[:] = 0.0
    mujoco.mj_forward(model, data)
    _, _, terminated, _, info = base_env.step(np.zeros(2, dtype=np.float32))
    assert info["distance"] > 0.5 and not terminated and info["is_success"] is False


def test_step_matches_gymnasium_robotics_point_env() -> None:
    """The lean step reproduces PointEnv.step bit for bit (wall contacts included)."""
    ours = MazeNavigationEnv(start_noise=0.0)
    ours.reset(seed=0)
    ref = MazeNavigationEnv(start_noise=0.0)
    ref.reset(seed=0)
    assert np.all(ours.maze_env.data.qvel != 0.0)  # the same seeded initial velocity in both
    actions = np.clip(np.random.default_rng(0).normal(0.5, 1.0, size=(400, 2)), -1.5, 1.5)
    for action in actions:
        obs, *_ = ours.step(action)
        ref_obs = ref.maze_env.point_env.step(action)[0]
        np.testing.assert_array_equal(obs, ref_obs.astype(np.float32))
        np.testing.assert_array_equal(ours.maze_env.data.qpos, ref.maze_env.data.qpos)
        np.testing.assert_array_equal(ours.maze_env.data.qvel, ref.maze_env.data.qvel)
        assert ours.observation_space.contains(obs)
    ours.close()
    ref.close()


def test_time_limit_truncates() -> None:
    env = gym.make("MazeNavigation-v0", task_id=9)
    env.reset(seed=0)
    for t in range(600):
        _, _, terminated, truncated, _ = env.step(np.zeros(2, dtype=np.float32))
        assert not terminated
        assert truncated == (t == 599)
    env.close()


def test_bad_inputs(base_env: MazeNavigationEnv) -> None:
    with pytest.raises(ValueError, match="out of range"):
        base_env.set_task(10)
    with pytest.raises(TypeError, match="task_id must be an int"):
        base_env.set_task("0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        MazeNavigationEnv(task_id=-1)
    with pytest.raises(ValueError, match="takes no options"):
        base_env.reset(options={"goal_cell": (1, 1)})
    with pytest.raises(ValueError, match="render_mode"):
        MazeNavigationEnv(render_mode="human")
    with pytest.raises(ValueError, match="velocity_noise must be >= 0"):
        MazeNavigationEnv(velocity_noise=-0.1)
    with pytest.raises(ValueError, match="inside a wall"):
        MazeNavigationEnv(cell_offset=0.3, start_noise=0.1)
    with pytest.raises(ValueError, match="shape"):
        base_env.reset(seed=0)
        base_env.step(np.zeros(3))
    env = make_env()
    with pytest.raises(ValueError, match="out of range"):
        env.reset(options={"task_id": 12})
    with pytest.raises(ValueError, match="takes no options"):
        env.reset(options={"task_id": 1, "reset_cell": (1, 1)})
    with pytest.raises(ValueError, match="out of range"):
        gym.make("MazeNavigation-v0", task_id=10)
    env.close()


def test_random_task_per_episode_and_render() -> None:
    env = make_env(render_mode="rgb_array", width=96, height=72)
    seen = {env.reset(seed=s)[1]["task_id"] for s in range(40)}
    assert len(seen) >= 8
    _, info = env.reset(options={"task_id": 4})
    assert info["task_id"] == 4 and env.env.unwrapped.task_id == 4  # type: ignore[attr-defined]
    img = env.render()
    assert img.shape == (72, 96, 3) and img.dtype == np.uint8 and img.std() > 0
    env.close()


def test_leaves_no_model_file_in_the_temp_folder() -> None:
    # gymnasium-robotics writes one MuJoCo XML file per maze instance into the temp folder; the env removes it.
    env = MazeNavigationEnv(task_id=0, render_mode="rgb_array", width=32, height=24)
    assert not os.path.exists(env.maze_env.tmp_xml_file_path)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.render().shape == (24, 32, 3)  # rendering needs only the loaded model
    env.close()
