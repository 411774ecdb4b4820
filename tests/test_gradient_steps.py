"""``gradient_steps=-1``: one gradient step per env step of each task, as T separate SAC runs would take."""

from __future__ import annotations

import gymnasium as gym
import pytest
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_qmp import MultiTaskSAC, SharedSAC, make_multitask_vec_env

TINY = dict(learning_starts=0, batch_size=8, buffer_size=1_000, policy_kwargs=dict(net_arch=[8]))


@pytest.mark.parametrize("n_envs_per_task", [1, 2])
def test_minus_one_counts_env_steps_per_task(n_envs_per_task: int) -> None:
    env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=n_envs_per_task, seed=0)
    model = MultiTaskSAC(env, gradient_steps=-1, train_freq=1, **TINY)
    model.learn(10 * env.num_envs)  # 10 vec-env steps: 10 * k env steps of every task
    assert model.replay_buffer.task_sizes().tolist() == [10 * n_envs_per_task] * 4
    # An independent SAC per task takes one step per env step of its task (SB3's count would be 4x that).
    assert model._n_updates == 10 * n_envs_per_task


def test_minus_one_with_unequal_sub_envs_per_task_is_the_mean_over_tasks() -> None:
    """6 sub-envs on 4 tasks (tasks 0 and 1 on two each): 1.5 env steps per task and vec-env step."""
    env = DummyVecEnv([lambda i=i: Monitor(gym.make("MultiGoalPoint-v0", task_id=i % 4)) for i in range(6)])
    model = MultiTaskSAC(env, gradient_steps=-1, train_freq=1, **TINY)
    model.learn(6 * 10)
    # Separate SACs would take 20, 20, 10, 10 steps: 15 on average, reached by carrying the halves over
    # (rounding each rollout down would give 10, up 20; SB3's count 60).
    assert model.replay_buffer.task_sizes().tolist() == [20, 20, 10, 10]
    assert model._n_updates == 15


def test_shared_minus_one_with_factor_t_is_one_step_per_env_step() -> None:
    """SharedSAC's paper matching (factor T) on top of -1: one step per env step of all tasks, as one SB3 SAC."""
    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    model = SharedSAC(env, gradient_steps=-1, gradient_steps_factor=4, **TINY)
    model.learn(40)
    assert model._n_updates == 40
