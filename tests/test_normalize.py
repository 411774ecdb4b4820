"""Per-task normalisation (VecNormalizePerTask): tasks' reward scales stay independent, the one-hot untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_qmp import QMP, MultiTaskSAC, make_multitask_vec_env
from sb3_qmp.common.evaluation import evaluate_per_task
from sb3_qmp.common.normalize import TaskRunningMeanStd, VecNormalizePerTask

TINY: dict[str, Any] = dict(learning_starts=40, batch_size=16, buffer_size=1_000, policy_kwargs=dict(net_arch=[16]))
NUM_TASKS = 4


class ScaleTaskReward(gym.Wrapper):
    """Multiply the rewards of one task by ``scale``."""

    def __init__(self, env: gym.Env, task: int, scale: float) -> None:
        super().__init__(env)
        self.task, self.scale = task, scale

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward) * (self.scale if info["task_id"] == self.task else 1.0), terminated, truncated, info


def _point_env(scale_task_1: float = 1.0, seed: int = 0) -> VecEnv:
    return make_multitask_vec_env(
        "MultiGoalPoint-v0", n_envs_per_task=2, seed=seed, wrapper_class=lambda env: ScaleTaskReward(env, 1, scale_task_1)
    )


def _normalised_rewards(venv: VecEnv, steps: int = 120) -> np.ndarray:
    """The rewards ``venv`` returns over ``steps`` steps of a fixed random action sequence, ``(steps, n_envs)``."""
    rng = np.random.default_rng(0)
    venv.reset()
    return np.stack([venv.step(rng.uniform(-1, 1, (venv.num_envs, 2)).astype(np.float32))[1] for _ in range(steps)])


def test_a_task_with_100x_rewards_does_not_change_another_tasks_normalised_rewards() -> None:
    task_rows = np.arange(2 * NUM_TASKS) % NUM_TASKS
    per_task = [_normalised_rewards(VecNormalizePerTask(_point_env(scale), norm_obs=False)) for scale in (1.0, 100.0)]
    for task in (0, 2, 3):
        np.testing.assert_array_equal(per_task[0][:, task_rows == task], per_task[1][:, task_rows == task])
    # Task 1 itself: scaled by its own statistic, its normalised rewards barely notice the factor 100.
    np.testing.assert_allclose(per_task[0][:, task_rows == 1], per_task[1][:, task_rows == 1], rtol=1e-3)
    # SB3's VecNormalize pools the return statistic: task 1's scale shrinks every other task's rewards.
    pooled = [_normalised_rewards(VecNormalize(_point_env(scale), norm_obs=False)) for scale in (1.0, 100.0)]
    assert np.abs(pooled[1][:, task_rows == 0]).mean() < 0.1 * np.abs(pooled[0][:, task_rows == 0]).mean()


def test_task_running_mean_std_is_sb3s_per_stream() -> None:
    rng = np.random.default_rng(1)
    stats, references = TaskRunningMeanStd(3, shape=(2,)), [RunningMeanStd(shape=(2,)) for _ in range(3)]
    for _ in range(5):
        x, tasks = rng.normal(size=(7, 2)) * 10, rng.integers(0, 3, size=7)
        stats.update(x, tasks)
        for task, reference in enumerate(references):
            if (tasks == task).any():
                reference.update(x[tasks == task])
    for task, reference in enumerate(references):
        np.testing.assert_allclose(stats.mean[task], reference.mean)
        np.testing.assert_allclose(stats.var[task], reference.var)
        assert stats.count[task] == pytest.approx(reference.count)


def test_features_are_normalised_and_the_one_hot_is_untouched() -> None:
    venv = VecNormalizePerTask(_point_env(), norm_reward=False)
    venv.obs_rms.mean[:], venv.obs_rms.var[:] = 1.0, 4.0
    venv.training = False
    obs = venv.reset()
    raw = venv.get_original_obs()
    np.testing.assert_allclose(obs[:, :-NUM_TASKS], (raw[:, :-NUM_TASKS] - 1.0) / 2.0, rtol=1e-6)
    np.testing.assert_array_equal(obs[:, -NUM_TASKS:], raw[:, -NUM_TASKS:])
    np.testing.assert_allclose(venv.unnormalize_obs(obs), raw, atol=1e-6)
    for _ in range(40):  # MultiGoalPoint's episodes last 30 steps: terminal observations are normalised too
        obs, _, dones, infos = venv.step(np.zeros((venv.num_envs, 2), dtype=np.float32))
        for row in np.flatnonzero(dones):
            terminal = infos[row]["terminal_observation"]
            assert terminal[:-NUM_TASKS].max() <= 10.0 and terminal[-NUM_TASKS:].tolist() == obs[row, -NUM_TASKS:].tolist()


def test_rewards_need_their_tasks() -> None:
    venv = VecNormalizePerTask(_point_env())
    with pytest.raises(ValueError, match="pass the task of every reward"):
        venv.normalize_reward(np.ones(3))
    venv.norm_reward = False  # evaluation: nothing to scale, no task needed
    np.testing.assert_array_equal(venv.normalize_reward(np.ones(3)), np.ones(3))


def test_model_stores_raw_rewards_and_samples_them_per_task() -> None:
    venv = VecNormalizePerTask(_point_env(scale_task_1=100.0))
    model = QMP(venv, **TINY)
    model.learn(80)
    assert model.get_vec_normalize_env() is venv
    buffer = model.replay_buffer
    size = int(buffer.task_sizes().min())
    raw = buffer.rewards[:, :size]
    assert (raw[1] <= -100.0).all() and (raw[[0, 2, 3]] <= -1.0).all()  # stored as the env gave them
    last = venv.get_original_obs()  # raw observations are stored too (10 vec steps: no episode has ended)
    for row in range(venv.num_envs):  # rows of one task are stored consecutively, in sub-env order
        task, rank = row % NUM_TASKS, row // NUM_TASKS
        stored = buffer.next_observations[task, buffer.task_pos[task] - 2 + rank]  # base features (no suffix)
        np.testing.assert_array_equal(stored, last[row][: buffer.feature_dim])
    rows, idx = np.arange(NUM_TASKS)[:, None], np.tile(np.arange(size), (NUM_TASKS, 1))
    sampled = buffer._get_samples_2d(rows, idx, venv).rewards.numpy()
    expected = np.clip(raw / np.sqrt(venv.ret_rms.var[:, None] + venv.epsilon), -10, 10)
    np.testing.assert_allclose(sampled, expected, rtol=1e-5)
    assert venv.ret_rms.var[1] > 1e3 * venv.ret_rms.var[0]  # one statistic per task


def test_save_load_round_trip(tmp_path: Path) -> None:
    venv = VecNormalizePerTask(_point_env(scale_task_1=100.0))
    model = MultiTaskSAC(venv, **TINY)
    model.learn(80)
    path = str(tmp_path / "vecnormalize.pkl")
    venv.save(path)
    model.save(tmp_path / "model")

    loaded = VecNormalizePerTask.load(path, _point_env(scale_task_1=100.0))
    assert isinstance(loaded, VecNormalizePerTask) and loaded.num_tasks == NUM_TASKS
    for name in ("mean", "var", "count"):
        np.testing.assert_array_equal(getattr(loaded.ret_rms, name), getattr(venv.ret_rms, name))
    np.testing.assert_array_equal(loaded.obs_rms.mean, venv.obs_rms.mean)
    np.testing.assert_array_equal(loaded.obs_rms.var, venv.obs_rms.var)
    tasks = np.arange(NUM_TASKS)
    np.testing.assert_array_equal(loaded.normalize_reward(-np.ones(4), tasks), venv.normalize_reward(-np.ones(4), tasks))
    # SB3's own loader gives the same class; the model trains on with the loaded statistics.
    assert isinstance(VecNormalize.load(path, _point_env()), VecNormalizePerTask)
    resumed = MultiTaskSAC.load(tmp_path / "model", env=loaded)
    assert resumed.get_vec_normalize_env() is loaded
    resumed.learn(16, reset_num_timesteps=False)

    with pytest.raises(ValueError, match="statistics are of 4 tasks but the env has 2"):
        VecNormalizePerTask.load(path, make_multitask_vec_env([lambda: gym.make("Pendulum-v1")] * 2))
    VecNormalize(_point_env(), norm_obs=False).save(str(tmp_path / "plain.pkl"))
    with pytest.raises(TypeError, match="not a VecNormalizePerTask"):
        VecNormalizePerTask.load(str(tmp_path / "plain.pkl"), _point_env())


def test_sb3_eval_callback_syncs_the_statistics(tmp_path: Path) -> None:
    venv = VecNormalizePerTask(_point_env())
    eval_env = VecNormalizePerTask(_point_env(seed=5), training=False, norm_reward=False)
    model = MultiTaskSAC(venv, **TINY)
    model.learn(80, callback=EvalCallback(eval_env, eval_freq=5, n_eval_episodes=4, log_path=str(tmp_path)))
    np.testing.assert_array_equal(eval_env.obs_rms.mean, venv.obs_rms.mean)
    np.testing.assert_array_equal(eval_env.ret_rms.var, venv.ret_rms.var)


def test_pooled_vecnormalize_is_refused_and_names_the_per_task_wrapper() -> None:
    with pytest.raises(ValueError, match=r"norm_reward=True\) keeps one return statistic .*VecNormalizePerTask"):
        QMP(VecNormalize(_point_env(), norm_obs=False, norm_reward=True), **TINY)
    with pytest.raises(ValueError, match=r"norm_obs=True\) would rescale the one-hot .*VecNormalizePerTask"):
        QMP(VecNormalize(_point_env(), norm_obs=True, norm_reward=False), **TINY)
    model = QMP(_point_env(), **TINY)
    with pytest.raises(ValueError, match="VecNormalizePerTask"):
        model.set_env(VecNormalize(_point_env(), norm_obs=False))
    QMP(VecNormalize(_point_env(), norm_obs=False, norm_reward=False), **TINY)  # nothing pooled: accepted


def test_evaluate_per_task_normalises_the_observations_as_in_training() -> None:
    venv = VecNormalizePerTask(make_multitask_vec_env("MultiGoalPoint-v0", seed=0), norm_reward=False)
    model = MultiTaskSAC(venv, **TINY)
    venv.obs_rms.mean[:], venv.obs_rms.var[:] = 3.0, 1.0
    seen: list[np.ndarray] = []
    predict = model.predict

    def spy(obs, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(obs.copy())
        return predict(obs, *args, **kwargs)

    model.predict = spy  # type: ignore[method-assign, assignment]
    evaluate_per_task(model, "MultiGoalPoint-v0", n_eval_episodes=1, seed=0)
    features = np.concatenate(seen)[:, :-NUM_TASKS]
    assert features.max() < -1.0  # raw point positions are within [-1, 1]: shifted by the mean 3
