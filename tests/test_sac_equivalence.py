"""MultiTaskSAC's update is SB3's SAC, task by task.

One task's weights, entropy coefficient and batches are copied into a stock SB3 ``SAC``; both take the
same gradient steps on the same samples with the same reparametrisation noise, and every actor, critic,
target-critic and entropy-coefficient value, and every Adam moment, must still agree afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium.wrappers import TimeLimit
from stable_baselines3 import SAC
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.logger import configure
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from sb3_qmp import MultiTaskSAC, make_multitask_vec_env
from sb3_qmp.envs.point import MultiGoalPointEnv

NET_ARCH = [16, 16]
BATCH = 8
STEPS = 6

# Where each of SB3's tensors lives in the batched ones: (SB3 parameter, our parameter, view of task t's part).
Pair = tuple[th.Tensor, th.Tensor, Callable[[th.Tensor], th.Tensor]]


def _linear(sb3_layer: th.nn.Linear, ours, member: int, cols: slice = slice(None)) -> list[Pair]:
    """An ``nn.Linear`` (weight ``(out, in)``) against member ``member`` of a ``BatchedLinear`` (``(M, in, out)``)."""
    return [
        (sb3_layer.weight, ours.weight, lambda x: x[member][:, cols].T),
        (sb3_layer.bias, ours.bias, lambda x: x[member, 0, cols]),
    ]


def actor_pairs(model: MultiTaskSAC, sac: SAC, task: int) -> list[Pair]:
    ours, theirs = model.actor.net, sac.actor
    linears = [m for m in theirs.latent_pi if isinstance(m, th.nn.Linear)]
    pairs = [p for sb3, layer in zip(linears, ours.hidden, strict=True) for p in _linear(sb3, layer, task)]
    action_dim = model.actor.action_dim
    pairs += _linear(theirs.mu, ours.output, task, slice(0, action_dim))  # our output layer is [mean, log_std]
    pairs += _linear(theirs.log_std, ours.output, task, slice(action_dim, None))
    return pairs


def critic_pairs(model: MultiTaskSAC, sac: SAC, task: int, target: bool = False) -> list[Pair]:
    ours = (model.critic_target if target else model.critic).q_net
    theirs = sac.critic_target if target else sac.critic
    pairs = []
    for c, q_net in enumerate(theirs.q_networks):
        member = c * model.num_tasks + task  # member c * T + t is critic c of task t
        linears = [m for m in q_net if isinstance(m, th.nn.Linear)]
        pairs += [
            p for sb3, layer in zip(linears, [*ours.hidden, ours.output], strict=True) for p in _linear(sb3, layer, member)
        ]
    return pairs


def make_pair(env_factories: list[Callable[[], gym.Env]], seed: int) -> tuple[MultiTaskSAC, list[SAC]]:
    """A MultiTaskSAC with data in every task's buffer, and one SB3 SAC per task holding that task's weights."""
    env = make_multitask_vec_env(env_factories, seed=seed)
    model = MultiTaskSAC(
        env, learning_starts=20, gradient_steps=0, batch_size=BATCH, policy_kwargs=dict(net_arch=NET_ARCH), seed=seed
    )
    model.learn(60)  # random data, no gradient step
    # Make the targets differ from the critics and the entropy coefficients differ between tasks, so that a
    # mix-up of either shows.
    g = th.Generator().manual_seed(seed)
    with th.no_grad():
        for param in model.critic_target.parameters():
            param.add_(0.05 * th.randn(param.shape, generator=g))
        model.log_ent_coef.copy_(th.log(th.linspace(0.3, 0.9, model.num_tasks)))
    sacs = []
    for task in range(model.num_tasks):
        sac = SAC(
            "MlpPolicy",
            env_factories[task](),
            learning_starts=0,
            buffer_size=10,
            batch_size=BATCH,
            policy_kwargs=dict(net_arch=NET_ARCH),
            seed=seed,
        )
        pairs = actor_pairs(model, sac, task) + critic_pairs(model, sac, task) + critic_pairs(model, sac, task, True)
        with th.no_grad():
            for sb3, ours, view in pairs:
                sb3.copy_(view(ours))
            sac.log_ent_coef.copy_(model.log_ent_coef[task : task + 1])
        sacs.append(sac)
    return model, sacs


def task_batch(batch, task: int, features_dim: int) -> ReplayBufferSamples:
    """Task ``task``'s slice of a multi-task batch, as SB3's SAC samples it (no one-hot suffix)."""
    return ReplayBufferSamples(
        observations=batch.observations[task, :, :features_dim],
        actions=batch.actions[task],
        next_observations=batch.next_observations[task, :, :features_dim],
        dones=batch.dones[task, :, None],
        rewards=batch.rewards[task, :, None],
    )


def take_steps(model: MultiTaskSAC, sacs: list[SAC], monkeypatch: pytest.MonkeyPatch) -> None:
    """``STEPS`` gradient steps of the multi-task model and of every task's SAC, on the same batches and noise."""
    np.random.seed(0)
    g = th.Generator().manual_seed(1)
    batches = [model.replay_buffer.sample(BATCH) for _ in range(STEPS)]
    # Short random runs rarely end an episode: mark a third of the transitions terminal so the bootstrap mask counts.
    batches = [b._replace(dones=(th.rand(b.dones.shape, generator=g) < 1 / 3).float()) for b in batches]
    shape = (model.num_tasks, BATCH, model.actor.action_dim)
    # Per step: the noise of the actions on the batch's states, then on its next states (the order of both trains).
    noise = [th.randn(shape, generator=g) for _ in range(2 * STEPS)]

    def fake_randn_like(draws: Iterator[th.Tensor]) -> Callable[[th.Tensor], th.Tensor]:
        def randn_like(tensor: th.Tensor, **kwargs) -> th.Tensor:
            eps = next(draws)
            assert eps.shape == tensor.shape, (eps.shape, tensor.shape)
            return eps.clone()

        return randn_like

    our_batches = iter(batches)
    with monkeypatch.context() as patch:
        patch.setattr(model.replay_buffer, "sample", lambda *args, **kwargs: next(our_batches))
        patch.setattr(th, "randn_like", fake_randn_like(iter(noise)))
        model.set_logger(configure(None, []))
        model.train(gradient_steps=STEPS, batch_size=BATCH)
    features_dim = model.policy.features_dim
    for task, sac in enumerate(sacs):
        task_noise = iter([eps[task] for eps in noise])
        with monkeypatch.context() as patch:
            sac_batches = iter([task_batch(b, task, features_dim) for b in batches])
            patch.setattr(sac.replay_buffer, "sample", lambda *args, it=sac_batches, **kwargs: next(it))
            # Normal.rsample is loc + eps * scale: the same arithmetic with our eps.
            patch.setattr(
                DiagGaussianDistribution,
                "sample",
                lambda self, it=task_noise: self.distribution.loc + next(it) * self.distribution.scale,
            )
            sac.set_logger(configure(None, []))
            sac.train(gradient_steps=STEPS, batch_size=BATCH)


