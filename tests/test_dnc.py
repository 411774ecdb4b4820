"""DnC and DnCReg: the KL penalty, the distillation and its schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from torch.distributions import Normal, kl_divergence

from sb3_qmp import DnC, DnCReg
from sb3_qmp.dnc import gaussian_kl, pairwise_policy_kl

SMALL = dict(learning_starts=50, batch_size=32, buffer_size=5_000, policy_kwargs=dict(net_arch=[32, 32]), seed=0)
DISTILL = dict(distill_epochs=30, distill_batch_size=32)


def make_all_policies_equal(model) -> None:
    with th.no_grad():
        for param in model.actor.parameters():
            param.copy_(param[:1].expand_as(param))


def test_gaussian_kl_matches_torch():
    g = th.Generator().manual_seed(0)
    mp, mq = th.randn(5, 3, generator=g), th.randn(5, 3, generator=g)
    lp, lq = th.randn(5, 3, generator=g) * 0.5, th.randn(5, 3, generator=g) * 0.5
    th.testing.assert_close(gaussian_kl(mp, lp, mq, lq), kl_divergence(Normal(mp, lp.exp()), Normal(mq, lq.exp())))


def test_pairwise_kl_direction_and_gradient_sign():
    g = th.Generator().manual_seed(1)
    mean = th.randn(3, 10, 2, generator=g).requires_grad_(True)
    log_std = (0.3 * th.randn(3, 10, 2, generator=g)).requires_grad_(True)
    kl = pairwise_policy_kl(mean, log_std)
    # entry [j, i] = KL(pi_j || pi_i)
    direct = gaussian_kl(mean[1], log_std[1], mean[0], log_std[0]).mean()
    th.testing.assert_close(kl[1, 0], direct)
    assert th.allclose(kl.diagonal(), th.zeros(3), atol=1e-6)
    # Task 0's penalty only moves pi_0 (pi_j is detached).
    penalty_0 = kl[:, 0].sum()
    penalty_0.backward()
    assert mean.grad[1:].abs().sum() == 0 and log_std.grad[1:].abs().sum() == 0
    assert mean.grad[0].abs().sum() > 0
    # Moving pi_0 toward pi_1 (and pi_2) reduces it; a small step against the gradient too.
    with th.no_grad():
        closer_mean = mean.clone()
        closer_mean[0] = mean[0] + 0.5 * (mean[1:].mean(dim=0) - mean[0])
        closer_log_std = log_std.clone()
        closer_log_std[0] = log_std[0] + 0.5 * (log_std[1:].mean(dim=0) - log_std[0])
        assert pairwise_policy_kl(closer_mean, closer_log_std)[:, 0].sum() < penalty_0
        stepped_mean = mean - 1e-2 * mean.grad
        stepped_log_std = log_std - 1e-2 * log_std.grad
        assert pairwise_policy_kl(stepped_mean, stepped_log_std)[:, 0].sum() < penalty_0


def test_penalty_zero_when_policies_equal_and_added_to_actor_loss(env):
    model = DnCReg(env, beta=0.5, **SMALL)
    features = th.randn(4, 16, 2)
    penalty = model.kl_penalty(features)
    assert penalty.shape == (4,) and (penalty > 0).all()

    # The actor loss is SAC's plus beta * penalty.
    actions_pi, log_prob = model.actor.action_log_prob(features)
    ent_coef = th.ones(4)
    with_penalty = model._actor_loss(features, ent_coef, actions_pi, log_prob)
    model.beta = 0.0
    without = model._actor_loss(features, ent_coef, actions_pi, log_prob)
    th.testing.assert_close(with_penalty - without, 0.5 * penalty)

    make_all_policies_equal(model)
    features.requires_grad_(False)
    model.actor.zero_grad()
    penalty = model.kl_penalty(features)
    assert th.allclose(penalty, th.zeros(4), atol=1e-6)
    penalty.sum().backward()
    assert all(p.grad.abs().max() < 1e-6 for p in model.actor.parameters())


def test_kl_states_subsample(env):
    model = DnCReg(env, kl_states=8, **SMALL)
    assert model.kl_penalty(th.randn(4, 16, 2)).shape == (4,)


@pytest.mark.parametrize("distill_loss", ["mle", "kl"])
def test_distillation_overwrites_every_task_policy(env, distill_loss):
    model = DnC(env, distill_period=10**9, distill_loss=distill_loss, **DISTILL, **SMALL)
    model.learn(200, progress_bar=False)
    assert model.distill_count == 0
    base = np.random.default_rng(0).uniform(-1, 1, size=(8, 2)).astype(np.float32)
    obs = np.concatenate([np.concatenate([base, np.tile(np.eye(4, dtype=np.float32)[t], (8, 1))], 1) for t in range(4)])
    before, _ = model.predict(obs, deterministic=True)
    assert not np.allclose(before[:8], before[8:16])

    sample = model.replay_buffer.sample(64)
    features, _ = model.policy.split_obs(sample.observations)
    with th.no_grad():
        initial_loss = float(model._distill_loss(features, sample.actions))
    model.distill_epochs = 200
    final_loss = model.distill()
    assert model.distill_count == 1
    assert final_loss < initial_loss

    after, _ = model.predict(obs, deterministic=True)
    with th.no_grad():
        mean, _ = model.central_actor.distribution_params(th.as_tensor(base).unsqueeze(0))
    central = th.tanh(mean[0]).numpy()
    for t in range(4):
        np.testing.assert_allclose(after[8 * t : 8 * (t + 1)], central, rtol=1e-5, atol=1e-6)
    for param, central_param in zip(model.actor.parameters(), model.central_actor.parameters()):
        assert th.equal(param, central_param.expand_as(param))


def test_distillation_schedule(env):
    model = DnC(env, n_distillations=3, **DISTILL, **SMALL)
    model.learn(300, progress_bar=False)
    assert model.distill_count == 3
    model = DnC(env, distill_period=100, **DISTILL, **SMALL)
    model.learn(300, progress_bar=False)
    assert model.distill_count == 3  # at env steps 100, 200, 300


def test_reg_only_never_distills(env, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("DnCReg distilled")

    model = DnCReg(env, beta=1e-3, **SMALL)
    monkeypatch.setattr(model, "distill", fail)
    model.learn(300, progress_bar=False)
    assert model._n_updates > 0 and model.distill_count == 0 and model.central_actor is None
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="does not distill"):
        model.distill()
    with pytest.raises(TypeError, match="never distills"):
        DnCReg(env, distill_period=100, **SMALL)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(beta=-1e-3), "beta"),
        (dict(beta=float("nan")), "beta"),
        (dict(distill_period=0), "distill_period"),
        (dict(distill_period=-5), "distill_period"),
        (dict(n_distillations=0), "n_distillations"),
        (dict(distill_epochs=0), "distill_epochs"),
        (dict(distill_batch_size=0), "distill_batch_size"),
        (dict(distill_loss="l2"), "distill_loss"),
        (dict(kl_states=0), "kl_states"),
        (dict(collector="qswitch"), "'own' collector"),
    ],
)
def test_bad_arguments(env, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DnC(env, **kwargs, **SMALL)
