"""The multi-task env conventions: one-hot suffix, info["task_id"], fixed/sampled tasks, validation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.env_checker import check_env

from sb3_qmp import MultiTaskWrapper, TaskAssignmentWrapper, make_multitask_vec_env
from sb3_qmp.envs.point import MultiGoalPointEnv


@pytest.mark.parametrize("task_id", [None, 0, 1, 2, 3])
def test_builtin_env_passes_check_env(task_id):
    check_env(gym.make("MultiGoalPoint-v0", task_id=task_id).unwrapped)
    check_env(MultiGoalPointEnv())


def test_one_hot_suffix_and_info_task_id():
    env = gym.make("MultiGoalPoint-v0", task_id=2)
    obs, info = env.reset(seed=0)
    assert obs.shape == (6,) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[2:], [0, 0, 1, 0])
    assert info["task_id"] == 2
    obs, _, _, _, info = env.step(env.action_space.sample())
    np.testing.assert_array_equal(obs[2:], [0, 0, 1, 0])
    assert info["task_id"] == 2 and "is_success" in info


def test_task_sampling_per_episode_and_set_task():
    env = gym.make("MultiGoalPoint-v0")  # no task_id: a task is drawn at every reset
    seen = {env.reset(seed=s)[1]["task_id"] for s in range(40)}
    assert seen == {0, 1, 2, 3}
    env.unwrapped.set_task(1)
    assert {env.reset()[1]["task_id"] for _ in range(5)} == {1}
    _, info = env.reset(options={"task_id": 3})
    assert info["task_id"] == 3
    env.unwrapped.set_task(None)
    assert len({env.reset()[1]["task_id"] for _ in range(40)}) == 4


def test_seeded_reset_is_deterministic():
    a, b = gym.make("MultiGoalPoint-v0"), gym.make("MultiGoalPoint-v0")
    for seed in range(5):
        (oa, ia), (ob, ib) = a.reset(seed=seed), b.reset(seed=seed)
        np.testing.assert_array_equal(oa, ob)
        assert ia["task_id"] == ib["task_id"]


def test_env_factories_become_tasks():
    env = MultiTaskWrapper([lambda: gym.make("Pendulum-v1"), lambda: gym.make("Pendulum-v1", g=5.0)], task_id=1)
    assert env.num_tasks == 2
    obs, info = env.reset(seed=0)
    assert obs.shape == (5,) and info["task_id"] == 1
    assert env.env.unwrapped.g == 5.0
    check_env(env)


def test_vec_env_tags_each_sub_env_with_its_task():
    env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=3, seed=0)
    obs = env.reset()
    assert env.num_envs == 12
    np.testing.assert_array_equal(obs[:, 2:].argmax(axis=1), np.arange(12) % 4)
    for _ in range(40):  # tasks stay fixed across episodes
        obs, _, _, infos = env.step(np.stack([env.action_space.sample() for _ in range(12)]))
        np.testing.assert_array_equal([i["task_id"] for i in infos], np.arange(12) % 4)


def test_task_assignment_wrapper_for_zoo_style_vec_envs():
    from stable_baselines3.common.env_util import make_vec_env

    venv = TaskAssignmentWrapper(make_vec_env("MultiGoalPoint-v0", n_envs=8, seed=0))
    np.testing.assert_array_equal(venv.reset()[:, 2:].argmax(axis=1), np.arange(8) % 4)
    # A single env (the zoo's evaluation env) visits the tasks in turn, one episode each.
    single = TaskAssignmentWrapper(make_vec_env("MultiGoalPoint-v0", n_envs=1, seed=0))
    tasks = [int(single.reset()[0, 2:].argmax())]
    while len(tasks) < 6:
        obs, _, dones, _ = single.step(np.zeros((1, 2), dtype=np.float32))
        if dones[0]:
            tasks.append(int(obs[0, 2:].argmax()))
    assert tasks == [0, 1, 2, 3, 0, 1]


def test_bad_task_ids():
    with pytest.raises(ValueError, match="out of range"):
        gym.make("MultiGoalPoint-v0", task_id=4)
    env = gym.make("MultiGoalPoint-v0")
    with pytest.raises(ValueError, match="out of range"):
        env.unwrapped.set_task(-1)
    with pytest.raises(TypeError, match="must be an int"):
        env.reset(options={"task_id": "left"})
    with pytest.raises(ValueError, match="takes no options"):
        MultiGoalPointEnv().reset(options={"goal": 1})


def test_mismatched_task_spaces_are_rejected():
    with pytest.raises(ValueError, match="share one observation space"):
        MultiTaskWrapper([lambda: gym.make("Pendulum-v1"), lambda: gym.make("MountainCarContinuous-v0")])

    class OtherActions(MultiGoalPointEnv):
        def __init__(self):
            super().__init__()
            self.action_space = spaces.Box(-2.0, 2.0, shape=(2,), dtype=np.float32)

    with pytest.raises(ValueError, match="share one action space"):
        MultiTaskWrapper([MultiGoalPointEnv, OtherActions])


def test_bad_task_counts_and_env_types():
    with pytest.raises(ValueError, match="at least one task"):
        MultiTaskWrapper([])
    with pytest.raises(TypeError, match="no task information"):
        MultiTaskWrapper(gym.make("Pendulum-v1"))
    with pytest.raises(TypeError, match="env factories"):
        MultiTaskWrapper([gym.make("Pendulum-v1")])
    with pytest.raises(ValueError, match="n_envs_per_task"):
        make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=0)

    class ImageObs(MultiGoalPointEnv):
        def __init__(self):
            super().__init__()
            self.observation_space = spaces.Box(0, 1, shape=(2, 1), dtype=np.float32)

    with pytest.raises(ValueError, match="flat Box observation"):
        MultiTaskWrapper([ImageObs])


def test_render_rgb_array():
    env = gym.make("MultiGoalPoint-v0", task_id=0, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and frame.min() < 255


class _CountingFactory:
    """Env factory for one task that counts how often it is called."""

    def __init__(self, task: int, obs_dim: int = 2) -> None:
        self.task, self.obs_dim, self.calls = task, obs_dim, 0

    def __call__(self) -> gym.Env:
        self.calls += 1
        env = MultiGoalPointEnv()
        env.set_task(self.task)
        if self.obs_dim != 2:
            return gym.wrappers.TransformObservation(
                env, lambda o: np.zeros(self.obs_dim, np.float32), spaces.Box(-1, 1, (self.obs_dim,), np.float32)
            )
        return env


def test_vec_env_from_factories_builds_each_task_env_once_per_sub_env():
    factories = [_CountingFactory(task) for task in range(4)]
    venv = make_multitask_vec_env(factories, n_envs_per_task=2, seed=0)
    venv.reset()
    venv.step(np.zeros((8, 2), dtype=np.float32))
    # The probe builds every task once (space check); then each sub-env builds task 0 (for the spaces)
    # and its own task only, not all T tasks.
    assert [f.calls for f in factories] == [1 + 8, 1 + 2, 1 + 2, 1 + 2]
    assert venv.get_attr("task_id") == [0, 1, 2, 3, 0, 1, 2, 3]


def test_lazy_task_envs_match_eager_ones_and_check_spaces():
    def rollout(lazy: bool) -> list[np.ndarray]:
        env = MultiTaskWrapper([_CountingFactory(task) for task in range(4)], lazy=lazy)
        out = [env.reset(seed=3, options={"task_id": 2})[0]]
        for task in (1, 2, 3):
            env.set_task(task)
            out.append(env.reset()[0])
            out += [env.step(np.array([0.5, -0.2], dtype=np.float32))[0] for _ in range(3)]
        return out

    for eager_obs, lazy_obs in zip(rollout(False), rollout(True)):
        np.testing.assert_array_equal(eager_obs, lazy_obs)

    mismatched = MultiTaskWrapper([_CountingFactory(0), _CountingFactory(1, obs_dim=3)], lazy=True)
    mismatched.reset(seed=0, options={"task_id": 0})
    with pytest.raises(ValueError, match=r"task 0 has .* task 1 has"):
        mismatched.reset(options={"task_id": 1})


def test_reset_option_task_id_stays_until_changed():
    env = MultiTaskWrapper(MultiGoalPointEnv())
    env.reset(seed=0, options={"task_id": 2})
    assert [env.reset()[1]["task_id"] for _ in range(5)] == [2] * 5 and env.fixed_task == 2
    env.reset(options={"task_id": None})
    assert env.fixed_task is None and len({env.reset()[1]["task_id"] for _ in range(40)}) == 4
