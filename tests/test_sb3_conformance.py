"""SB3 conventions that SB3 users and callbacks rely on, checked for every algorithm of the package
(written from SB3's documented behaviour: policy save/load, attributes, constructor keywords, env access)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_qmp import MultiTaskWrapper, make_multitask_vec_env
from sb3_qmp.registry import ALGO_PATHS, get_algo

ALGOS = sorted(ALGO_PATHS)
SMALL = dict(learning_starts=16, batch_size=8, buffer_size=200, policy_kwargs=dict(net_arch=[16]), seed=0)
EXTRA = {"qmp_domain": dict(collector_kwargs=dict(matrix=np.full((4, 4), 0.25)))}


def make(algo: str, **kwargs):
    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    return get_algo(algo)(env, **{**SMALL, **EXTRA.get(algo, {}), **kwargs})


@pytest.mark.parametrize("algo", ALGOS)
def test_policy_saves_and_loads_on_its_own(algo: str, tmp_path: Path) -> None:
    model = make(algo)
    model.learn(32)
    model.policy.save(tmp_path / "policy.pth")
    policy = type(model.policy).load(tmp_path / "policy.pth")
    obs = model.env.reset()
    np.testing.assert_array_equal(policy.predict(obs, deterministic=True)[0], model.policy.predict(obs, deterministic=True)[0])
    for key, value in model.policy.state_dict().items():
        assert th.equal(value, policy.state_dict()[key]), key


@pytest.mark.parametrize("algo", ALGOS)
def test_sac_attributes_users_read(algo: str) -> None:
    learnt = make(algo)
    assert isinstance(learnt.log_ent_coef, th.Tensor) and learnt.ent_coef_optimizer is not None
    fixed = make(algo, ent_coef=0.1)
    assert fixed.log_ent_coef is None and fixed.ent_coef_optimizer is None
    assert "MlpPolicy" in type(learnt).policy_aliases
    assert learnt.learn(16) is learnt  # learn returns the model, as in SB3


@pytest.mark.parametrize("algo", ALGOS)
def test_optimize_memory_usage_keyword(algo: str) -> None:
    assert make(algo, optimize_memory_usage=False).optimize_memory_usage is False
    with pytest.raises(ValueError, match="optimize_memory_usage=True is not supported"):
        make(algo, optimize_memory_usage=True)


@pytest.mark.parametrize("algo", ALGOS)
def test_parameters_round_trip(algo: str) -> None:
    model, other = make(algo), make(algo, seed=1)
    other.set_parameters(model.get_parameters())
    for key, value in model.policy.state_dict().items():
        assert th.equal(value, other.policy.state_dict()[key]), key


@pytest.mark.parametrize("algo", ALGOS)
def test_episodic_train_freq_with_several_sub_envs_is_refused_up_front(algo: str) -> None:
    with pytest.raises(ValueError, match=r"train_freq=\(1, 'episode'\) \(episodes\) needs a single env .* 4 sub-envs"):
        make(algo, train_freq=(1, "episode"))


def test_episodic_train_freq_with_one_sub_env_trains() -> None:
    env = DummyVecEnv([lambda: Monitor(gym.make("MultiGoalPoint-v0"))])
    model = get_algo("qmp")(env, train_freq=(1, "episode"), **SMALL)
    model.learn(600)  # 20 episodes: every task has data, one update per episode
    assert model._n_updates > 0


def test_vec_env_attribute_access_reaches_the_task_env() -> None:
    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    env.reset()
    assert env.get_attr("step_size") == [0.2] * 4 and env.has_attr("goal_radius") and not env.has_attr("no_such_attr")
    assert env.get_attr("task_id") == [0, 1, 2, 3]  # the wrapper's own attributes come first
    env.set_attr("step_size", 0.5)  # SB3: set_attr sets it on the outermost env that has the attribute
    single = MultiTaskWrapper(gym.make("MultiGoalPoint-v0").unwrapped.env)
    assert single.step_size == 0.2 and single.env.unwrapped is single.env.unwrapped
    with pytest.raises(AttributeError):
        _ = single._no_private_forwarding


def test_make_multitask_vec_env_takes_make_vec_env_keywords(tmp_path: Path) -> None:
    class Scale(gym.ObservationWrapper):
        def __init__(self, env: gym.Env, factor: float = 1.0) -> None:
            super().__init__(env)
            self.factor = factor

        def observation(self, observation: np.ndarray) -> np.ndarray:
            return observation

    env = make_multitask_vec_env(
        "MultiGoalPoint-v0",
        seed=0,
        wrapper_class=Scale,
        wrapper_kwargs=dict(factor=3.0),
        monitor_dir=str(tmp_path),
        monitor_kwargs=dict(info_keywords=("task_id",)),
    )
    assert env.get_attr("factor") == [3.0] * 4
    env.reset()
    for _ in range(40):
        env.step(np.zeros((4, 2)))
    env.close()
    header = (tmp_path / "0.monitor.csv").read_text().splitlines()[1]
    assert header.endswith("task_id")
