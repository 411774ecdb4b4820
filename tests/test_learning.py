"""Learning checks on the built-in point env: QMP improves every dense task in a small budget, and
shares behaviour with a sparse task that Separated cannot solve in the same budget.
(Learning quality and speed proper are measured in benchmarks/, not here.)"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import TimeLimit

from sb3_qmp import QMP, MultiTaskSAC, Separated, make_multitask_vec_env
from sb3_qmp.envs.point import MultiGoalPointEnv

DENSE_TASKS = [0, 1, 2]


def per_task_returns(model, episodes_per_task: int = 4) -> np.ndarray:
    env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=episodes_per_task, seed=123)
    returns = np.zeros(env.num_envs)
    finished = np.zeros(env.num_envs, dtype=bool)
    obs = env.reset()
    while not finished.all():
        actions, _ = model.predict(obs, deterministic=True)
        obs, rewards, dones, _ = env.step(actions)
        returns += rewards * ~finished
        finished |= dones
    return returns.reshape(episodes_per_task, 4).mean(axis=0)


def test_qmp_improves_every_dense_task():
    env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=1, seed=0)
    model = QMP(env, learning_starts=500, batch_size=128, policy_kwargs=dict(net_arch=[64, 64]), seed=0)
    before = per_task_returns(model)
    model.learn(7_000)
    after = per_task_returns(model)
    # An untrained policy wanders for all 30 steps (return about -30 to -60); a trained one reaches
    # the goal in about 5 steps (return about -8).
    assert (after[DENSE_TASKS] > before[DENSE_TASKS] + 10).all(), (before, after)
    assert (after[DENSE_TASKS] > -15).all(), after


# --- the sparse task ------------------------------------------------------------------------------
# Two tasks of MultiGoalPointEnv: task 0 (dense reward, goal right) and task 3 (the sparse task: -1 per step
# until it reaches the same goal). With the env's default step (0.2) the sparse goal is within reach of a
# random walk, so Separated finds it too and no small budget separates the methods reliably (docs/commitment.md:
# Separated solves it between 16k and 28k env steps on the 4-task env). With half the step (0.1) a random walk
# almost never gets there (Separated's collection episodes succeed ~2% of the time), while QMP's mixture
# often executes the dense task's policy and reaches the goal: the sparse task then learns from those episodes.
# Measured (env steps of both tasks together): QMP's sparse policy solves its task between 4000 and 5000 steps,
# Separated's between 7000 and 8000 (seeds 0-2); at this budget, QMP 10/10 episodes and Separated 0/10 on seeds
# 0-4, with QMP's sparse collection succeeding in 87-100% of its last episodes and Separated's in 0-2%. The
# pair costs about 50 s of one CPU core (two runs of 3000 vec-env steps and gradient steps); no cheaper setting
# tried kept the contrast (gamma 0.9 is not faster; the default step of 0.2 gives no reliable contrast).
SPARSE_TASKS = [0, 3]  # dense right, sparse right
SPARSE_STEP = 0.1
SPARSE_BUDGET = 6_000
SPARSE_KWARGS = dict(learning_starts=200, batch_size=64, learning_rate=1e-3, policy_kwargs=dict(net_arch=[64, 64]))


def sparse_pair_factories() -> list[Callable[[], gym.Env]]:
    return [lambda t=t: TimeLimit(MultiGoalPointEnv(task_id=t, step_size=SPARSE_STEP), 30) for t in SPARSE_TASKS]


def own_policy_success(model: MultiTaskSAC, episodes: int = 10) -> np.ndarray:
    """Deterministic own-policy success rate of every task."""
    env = make_multitask_vec_env(sparse_pair_factories(), n_envs_per_task=episodes, seed=999)
    success = np.zeros(env.num_envs)
    finished = np.zeros(env.num_envs, dtype=bool)
    obs = env.reset()
    while not finished.all():
        actions, _ = model.predict(obs, deterministic=True)
        obs, _, dones, infos = env.step(actions)
        success = np.where(dones & ~finished, [info["is_success"] for info in infos], success)
        finished |= dones
    return success.reshape(episodes, len(SPARSE_TASKS)).mean(axis=0)


@pytest.fixture(scope="module")
def sparse_runs() -> dict[str, MultiTaskSAC]:
    runs = {}
    for algo in (QMP, Separated):
        model = algo(make_multitask_vec_env(sparse_pair_factories(), seed=0), seed=0, **SPARSE_KWARGS)
        runs[algo.__name__] = model.learn(SPARSE_BUDGET)
    return runs


@pytest.mark.slow
def test_qmp_sparse_task_collects_with_the_policy_that_reaches_its_goal(sparse_runs):
    qmp, separated = sparse_runs["QMP"], sparse_runs["Separated"]
    selection = qmp.selection_matrix()
    # Row 1 (the sparse task): a large share of its data comes from policy 0, the policy that reaches the goal ...
    assert selection[1, 0] > 0.25, selection
    # (Row 0: the dense task's critic knows its reward, and its argmax is mostly its own, Q-greedy policy.)
    assert selection[0, 0] > 0.6, selection
    # ... and those collection episodes succeed far more often than Separated's own exploration.
    qmp_success, separated_success = (np.mean(m.task_success_buffer[1]) for m in (qmp, separated))
    assert qmp_success > separated_success + 0.3, (qmp_success, separated_success)


@pytest.mark.slow
def test_qmp_solves_the_sparse_task_where_separated_does_not(sparse_runs):
    qmp, separated = (own_policy_success(sparse_runs[name]) for name in ("QMP", "Separated"))
    np.testing.assert_array_equal(qmp, [1.0, 1.0])  # both tasks, each by its own policy
    assert separated[0] == 1.0 and separated[1] == 0.0, separated
