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


def make_policies_distinct(model, seed: int = 0, scale: float = 0.3) -> None:
    """Add independent noise to every actor member, so means *and* log-stds differ between policies."""
    g = th.Generator().manual_seed(seed)
    with th.no_grad():
        for param in model.actor.parameters():
            param.add_(scale * th.randn(param.shape, generator=g))


def reference_penalty(model, features: th.Tensor) -> th.Tensor:
    """``expected[i] = sum_{j != i} mean_{s, d} KL(N_j || N_i)``, computed with torch.distributions."""
    pooled = features.reshape(-1, features.shape[-1])
    n_tasks = model.num_tasks
    with th.no_grad():
        mean, log_std = model.actor.distribution_params(pooled.unsqueeze(0).expand(n_tasks, -1, -1))
    normals = [Normal(mean[t], log_std[t].exp()) for t in range(n_tasks)]
    expected = th.zeros(n_tasks)
    for i in range(n_tasks):
        for j in range(n_tasks):
            if j != i:
                expected[i] += kl_divergence(normals[j], normals[i]).mean()  # over states and action dims
    return expected


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


def test_penalty_matches_torch_distributions(env):
    # Catches a reversed KL direction, an average over the other policies instead of a sum, and a wrong axis.
    model = DnCReg(env, beta=0.5, **SMALL)
    make_policies_distinct(model)
    features = th.randn(4, 16, 2, generator=th.Generator().manual_seed(3))
    with th.no_grad():
        penalty = model.kl_penalty(features)
    expected = reference_penalty(model, features)
    assert (expected > 1e-2).all()
    th.testing.assert_close(penalty, expected, rtol=1e-5, atol=1e-6)
    # The reverse direction differs by far more than the tolerance: the check above can tell them apart.
    pooled = features.reshape(-1, 2).unsqueeze(0).expand(4, -1, -1)
    with th.no_grad():
        mean, log_std = model.actor.distribution_params(pooled)
    reverse = gaussian_kl(mean.unsqueeze(0), log_std.unsqueeze(0), mean.unsqueeze(1), log_std.unsqueeze(1)).mean((2, 3))
    assert not th.allclose(reverse.sum(0), expected, rtol=1e-2)


@pytest.mark.parametrize("task", [0, 2])
def test_penalty_gradient_reaches_only_own_actor(env, task):
    model = DnCReg(env, **SMALL)
    make_policies_distinct(model, seed=1)
    model.actor.zero_grad(set_to_none=False)
    model.kl_penalty(th.randn(4, 16, 2))[task].backward()
    for name, param in model.actor.named_parameters():
        assert param.grad is not None, name
        for member in range(4):
            grad_norm = float(param.grad[member].abs().sum())
            if member == task:
                assert grad_norm > 0, f"{name}: no gradient for the task's own actor"
            else:
                assert grad_norm == 0, f"{name}: the penalty of task {task} moved actor {member}"


@pytest.mark.parametrize("task", [0, 3])
def test_other_policies_get_no_gradient_from_a_tasks_actor_loss(env, task):
    # The authors' choice (per-policy optimisers that zero their gradients before stepping): task i's whole
    # actor loss, SAC part plus KL penalty, moves pi_i only; pi_j enters its penalty as a fixed target.
    model = DnCReg(env, beta=10.0, **SMALL)
    make_policies_distinct(model, seed=2)
    features = th.randn(4, 16, 2, generator=th.Generator().manual_seed(6))
    actions_pi, log_prob = model.actor.action_log_prob(features)
    model.actor.zero_grad(set_to_none=False)
    model._actor_loss(features, th.ones(4), actions_pi, log_prob)[task].backward()
    for name, param in model.actor.named_parameters():
        for member in range(4):
            grad_norm = float(param.grad[member].abs().sum())
            assert (grad_norm > 0) if member == task else (grad_norm == 0), (name, member, grad_norm)


def test_large_beta_actor_updates_pull_policies_together(env):
    # Same (seeded, distinct) initial actors, same batches: only beta differs.
    def pairwise_kl_after(beta: float) -> tuple[float, float]:
        model = DnCReg(env, beta=beta, gradient_steps=0, **{**SMALL, "learning_starts": 400})
        model.learn(400, progress_bar=False)  # fills the buffers with random actions, no update
        states = th.as_tensor(model.replay_buffer.observations[:, :64, :2].reshape(4, 64, 2))
        with th.no_grad():
            before = float(model.kl_penalty(states).sum())
        th.manual_seed(0)
        np.random.seed(0)
        model.train(gradient_steps=60, batch_size=32)
        with th.no_grad():
            return before, float(model.kl_penalty(states).sum())

    before, after_zero = pairwise_kl_after(0.0)
    before_large, after_large = pairwise_kl_after(10.0)
    assert before == pytest.approx(before_large) and before > 0.1
    assert after_large < 0.1 * before
    assert after_large < 0.25 * after_zero  # SAC alone also moves the actors; the penalty pulls them together


