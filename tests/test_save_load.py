"""Save/load round trips exactly: parameters, optimizers, entropy coefficients, statistics, buffers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import SMALL_KWARGS, assert_same_params, params_of
from stable_baselines3.common.logger import configure

from sb3_qmp import QMP, MultiTaskSAC, make_multitask_vec_env


def _optimizer_states_equal(a: th.optim.Optimizer, b: th.optim.Optimizer) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    if sa["param_groups"] != sb["param_groups"] or sa["state"].keys() != sb["state"].keys():
        return False
    return all(all(th.equal(sa["state"][i][k], sb["state"][i][k]) for k in sa["state"][i]) for i in sa["state"])


@pytest.mark.parametrize("algo", [QMP, MultiTaskSAC])
def test_save_load_round_trip_is_exact(tmp_path, point_env, algo):
    model = algo(point_env, seed=0, collector_kwargs=None, **SMALL_KWARGS)
    model.learn(300)
    path = tmp_path / "model.zip"
    model.save(path)
    loaded = algo.load(path, env=point_env)

    assert_same_params(params_of(model), params_of(loaded))
    assert th.equal(model.log_ent_coef.detach(), loaded.log_ent_coef.detach())
    for name in ("actor", "critic"):
        assert _optimizer_states_equal(getattr(model, name).optimizer, getattr(loaded, name).optimizer)
    assert _optimizer_states_equal(model.ent_coef_optimizer, loaded.ent_coef_optimizer)
    np.testing.assert_array_equal(model.selection_counts, loaded.selection_counts)
    assert loaded.collector_name == model.collector_name and loaded.num_tasks == 4

    obs = np.concatenate([point_env.reset() for _ in range(3)])
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])

    # Continuing from the loaded model is the same computation as continuing from the original.
    loaded.load_replay_buffer(_save_buffer(model, tmp_path))
    loaded.set_logger(configure(None, []))
    for m in (model, loaded):
        th.manual_seed(3)
        np.random.seed(3)
        m.train(gradient_steps=5, batch_size=32)
    assert_same_params(params_of(model), params_of(loaded))
    loaded.learn(100, reset_num_timesteps=False)
    assert loaded.num_timesteps == model.num_timesteps + 100


def _save_buffer(model, tmp_path):
    path = tmp_path / "buffer.pkl"
    model.save_replay_buffer(path)
    return path


def test_replay_buffer_round_trip(tmp_path, point_env):
    model = QMP(point_env, seed=0, **SMALL_KWARGS)
    model.learn(200)
    path = _save_buffer(model, tmp_path)
    fresh = QMP(point_env, seed=1, **SMALL_KWARGS)
    fresh.load_replay_buffer(path)
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts", "task_pos", "task_full"):
        np.testing.assert_array_equal(getattr(model.replay_buffer, name), getattr(fresh.replay_buffer, name))
    fresh.learn(100)  # trains straight from the loaded data


def test_load_without_env_predicts(tmp_path, point_env):
    model = QMP(point_env, seed=0, **SMALL_KWARGS)
    model.learn(100)
    model.save(tmp_path / "m")
    loaded = QMP.load(tmp_path / "m")
    obs = point_env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_load_with_a_different_task_count_fails_clearly(tmp_path, point_env):
    model = QMP(point_env, seed=0, **SMALL_KWARGS)
    model.save(tmp_path / "m.zip")
    other = make_multitask_vec_env([lambda: gym.make("MultiGoalPoint-v0", task_id=0).unwrapped.env] * 2)
    with pytest.raises(ValueError, match="trained on 4 tasks but the env has 2"):
        QMP.load(tmp_path / "m.zip", env=other)
    with pytest.raises(ValueError, match="has 4 tasks but the env has 2"):
        model.set_env(other)


def test_load_from_a_bad_path_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="No saved model"):
        QMP.load(tmp_path / "missing.zip")


def test_who_acted_for_whom_is_restored_whole(tmp_path) -> None:
    """Selection counts and every sharing statistic of the collector survive save/load."""
    from sb3_qmp import QMP

    model = QMP(
        make_multitask_vec_env("MultiGoalPoint-v0", seed=0),
        learning_starts=20,
        batch_size=8,
        seed=0,
        collector_kwargs=dict(commit_steps=3),
    )
    model.learn(200)
    model.save(tmp_path / "model.zip")
    loaded = QMP.load(tmp_path / "model.zip")
    np.testing.assert_array_equal(loaded.selection_counts, model.selection_counts)
    for name in type(model.collector).STATISTICS:
        np.testing.assert_array_equal(getattr(loaded.collector, name), getattr(model.collector, name), err_msg=name)
    assert model.collector.selection_counts.sum() > 0
    np.testing.assert_array_equal(loaded.collector.share_fraction(), model.collector.share_fraction())