def assert_task_matches(model: MultiTaskSAC, sac: SAC, task: int) -> None:
    tolerance = dict(rtol=1e-5, atol=1e-6)
    groups = {
        "actor": (actor_pairs(model, sac, task), model.actor.optimizer, sac.actor.optimizer),
        "critic": (critic_pairs(model, sac, task), model.critic.optimizer, sac.critic.optimizer),
        "target": (critic_pairs(model, sac, task, target=True), None, None),
    }
    for group, (pairs, our_opt, sb3_opt) in groups.items():
        for k, (sb3, ours, view) in enumerate(pairs):
            th.testing.assert_close(view(ours.detach()), sb3.detach(), **tolerance, msg=f"task {task} {group} tensor {k}")
            if our_opt is None:
                continue
            our_state, sb3_state = our_opt.state[ours], sb3_opt.state[sb3]
            assert float(our_state["step"]) == float(sb3_state["step"]) == STEPS
            for key in ("exp_avg", "exp_avg_sq"):
                th.testing.assert_close(view(our_state[key]), sb3_state[key], **tolerance, msg=f"{group} {k} {key}")
    th.testing.assert_close(model.log_ent_coef.detach()[task : task + 1], sac.log_ent_coef.detach(), **tolerance)
    our_ent, sb3_ent = model.ent_coef_optimizer.state[model.log_ent_coef], sac.ent_coef_optimizer.state[sac.log_ent_coef]
    for key in ("exp_avg", "exp_avg_sq"):
        th.testing.assert_close(our_ent[key][task : task + 1], sb3_ent[key], **tolerance)


def _pendulum() -> gym.Env:
    return gym.make("Pendulum-v1")


def _point(task: int) -> Callable[[], gym.Env]:
    return lambda: TimeLimit(MultiGoalPointEnv(task_id=task), max_episode_steps=30)


@pytest.mark.parametrize(
    "env_factories",
    [[_pendulum], [_point(t) for t in range(3)]],
    ids=["one-task", "three-tasks"],
)
def test_every_task_takes_sb3_sac_steps(env_factories, monkeypatch):
    model, sacs = make_pair(env_factories, seed=4)
    for task, sac in enumerate(sacs):  # the copies start equal, and every task's weights are its own
        for sb3, ours, view in actor_pairs(model, sac, task) + critic_pairs(model, sac, task):
            assert th.equal(view(ours.detach()), sb3.detach())
            assert task == 0 or not th.equal(view(ours.detach()), view(ours.detach().roll(1, 0)))
    take_steps(model, sacs, monkeypatch)
    for task, sac in enumerate(sacs):
        assert_task_matches(model, sac, task)
