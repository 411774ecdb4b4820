"""MultiTaskReplayBuffer: per-task ring buffers that stay an SB3 ReplayBuffer."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer

from sb3_qmp.common.buffers import MultiTaskReplayBuffer

T, D = 3, 2
OBS_SPACE = spaces.Box(-10, 10, shape=(D + T,), dtype=np.float32)
ACT_SPACE = spaces.Box(-1, 1, shape=(1,), dtype=np.float32)


def make_obs(tasks, value):
    obs = np.zeros((len(tasks), D + T), dtype=np.float32)
    obs[:, 0] = value
    obs[np.arange(len(tasks)), D + np.asarray(tasks)] = 1.0
    return obs


def add(buffer, tasks, value):
    obs = make_obs(tasks, value)
    n = len(tasks)
    infos = [{"TimeLimit.truncated": value % 2 == 0} for _ in range(n)]
    buffer.add(obs, obs + 1, np.full((n, 1), value / 100), np.full(n, value), np.ones(n), infos)


def test_rows_go_to_their_tasks_ring_buffer():
    buffer = MultiTaskReplayBuffer(4, OBS_SPACE, ACT_SPACE, n_envs=5, num_tasks=T)
    assert isinstance(buffer, ReplayBuffer)
    add(buffer, [0, 2, 0, 1, 0], value=1)
    np.testing.assert_array_equal(buffer.task_sizes(), [3, 1, 1])
    np.testing.assert_array_equal(buffer.rewards[0, :3], 1)
    add(buffer, [0, 2, 0, 1, 0], value=2)  # task 0 wraps: 6 transitions in 4 slots
    assert buffer.task_full[0] and not buffer.task_full[1:].any()
    np.testing.assert_array_equal(buffer.rewards[0], [2, 2, 1, 2])  # slots 3, 0, 1 overwritten in order
    np.testing.assert_array_equal(buffer.task_sizes(), [4, 2, 2])
    assert buffer.size() == 8
    np.testing.assert_array_equal(buffer.timeouts[1, :2], [0, 1])


def test_sample_shapes_and_task_purity():
    buffer = MultiTaskReplayBuffer(100, OBS_SPACE, ACT_SPACE, n_envs=3, num_tasks=T)
    for value in range(20):
        add(buffer, [0, 1, 2], value)
    batch = buffer.sample(16)
    assert batch.observations.shape == (T, 16, D + T)
    assert batch.actions.shape == (T, 16, 1) and batch.rewards.shape == (T, 16) and batch.dones.shape == (T, 16)
    for task in range(T):
        assert (batch.observations[task, :, D:].argmax(-1) == task).all()
    # done is masked where the episode was only truncated (even values here)
    np.testing.assert_array_equal(batch.dones.numpy(), (batch.rewards.numpy() % 2 == 1).astype(np.float32))


def test_sampling_before_a_task_has_data_fails_clearly():
    buffer = MultiTaskReplayBuffer(10, OBS_SPACE, ACT_SPACE, n_envs=1, num_tasks=T)
    add(buffer, [1], 0)
    with pytest.raises(RuntimeError, match=r"task\(s\) \[0, 2\]"):
        buffer.sample(4)


def test_bad_construction():
    with pytest.raises(ValueError, match="num_tasks"):
        MultiTaskReplayBuffer(10, OBS_SPACE, ACT_SPACE)
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        MultiTaskReplayBuffer(10, OBS_SPACE, ACT_SPACE, optimize_memory_usage=True, num_tasks=T)


def test_sample_mixed_draws_over_all_stored_transitions():
    """One batch of exactly N rows over every task's data, each task in proportion to what it stores."""
    buffer = MultiTaskReplayBuffer(1000, OBS_SPACE, ACT_SPACE, n_envs=1, num_tasks=T)
    sizes = {0: 100, 2: 300}  # task 1 has no data yet: it gets no rows (no error, unlike per-task sampling)
    for task, size in sizes.items():
        for value in range(size):
            add(buffer, [task], 1000 * task + value)  # the stored value names its task and slot
    np.random.seed(0)
    batch = buffer.sample_mixed(20_000)
    assert batch.observations.shape == (20_000, D + T) and batch.actions.shape == (20_000, 1)
    assert batch.rewards.shape == batch.dones.shape == batch.tasks.shape == (20_000,)
    tasks = batch.tasks.numpy()
    np.testing.assert_array_equal(batch.observations[:, D:].argmax(-1).numpy(), tasks)  # rows carry their task
    np.testing.assert_array_equal(batch.rewards.numpy() // 1000, tasks)  # ... and that task's stored data
    slots = batch.rewards.numpy() % 1000
    for task, size in sizes.items():
        assert set(slots[tasks == task].astype(int)) == set(range(size)), f"task {task}: not every slot drawn"
    np.testing.assert_allclose(np.bincount(tasks, minlength=T) / tasks.size, [0.25, 0.0, 0.75], atol=0.015)
    assert buffer.sample_mixed(7).tasks.shape == (7,)
    with pytest.raises(RuntimeError, match="empty"):
        MultiTaskReplayBuffer(10, OBS_SPACE, ACT_SPACE, n_envs=1, num_tasks=T).sample_mixed(4)


def test_observations_are_stored_without_their_one_hot_suffix() -> None:
    """Memory per task does not grow with the number of tasks; samples carry the suffix as before."""
    from gymnasium import spaces

    from sb3_qmp.common.buffers import MultiTaskReplayBuffer

    def nbytes(num_tasks: int) -> int:
        space = spaces.Box(-1, 1, shape=(10 + num_tasks,))
        buffer = MultiTaskReplayBuffer(100, space, spaces.Box(-1, 1, shape=(2,)), "cpu", num_tasks=num_tasks)
        return buffer.observations.nbytes + buffer.next_observations.nbytes

    assert nbytes(50) / 50 == nbytes(4) / 4


def test_buffer_of_an_earlier_version_loads(tmp_path) -> None:
    """A buffer pickled by commit 7727bb6 (observations stored with the suffix) is converted when loaded."""
    from pathlib import Path

    from sb3_qmp import QMP, make_multitask_vec_env

    data = Path(__file__).parent / "data"
    model = QMP.load(data / "model_7727bb6_qmp.zip", env=make_multitask_vec_env("MultiGoalPoint-v0", seed=0))
    model.load_replay_buffer(data / "buffer_7727bb6_qmp.pkl")
    buffer = model.replay_buffer
    assert buffer.observations.shape == (4, 64, 2) and buffer.task_sizes().tolist() == [16] * 4
    batch = buffer._get_samples_2d(np.arange(4)[:, None], np.tile(np.arange(16), (4, 1)))
    assert batch.observations.shape == (4, 16, 6)
    np.testing.assert_array_equal(batch.observations[:, :, 2:].argmax(-1).numpy(), np.repeat(np.arange(4)[:, None], 16, 1))
    model.learn(32, reset_num_timesteps=False)  # trains on it