def test_kl_states_subsample(env):
    model = DnCReg(env, **SMALL)
    make_policies_distinct(model, seed=4)
    features = th.randn(4, 16, 2, generator=th.Generator().manual_seed(5))
    with th.no_grad():
        full = model.kl_penalty(features)
        for kl_states in (64, 1000):  # >= T * B: every pooled state, the same penalty
            model.kl_states = kl_states
            th.testing.assert_close(model.kl_penalty(features), full, rtol=0, atol=0)
        model.kl_states = 8
        th.manual_seed(0)
        subset = model.kl_penalty(features)
    assert subset.shape == (4,) and th.isfinite(subset).all()
    assert not th.allclose(subset, full, rtol=1e-3)


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


@pytest.mark.parametrize("reset", [True, False])
def test_distillation_resets_task_actor_optimizer(env, reset):
    model = DnC(env, distill_period=10**9, distill_reset_optimizer=reset, **DISTILL, **SMALL)
    model.learn(200, progress_bar=False)
    actor_opt = model.actor.optimizer
    params = list(model.actor.parameters())
    before = [{k: v.clone() for k, v in actor_opt.state[p].items()} for p in params]
    assert all(float(state["step"]) > 1 for state in before)
    critic_before = [{k: v.clone() for k, v in s.items()} for s in model.critic.optimizer.state.values()]
    model.distill()
    # The central actor's own optimizer keeps its state (warm start); the critics' is untouched.
    assert all(float(s["step"]) == DISTILL["distill_epochs"] for s in model.central_actor.optimizer.state.values())
    for old, new in zip(critic_before, model.critic.optimizer.state.values(), strict=True):
        assert all(th.equal(old[k], new[k]) for k in old)
    if not reset:
        for param, old in zip(params, before):
            assert all(th.equal(old[k], actor_opt.state[param][k]) for k in old)
        return
    assert all(len(actor_opt.state.get(p, {})) == 0 for p in params)
    # The next actor step is Adam's first step from the distilled weights: step 1, moments of this gradient only.
    model.train(gradient_steps=1, batch_size=32)
    beta1, beta2 = actor_opt.param_groups[0]["betas"]
    for param in params:
        state = actor_opt.state[param]
        assert float(state["step"]) == 1
        th.testing.assert_close(state["exp_avg"], (1 - beta1) * param.grad)
        th.testing.assert_close(state["exp_avg_sq"], (1 - beta2) * param.grad.square())


def test_distillation_schedule(env):
    model = DnC(env, n_distillations=3, **DISTILL, **SMALL)
    model.learn(300, progress_bar=False)
    assert model.distill_count == 3
    model = DnC(env, distill_period=100, **DISTILL, **SMALL)
    model.learn(300, progress_bar=False)
    assert model.distill_count == 3  # at env steps 100, 200, 300


def test_distillation_schedule_in_chunks(env):
    # n_distillations is per learn call: the grid is rebuilt over each chunk's steps.
    model = DnC(env, n_distillations=3, **DISTILL, **SMALL)
    model.learn(300, progress_bar=False)
    assert model.distill_count == 3
    model.learn(300, reset_num_timesteps=False, progress_bar=False)
    assert model.distill_count == 6 and model._distill_every == 100
    # distill_period is one grid over all chunks: due at 100, 200, 300 whatever the split.
    model = DnC(env, distill_period=100, **DISTILL, **SMALL)
    model.learn(152, progress_bar=False)
    assert model.distill_count == 1 and model._next_distill_at == 200
    model.learn(148, reset_num_timesteps=False, progress_bar=False)
    assert model.num_timesteps == 300 and model.distill_count == 3 and model._next_distill_at == 400


def test_reg_only_never_distills(env):
    # DnCReg is DnC without the distillation: no central actor, no schedule, nothing saved for them.
    model = DnCReg(env, beta=1e-3, **SMALL)
    model.learn(300, progress_bar=False)
    assert model._n_updates > 0
    assert not hasattr(model, "central_actor") and not hasattr(model, "distill")
    assert "central_actor" not in model._get_torch_save_params()[0]
    assert isinstance(DnC(env, **SMALL), DnCReg)  # DnC adds the distillation to it
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
        (dict(distill_reset_optimizer="yes"), "distill_reset_optimizer"),
        (dict(collector="qswitch"), "'own' collector"),
    ],
)
def test_bad_arguments(env, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DnC(env, **kwargs, **SMALL)
