"""MultiHeadSAC ("Parameters only") and QMPMultiHead ("Parameters + Behaviors")."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

from sb3_qmp import MultiHeadSAC, QMPMultiHead
from sb3_qmp.multihead import MultiHeadActor, MultiHeadCritic, MultiHeadSACPolicy

T, D, A = 4, 2, 2
SMALL = dict(learning_starts=50, batch_size=32, buffer_size=5_000, policy_kwargs=dict(net_arch=[32, 32]), seed=0)


def test_architecture(env):
    model = MultiHeadSAC(env, **{**SMALL, "policy_kwargs": dict(net_arch=[32, 32], head_arch=[8])})
    assert isinstance(model.policy, MultiHeadSACPolicy)
    actor, critic = model.actor, model.critic
    assert isinstance(actor, MultiHeadActor) and isinstance(critic, MultiHeadCritic)
    # One trunk parameter set (1 member) for the actor; one per twin critic; one head per task.
    assert actor.trunk.num_members == 1 and actor.heads.num_members == T
    assert critic.trunk.num_members == 2 and critic.heads.num_members == 2 * T
    assert [layer.out_features for layer in actor.heads.hidden] == [8]
    assert model.log_ent_coef.shape == (T,)  # per-task entropy coefficients
    with pytest.raises(ValueError, match="trunk"):
        MultiHeadSAC(env, **{**SMALL, "policy_kwargs": dict(net_arch=[])})
    with pytest.raises(ValueError, match="'own' collector"):
        MultiHeadSAC(env, collector="qswitch", **SMALL)
    with pytest.raises(ValueError, match="'qswitch' collector"):
        QMPMultiHead(env, collector="own", **SMALL)


def test_heads_differ_per_task():
    th.manual_seed(0)
    actor = MultiHeadActor(T, D, A, [16, 16])
    obs = th.randn(5, D)
    actions = th.stack([actor.task_actions(obs, th.full((5,), t), deterministic=True) for t in range(T)])
    for t in range(1, T):
        assert not th.allclose(actions[t], actions[0])
    # Mixed rows route each row to its own head.
    tasks = th.tensor([0, 3, 1, 2, 3])
    mixed = actor.task_actions(obs, tasks, deterministic=True)
    th.testing.assert_close(mixed, actions[tasks, th.arange(5)])


def test_task_loss_updates_trunk_and_own_head_only():
    th.manual_seed(0)
    actor = MultiHeadActor(T, D, A, [16, 16])
    optimizer = th.optim.Adam(actor.parameters(), lr=1e-2)
    before = {k: v.detach().clone() for k, v in actor.state_dict().items()}
    task = 2
    mean, log_std = actor.distribution_params(th.randn(T, 8, D))
    (mean[task].square().sum() + log_std[task].sum()).backward()  # task 2's loss only
    optimizer.step()
    after = actor.state_dict()
    for key in before:
        if key.startswith("trunk."):
            assert not th.equal(before[key], after[key]), f"trunk {key} unchanged"
        else:
            changed = [not th.equal(before[key][j], after[key][j]) for j in range(T)]
            assert changed == [j == task for j in range(T)], (key, changed)


def test_critic_task_loss_and_score_consistency():
    th.manual_seed(0)
    critic = MultiHeadCritic(T, D, A, [16, 16], n_critics=2)
    obs, actions = th.randn(T, 8, D), th.rand(T, 8, A) * 2 - 1
    q = critic(obs, actions)
    assert q.shape == (2, T, 8)
    q[:, 1].sum().backward()
    head_grad = critic.heads.output.weight.grad.view(2, T, -1).abs().sum(dim=(0, 2))
    assert head_grad[1] > 0 and (head_grad[[0, 2, 3]] == 0).all()
    assert all(p.grad.abs().sum() > 0 for p in critic.trunk.parameters())
    # score(): row n scored with its task's head; equals the training path.
    tasks = th.tensor([3, 0, 1, 1, 2])
    obs_rows = th.randn(5, D)
    cands = th.rand(5, 3, A) * 2 - 1
    with th.no_grad():
        scores = critic.score(obs_rows, cands, tasks, reduce="min")
        for n in range(5):
            full = critic(obs_rows[n].expand(T, 3, D), cands[n].expand(T, 3, A))  # (C, T, 3)
            th.testing.assert_close(scores[n], full[:, tasks[n]].min(dim=0).values)
            q1 = critic.score(obs_rows[n : n + 1], cands[n : n + 1], tasks[n : n + 1], reduce="q1")[0]
            th.testing.assert_close(q1, full[0, tasks[n]])


def test_propose_uses_one_trunk_pass():
    th.manual_seed(0)
    actor = MultiHeadActor(T, D, A, [16, 16])
    calls = []
    actor.trunk.register_forward_hook(lambda *args: calls.append(1))
    obs = th.randn(6, D)
    mean_actions, sampled = actor.propose(obs)
    assert len(calls) == 1
    assert mean_actions.shape == sampled.shape == (T, 6, A)
    for t in range(T):
        th.testing.assert_close(mean_actions[t], actor.task_actions(obs, th.full((6,), t), deterministic=True))


def test_qmp_multihead_executes_argmax_proposal(env, monkeypatch):
    model = QMPMultiHead(env, **SMALL)
    policy = model.policy
    n = 6
    features = th.randn(n, D)
    tasks = th.tensor([0, 1, 2, 3, 0, 1])
    table = th.tensor(
        [
            [0.0, 5.0, 1.0, 2.0],  # -> 1
            [3.0, 3.0, 1.0, 3.0],  # tie -> lowest index 0
            [0.0, 0.0, 0.0, 9.0],  # -> 3
            [-1.0, -2.0, -0.5, -3.0],  # -> 2
            [7.0, 7.0, 7.0, 7.0],  # all tied -> 0
            [0.0, 1.0, 4.0, 4.0],  # tie -> 2
        ]
    )
    expected = th.tensor([1, 0, 3, 2, 0, 2])
    recorded = {}
    propose = policy.actor.propose

    def recording_propose(obs):
        recorded["proposals"] = propose(obs)
        return recorded["proposals"]

    def fake_score(obs, actions, score_tasks, reduce="q1"):
        assert actions.shape == (n, T, A) and th.equal(score_tasks, tasks)
        return table

    monkeypatch.setattr(policy.actor, "propose", recording_propose)
    monkeypatch.setattr(policy.critic, "score", fake_score)
    with th.no_grad():
        actions, chosen = model.collector.select(policy, features, tasks)
    assert th.equal(chosen, expected)
    th.testing.assert_close(actions, recorded["proposals"][1][expected, th.arange(n)])


@pytest.mark.parametrize("algo", [MultiHeadSAC, QMPMultiHead])
def test_learn_end_to_end(env, algo):
    model = algo(env, **SMALL)
    model.learn(300, progress_bar=False)
    assert model.num_timesteps == 300 and model._n_updates > 0
    counts = model.selection_matrix(normalize=False)
    assert counts.sum() > 0
    if algo is MultiHeadSAC:
        np.testing.assert_array_equal(counts, np.diag(np.diag(counts)))


def test_qmp_multihead_commitment_and_own_prob(env, monkeypatch):
    # The Q-switch options work on the multi-head network exactly as on separate networks.
    k = 3
    model = QMPMultiHead(env, collector_kwargs=dict(commit_steps=k), **SMALL)
    policy = model.policy
    features, tasks = th.randn(4, D), th.arange(4)
    tables = iter([th.eye(T)[[1, 2, 3, 0]], th.eye(T)[[3, 0, 1, 2]]])  # preference at the 1st and 2nd decision
    current = {"table": next(tables)}
    monkeypatch.setattr(policy.critic, "score", lambda obs, actions, score_tasks, reduce="q1": current["table"])
    history = []
    with th.no_grad():
        for step in range(2 * k):
            if step == 1:
                current["table"] = next(tables)  # committed rows must not follow until their window ends
            history.append(model.collector.select(policy, features, tasks)[1])
    assert all(th.equal(h, th.tensor([1, 2, 3, 0])) for h in history[:k])
    assert all(th.equal(h, th.tensor([3, 0, 1, 2])) for h in history[k:])

    own = QMPMultiHead(env, collector_kwargs=dict(own_prob=1.0, commit_steps=k), **SMALL)
    with th.no_grad():
        for _ in range(2 * k):
            assert th.equal(own.collector.select(own.policy, features, tasks)[1], tasks)
