"""One task's fault never corrupts another: non-finite proposals never win the Q-switch, and a non-finite
update is refused (naming the task) before any optimizer spreads it."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import set_constant_actors, set_distance_critics
from stable_baselines3.common.vec_env import VecEnvWrapper

from sb3_qmp import make_multitask_vec_env
from sb3_qmp.common.collectors import make_collector
from sb3_qmp.common.finite import NonFiniteUpdateError
from sb3_qmp.registry import get_algo

NAN_TASK, NAN_STEP = 2, 30  # vec-env step at which task 2's reward is nan (after learning_starts)
SMALL = dict(
    learning_starts=48, batch_size=16, buffer_size=2_000, train_freq=1, gradient_steps=1, policy_kwargs=dict(net_arch=[16, 16])
)
CASES: dict[str, dict[str, Any]] = {
    "qmp": {},
    "separated": {},
    "qmp_uniform": {},
    "qmp_domain": dict(collector_kwargs=dict(matrix=np.full((4, 4), 0.25))),
    "dnc": dict(distill_period=10**6),
    "dnc_reg": {},
    "mtsac_multihead": {},
    "qmp_multihead": {},
    "mtsac_multihead_mixed": dict(batch_mode="mixed"),
    "shared": {},
}


class NanRewardOnce(VecEnvWrapper):
    """Task ``task``'s reward becomes nan once, at vec-env step ``at``."""

    def __init__(self, venv: Any, task: int, at: int) -> None:
        super().__init__(venv)
        self.task, self.at, self.steps = task, at, 0

    def reset(self) -> Any:
        return self.venv.reset()

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        self.steps += 1
        if self.steps == self.at:
            rewards = rewards.copy()
            rewards[[i for i, info in enumerate(infos) if info["task_id"] == self.task]] = np.nan
        return obs, rewards, dones, infos


def make_model(name: str, nan: bool) -> Any:
    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    if nan:
        env = NanRewardOnce(env, NAN_TASK, NAN_STEP)
    algo = name.replace("_mixed", "")
    return get_algo(algo)(env, seed=0, **SMALL, **CASES[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_nan_reward_of_one_task_is_refused_before_it_reaches_any_weights(name: str) -> None:
    faulty = make_model(name, nan=True)
    with pytest.raises(NonFiniteUpdateError, match=r"task\(s\) \[2\] sampled nan/inf rewards") as error:
        faulty.learn(400)
    assert error.value.tasks == [NAN_TASK] and error.value.n_update == faulty._n_updates
    weights = {k: v.clone() for k, v in faulty.policy.state_dict().items()}
    assert all(th.isfinite(v).all() for v in weights.values())
    # The same run without the nan, stopped after the same number of gradient steps: equal weights.
    clean = make_model(name, nan=False)
    clean.learn(faulty.num_timesteps - faulty.n_envs)
    assert clean._n_updates == faulty._n_updates
    for key, value in clean.policy.state_dict().items():
        assert th.equal(value, weights[key]), f"{key} differs from the run without the nan"


def test_non_finite_proposal_never_wins_the_q_switch() -> None:
    model = get_algo("qmp")(make_multitask_vec_env("MultiGoalPoint-v0", seed=0), seed=0, **SMALL)
    policy = model.policy
    # Every critic prefers a_0 close to 0.9; policy 2 proposes 0.9 but is broken (nan), policy 1 proposes 0.5.
    set_constant_actors(policy, np.array([[-0.9, 0.0], [0.5, 0.0], [0.9, 0.0], [-0.5, 0.0]]))
    set_distance_critics(policy, np.full(4, 0.9))
    collector = model.collector
    features = th.zeros(8, policy.features_dim)
    tasks = th.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    _, chosen = collector.select(policy, features, tasks, deterministic=True)
    assert (chosen == 2).all()  # the healthy policy 2 wins every row
    with th.no_grad():
        policy.actor.net.output.bias[2, 0, 0] = float("nan")
    collector.reset_state(8)
    actions, chosen = collector.select(policy, features, tasks, deterministic=True)
    assert (chosen == 1).all() and th.isfinite(actions).all()
    # No finite proposal at all: every row acts with its own policy.
    with th.no_grad():
        policy.actor.net.output.bias[:, 0, 0] = float("nan")
    collector.reset_state(8)
    _, chosen = collector.select(policy, features, tasks, deterministic=True)
    assert th.equal(chosen, tasks)


def test_non_finite_critic_score_never_wins() -> None:
    model = get_algo("qmp")(
        make_multitask_vec_env("MultiGoalPoint-v0", seed=0), seed=0, collector_kwargs=dict(adaptive=True), **SMALL
    )
    policy = model.policy
    set_constant_actors(policy, np.array([[-0.9, 0.0], [0.5, 0.0], [0.9, 0.0], [-0.5, 0.0]]))
    set_distance_critics(policy, np.full(4, 0.9))
    with th.no_grad():  # task 1's critics score everything nan
        policy.critic.q_net.output.bias[1::4] = float("nan")
    features, tasks = th.zeros(4, policy.features_dim), th.arange(4)
    for collector_kwargs in (dict(), dict(adaptive=True)):
        collector = make_collector("qswitch", 4, **collector_kwargs)
        _, chosen = collector.select(policy, features, tasks, deterministic=True)
        assert chosen[1] == 1  # its own policy, not whichever nan "wins" an argmax
        assert chosen[0] == 2  # the other tasks are unaffected


class RaisesInStep(gym.Wrapper):
    def step(self, action: Any) -> Any:
        raise RuntimeError("boom in step")


def healthy() -> gym.Env:
    return gym.make("Pendulum-v1")


def broken() -> gym.Env:
    return RaisesInStep(gym.make("Pendulum-v1"))


def test_subproc_worker_error_names_the_env_and_the_exception() -> None:
    """A raising sub-env that is not the first one hung SB3's SubprocVecEnv under fork; here it is reported."""
    import sys

    import cloudpickle
    from stable_baselines3.common.vec_env import SubprocVecEnv

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the worker cannot import this test module
    try:
        env = make_multitask_vec_env([healthy, broken], vec_env_cls=SubprocVecEnv)
        assert env.start_method == "forkserver"
        env.reset()
        with pytest.raises(RuntimeError, match=r"(?s)worker died.*task 1.*raised in step: RuntimeError: boom in step"):
            env.step(np.zeros((2, 1)))
        env.close()
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
