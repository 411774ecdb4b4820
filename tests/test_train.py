"""Training semantics: data reaches its own task's buffer with its own reward, tasks never leak
into each other's updates, and seeding makes runs repeatable."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch as th
from conftest import SMALL_KWARGS, assert_same_params, params_of, set_constant_actors, set_distance_critics, task_slice
from stable_baselines3.common.logger import configure
from test_collectors import MEANS, PREFERRED

from sb3_qmp import QMP, MultiTaskSAC, make_multitask_vec_env
from sb3_qmp.envs.point import GOALS, SPARSE


def test_transitions_land_in_their_own_tasks_buffer_with_its_reward(point_env):
    model = QMP(point_env, seed=0, **SMALL_KWARGS)
    set_constant_actors(model.policy, MEANS)
    set_distance_critics(model.policy, MEANS[PREFERRED, 0])
    model.learning_starts, model.gradient_steps = 0, 0
    model.learn(400)
    # Every step for task i was acted by policy PREFERRED[i] != i ...
    assert np.trace(model.selection_counts) == 0
    buffer = model.replay_buffer
    np.testing.assert_array_equal(buffer.task_sizes(), 100)
    for task in range(4):
        size = buffer.task_sizes()[task]
        stored = buffer._get_samples_2d(np.array([[task]]), np.arange(size)[None])  # as a gradient step sees them
        obs, next_obs = stored.observations[0].numpy(), stored.next_observations[0].numpy()
        # ... yet each transition is stored for the task of its env row, with that task's reward.
        np.testing.assert_array_equal(obs[:, 2:].argmax(axis=1), task)
        np.testing.assert_array_equal(next_obs[:, 2:].argmax(axis=1), task)
        np.testing.assert_allclose(buffer.actions[task, :size, 0], MEANS[PREFERRED[task], 0], atol=1e-5)
        dist = np.linalg.norm(next_obs[:, :2] - GOALS[task], axis=1)
        expected = np.full(size, -1.0) if SPARSE[task] else -1.0 - dist
        np.testing.assert_allclose(buffer.rewards[task, :size], expected, atol=1e-5)


def _copy_model(model):
    saved, replay = io.BytesIO(), io.BytesIO()
    model.save(saved)
    model.save_replay_buffer(replay)
    saved.seek(0)
    replay.seek(0)
    clone = type(model).load(saved, env=model.get_env())
    clone.load_replay_buffer(replay)
    clone.set_logger(configure(None, []))  # train() logs; a loaded model has no logger until learn()
    return clone


@pytest.mark.parametrize("algo", [MultiTaskSAC, QMP])
def test_one_tasks_data_never_changes_another_tasks_networks(point_env, algo):
    model = algo(point_env, seed=0, **SMALL_KWARGS)
    model.learn(300)
    clean, perturbed = _copy_model(model), _copy_model(model)
    # Task 0's data differs wildly between the two copies; everything else is identical.
    perturbed.replay_buffer.rewards[0] += 100.0
    perturbed.replay_buffer.observations[0, :, :2] *= -1
    for m in (clean, perturbed):
        th.manual_seed(1)
        np.random.seed(1)
        m.train(gradient_steps=3, batch_size=32)
    a, b = params_of(clean), params_of(perturbed)
    for key in a:
        for task in range(1, 4):
            assert th.equal(task_slice(a[key], task, 4), task_slice(b[key], task, 4)), f"{key} leaked into task {task}"
        assert not th.equal(task_slice(a[key], 0, 4), task_slice(b[key], 0, 4)), f"{key} of task 0 did not train"
    log_a, log_b = clean.log_ent_coef.detach(), perturbed.log_ent_coef.detach()
    assert th.equal(log_a[1:], log_b[1:])


def test_every_gradient_step_updates_every_task(point_env):
    model = MultiTaskSAC(point_env, seed=0, **SMALL_KWARGS)
    model.learn(100)
    before = params_of(model)
    model.train(gradient_steps=1, batch_size=32)
    after = params_of(model)
    for key in before:
        if key.startswith("critic_target"):
            continue
        for task in range(4):
            assert not th.equal(task_slice(before[key], task, 4), task_slice(after[key], task, 4)), (key, task)


@pytest.mark.parametrize("algo", [MultiTaskSAC, QMP])
def test_same_seed_same_parameters(algo):
    def run():
        env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=2, seed=5)
        model = algo(env, seed=5, **SMALL_KWARGS)
        model.learn(400)
        return model

    first, second = run(), run()
    assert_same_params(params_of(first), params_of(second))
    np.testing.assert_array_equal(first.selection_counts, second.selection_counts)
    np.testing.assert_array_equal(first.replay_buffer.observations, second.replay_buffer.observations)


def test_task_id_input_option_feeds_the_one_hot(point_env):
    model = MultiTaskSAC(point_env, seed=0, **{**SMALL_KWARGS, "policy_kwargs": dict(net_arch=[16], task_id_input=True)})
    assert model.policy.features_dim == 6
    assert model.actor.net.hidden[0].weight.shape == (4, 6, 16)
    model.learn(120)


def test_fixed_entropy_coefficient(point_env):
    model = MultiTaskSAC(point_env, ent_coef=0.05, seed=0, **SMALL_KWARGS)
    model.learn(120)
    assert model.ent_coef_optimizer is None
    assert th.allclose(model.ent_coef_tensor, th.full((4,), 0.05))
    with pytest.raises(ValueError, match="must be > 0"):
        MultiTaskSAC(point_env, ent_coef="auto_0", **SMALL_KWARGS)
