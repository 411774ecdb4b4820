"""End-to-end use as an SB3 user would: construction styles, learn with the usual options, predict."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import SMALL_KWARGS, set_constant_actors
from gymnasium import spaces
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

from sb3_qmp import QMP, MultiTaskSAC, MultiTaskWrapper, TaskAssignmentWrapper, make_multitask_vec_env
from sb3_qmp.common.buffers import MultiTaskReplayBuffer
from sb3_qmp.common.vec_env import tasks_without_env
from sb3_qmp.envs.point import MultiGoalPointEnv


def test_construction_styles(point_env):
    for model in (QMP(point_env, **SMALL_KWARGS), QMP("MlpPolicy", point_env, **SMALL_KWARGS)):
        assert model.num_tasks == 4 and model.collector_name == "qswitch"
    assert MultiTaskSAC(point_env, **SMALL_KWARGS).collector_name == "own"
    assert MultiTaskSAC(point_env, collector="uniform", **SMALL_KWARGS).collector_name == "uniform"
    with pytest.raises(ValueError, match="QMP always collects with the 'qswitch' collector"):
        QMP(point_env, collector="uniform", **SMALL_KWARGS)  # that would be QMP-Uniform under QMP's name
    model = QMP("MultiGoalPoint-v0", **SMALL_KWARGS)  # an env id, like SB3
    assert model.num_tasks == 4


def test_learn_with_callbacks_tensorboard_and_progress_bar(tmp_path, point_env):
    eval_env = make_multitask_vec_env("MultiGoalPoint-v0", seed=10)
    callbacks = [
        EvalCallback(eval_env, eval_freq=100, n_eval_episodes=4, log_path=str(tmp_path / "eval")),
        CheckpointCallback(save_freq=100, save_path=str(tmp_path / "ckpt")),
    ]
    model = QMP(point_env, tensorboard_log=str(tmp_path / "tb"), verbose=1, **SMALL_KWARGS)
    model.learn(400, callback=callbacks, progress_bar=True, log_interval=1)
    assert (tmp_path / "eval" / "evaluations.npz").exists()
    assert list((tmp_path / "ckpt").glob("*.zip"))
    event_files = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert event_files
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(event_files[0].parent)).Reload().Tags()["scalars"]
    for task in range(4):
        assert f"train/task_{task}/actor_loss" in tags
        assert f"train/task_{task}/ent_coef" in tags
        assert f"collect/task_{task}/own_policy_frac" in tags
        assert all(f"collect/task_{task}/policy_{policy}_frac" in tags for policy in range(4))
    assert any(tag.startswith("rollout/task_") and tag.endswith("success_rate") for tag in tags)


def test_predict_routes_every_row_to_its_own_task(point_env):
    model = MultiTaskSAC(point_env, **SMALL_KWARGS)
    means = np.array([[-0.6, 0.1], [-0.2, 0.2], [0.2, 0.3], [0.6, 0.4]])
    set_constant_actors(model.policy, means)
    obs = point_env.reset()
    rows = np.array([3, 0, 0, 2, 1])
    actions, _ = model.predict(obs[rows], deterministic=True)
    np.testing.assert_allclose(actions, means[rows], atol=1e-5)
    single, _ = model.predict(obs[2], deterministic=True)  # a single, un-batched observation
    np.testing.assert_allclose(single, means[2], atol=1e-5)
    mean_return, _ = evaluate_policy(model, point_env, n_eval_episodes=4)
    assert np.isfinite(mean_return)


def test_subproc_vec_env():
    # Workers start in fresh interpreters (forkserver): the env factory must register the ids itself.
    env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=1, seed=0, vec_env_cls=SubprocVecEnv)
    try:
        env.reset()
        assert env.get_attr("task_id") == [0, 1, 2, 3]
        model = QMP(env, **SMALL_KWARGS)
        model.learn(200)
        np.testing.assert_array_equal(model.replay_buffer.task_sizes(), 50)
    finally:
        env.close()


def test_several_envs_per_task():
    env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=3, seed=0)
    model = QMP(env, **SMALL_KWARGS)
    model.learn(240)
    np.testing.assert_array_equal(model.replay_buffer.task_sizes(), 60)
    # 20 vec steps; the first 5 (num_timesteps < learning_starts=50) are random: 15 x 3 rows per task.
    assert model.selection_counts.sum(axis=1).tolist() == [45] * 4


def test_uniform_task_sampling_env_trains(point_env):
    # Sub-envs that draw a task every episode: data still reaches the right buffers.
    env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=1, seed=0)
    env.env_method("set_task", None)
    model = QMP(env, **SMALL_KWARGS)
    model.learn(400)
    sizes = model.replay_buffer.task_sizes()
    assert sizes.sum() == 400 and (sizes > 0).all()
    assert isinstance(model.replay_buffer, MultiTaskReplayBuffer)


def test_env_without_task_information_is_rejected():
    with pytest.raises(ValueError, match="no task information"):
        QMP(gym.make("Pendulum-v1"))


def test_non_box_action_space_is_rejected():
    with pytest.raises(ValueError, match="continuous \\(Box\\) action space"):
        make_multitask_vec_env([lambda: gym.make("CartPole-v1")])


class _DiscreteMultiTaskEnv(gym.Env):
    """Claims to be a multi-task env with a one-hot suffix, but acts with a discrete action space."""

    num_tasks = 2
    has_task_one_hot = True
    observation_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = spaces.Discrete(3)


def test_non_box_action_space_given_to_the_model_is_rejected():
    with pytest.raises(ValueError, match="QMP needs a continuous \\(Box\\) action space, got Discrete"):
        QMP(_DiscreteMultiTaskEnv())


def test_base_env_without_one_hot_suffix_is_rejected():
    # The base env knows its tasks (num_tasks, set_task) but its observations carry no task id: without the
    # check, the model would read the last 4 position/velocity numbers as a one-hot and misroute every row.
    with pytest.raises(ValueError, match=r"no one-hot task id .* MultiTaskWrapper"):
        QMP(DummyVecEnv([MultiGoalPointEnv]))
    with pytest.raises(ValueError, match="no one-hot task id"):
        make_multitask_vec_env(MultiGoalPointEnv)
    QMP(DummyVecEnv([lambda: MultiTaskWrapper(MultiGoalPointEnv(), task_id=0)] * 4), **SMALL_KWARGS)  # wrapped: fine


def test_tasks_without_a_sub_env_are_rejected_at_learn():
    # Every sub-env fixed to task 0: tasks 1-3 would never get data, so training would silently stall.
    env = DummyVecEnv([lambda: gym.make("MultiGoalPoint-v0", task_id=0)] * 2)
    model = QMP(env, **SMALL_KWARGS)
    assert tasks_without_env(env) == [1, 2, 3]
    with pytest.raises(ValueError, match=r"Tasks \[1, 2, 3\] have no sub-env"):
        model.learn(100)
    # Loading for evaluation only is fine; so are sampled tasks and a cycling TaskAssignmentWrapper.
    cycling = TaskAssignmentWrapper(DummyVecEnv([lambda: gym.make("MultiGoalPoint-v0", task_id=0)]))
    sampled = DummyVecEnv([lambda: gym.make("MultiGoalPoint-v0")])
    assert tasks_without_env(cycling) == [] and tasks_without_env(sampled) == []
    QMP(cycling, **SMALL_KWARGS).learn(100)


def test_run_that_ends_before_learning_starts_warns(point_env):
    model = QMP(point_env, **{**SMALL_KWARGS, "learning_starts": 1_000})
    with pytest.warns(UserWarning, match="before learning_starts=1000: it only collects random actions"):
        model.learn(200)
    assert model._n_updates == 0


def test_vecnormalize_of_the_task_id_is_rejected(point_env):
    with pytest.raises(ValueError, match="VecNormalize"):
        QMP(VecNormalize(point_env, norm_obs=True), **SMALL_KWARGS)
    QMP(VecNormalize(point_env, norm_obs=False, norm_reward=False), **SMALL_KWARGS).learn(100)  # pooled: see test_normalize


def test_non_multitask_replay_buffer_is_rejected(point_env):
    from stable_baselines3.common.buffers import ReplayBuffer

    with pytest.raises(ValueError, match="MultiTaskReplayBuffer"):
        QMP(point_env, replay_buffer_class=ReplayBuffer, **SMALL_KWARGS)


def test_callers_kwargs_dicts_are_not_modified(point_env):
    # rl-zoo3 keeps the YAML's dicts (and users reuse theirs): the model must copy before adding num_tasks.
    policy_kwargs, buffer_kwargs = dict(net_arch=[16]), dict()
    model = QMP(point_env, policy_kwargs=policy_kwargs, replay_buffer_kwargs=buffer_kwargs, learning_starts=10)
    assert policy_kwargs == dict(net_arch=[16]) and buffer_kwargs == {}
    assert model.policy_kwargs["num_tasks"] == 4 and model.replay_buffer_kwargs["num_tasks"] == 4


def test_two_envs_given_is_rejected(point_env):
    with pytest.raises(TypeError, match="two envs"):
        QMP(point_env, point_env)
