"""MultiHeadSAC ("Parameters only") and QMPMultiHead ("Parameters + Behaviors")."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

from sb3_qmp import MultiHeadSAC, QMPMultiHead, make_multitask_vec_env
from sb3_qmp.common.batched import MemberLayout
from sb3_qmp.common.buffers import MixedReplayBufferSamples, MultiTaskReplayBufferSamples
from sb3_qmp.mtsac.policies import MultiTaskSACPolicy
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
    with pytest.raises(ValueError, match=r"QMPMultiHead needs a MultiHeadSACPolicy .*got MultiTaskSACPolicy"):
        QMPMultiHead(MultiTaskSACPolicy, env, **SMALL)


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

    def recording_propose(obs, deterministic=False):
        recorded["proposals"] = propose(obs, deterministic=deterministic)
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


# ----------------------------------------------------------------------------------------------
# batch_mode="mixed": one batch over all tasks' data per gradient step (the authors' multi-head training)
# ----------------------------------------------------------------------------------------------
def test_batch_mode_is_validated(env):
    assert MultiHeadSAC(env, **SMALL).batch_mode == "per_task"  # the default
    with pytest.raises(ValueError, match=r"batch_mode must be one of \('per_task', 'mixed'\), got 'pooled'"):
        MultiHeadSAC(env, batch_mode="pooled", **SMALL)
    with pytest.raises(ValueError, match="batch_mode"):
        QMPMultiHead(env, batch_mode="Mixed", **SMALL)


def test_mixed_rows_go_through_their_tasks_heads():
    """The mixed-batch paths equal every row evaluated alone through its task's actor and critic heads."""
    th.manual_seed(0)
    actor = MultiHeadActor(T, D, A, [16, 16], head_arch=[8])
    critic = MultiHeadCritic(T, D, A, [16, 16], n_critics=2)
    tasks = th.tensor([2, 0, 2, 3, 3, 3, 1, 0, 2])
    n = tasks.shape[0]
    obs, actions = th.randn(n, D), th.rand(n, A) * 2 - 1
    layout = MemberLayout(tasks, T)
    with th.no_grad():
        mean, log_std = actor.row_distribution_params(obs, layout)
        q = critic.row_q_values(obs, actions, layout)
        assert mean.shape == log_std.shape == (n, A) and q.shape == (2, n)
        for row in range(n):
            task = tasks[row : row + 1]
            ref_mean, ref_log_std = actor.distribution_params(obs[row].view(1, 1, D), task)
            th.testing.assert_close(mean[row], ref_mean[0, 0])
            th.testing.assert_close(log_std[row], ref_log_std[0, 0])
            ref_q = critic(obs[row].expand(T, 1, D), actions[row].expand(T, 1, A))  # (C, T, 1): every head
            th.testing.assert_close(q[:, row], ref_q[:, tasks[row], 0])


def _batch_of(model, tasks: list[int]) -> MixedReplayBufferSamples:
    """A mixed batch of stored transitions of the given tasks (one row each, in that order)."""
    buffer = model.replay_buffer
    rows, idx = np.asarray(tasks), np.arange(len(tasks))
    data = buffer._get_samples_2d(rows, idx)
    return MixedReplayBufferSamples(*data, th.as_tensor(rows))


def test_mixed_step_takes_one_batch_of_the_requested_size(env, monkeypatch):
    model = MultiHeadSAC(env, batch_mode="mixed", **{**SMALL, "learning_starts": 200})
    with pytest.warns(UserWarning, match="before learning_starts"):
        model.learn(200)  # fills the buffer with random-action data, no update yet
    assert model._n_updates == 0
    requested = []
    sample_mixed = model.replay_buffer.sample_mixed

    def spy(batch_size, env=None):
        requested.append(batch_size)
        return sample_mixed(batch_size, env)

    monkeypatch.setattr(model.replay_buffer, "sample_mixed", spy)
    monkeypatch.setattr(model.replay_buffer, "sample", lambda *a, **k: pytest.fail("per-task sampling in mixed mode"))
    model.train(gradient_steps=3, batch_size=40)
    assert requested == [40, 40, 40] and model._n_updates == 3
    fractions = [model.logger.name_to_value[f"train/task_{t}/batch_frac"] for t in range(T)]
    assert sum(fractions) == pytest.approx(1.0) and all(f > 0 for f in fractions)  # several tasks in the batches


def test_mixed_step_updates_only_the_heads_of_the_rows_tasks(env, monkeypatch):
    """A gradient step on rows of tasks 0 and 2 moves the trunks and those tasks' heads and entropy
    coefficients only (fresh Adam state: a parameter with a zero gradient does not move)."""
    model = MultiHeadSAC(env, batch_mode="mixed", **{**SMALL, "learning_starts": 200})
    with pytest.warns(UserWarning, match="before learning_starts"):
        model.learn(200)
    batch = _batch_of(model, [0, 2, 2, 0, 2, 2, 2, 0])
    monkeypatch.setattr(model.replay_buffer, "sample_mixed", lambda batch_size, env=None: batch)
    actor_before = {k: v.detach().clone() for k, v in model.actor.state_dict().items()}
    critic_before = {k: v.detach().clone() for k, v in model.critic.state_dict().items()}
    ent_before = model.log_ent_coef.detach().clone()
    model.train(gradient_steps=1, batch_size=len(batch.tasks))
    moved_tasks = [True, False, True, False]
    for module, before in ((model.actor, actor_before), (model.critic, critic_before)):
        after = module.state_dict()
        for key in before:
            if key.startswith("trunk."):
                assert not th.equal(before[key], after[key]), f"trunk {key} did not move"
                continue
            per_task = before[key].view(-1, T, *before[key].shape[1:])  # head member c * T + t
            after_task = after[key].view(-1, T, *after[key].shape[1:])
            moved = [not th.equal(per_task[:, t], after_task[:, t]) for t in range(T)]
            assert moved == moved_tasks, (key, moved)
    moved = (model.log_ent_coef.detach() != ent_before).tolist()
    assert moved == moved_tasks, moved


def test_mixed_step_equals_the_per_task_step_on_a_balanced_batch(env, monkeypatch):
    """A mixed batch holding the same B rows of every task (task-major order, same noise) is the per-task
    step with every loss averaged over the T * B rows instead of summed over tasks: with plain SGD at
    T x the learning rate, two gradient steps leave every weight, target and entropy coefficient equal.
    Distinct per-task entropy coefficients make a row that used another task's coefficient show."""
    batch_per_task, lr = 6, 0.01
    models = {}
    for mode, mode_lr in (("per_task", lr), ("mixed", lr * T)):
        model = MultiHeadSAC(env, batch_mode=mode, **{**SMALL, "learning_starts": 100})
        with pytest.warns(UserWarning, match="before learning_starts"):
            model.learn(40)  # sets up the logger; no gradient step
        model.lr_schedule = lambda _, value=mode_lr: value  # train() writes the schedule's lr into the optimisers
        model.actor.optimizer = th.optim.SGD(model.actor.parameters(), lr=mode_lr)
        model.critic.optimizer = th.optim.SGD(model.critic.parameters(), lr=mode_lr)
        model.ent_coef_optimizer = th.optim.SGD([model.log_ent_coef], lr=mode_lr)
        models[mode] = model
    per_task, mixed = models["per_task"], models["mixed"]
    mixed.policy.load_state_dict(per_task.policy.state_dict())
    with th.no_grad():
        for model in models.values():
            model.log_ent_coef.copy_(th.log(th.tensor([0.05, 1.0, 3.0, 0.3])))

    gen = th.Generator().manual_seed(1)
    obs = th.cat([th.randn(T, batch_per_task, D, generator=gen), th.eye(T)[:, None].expand(-1, batch_per_task, -1)], -1)
    next_obs = obs.clone()
    next_obs[..., :D] += 0.1 * th.randn(T, batch_per_task, D, generator=gen)
    actions = th.rand(T, batch_per_task, A, generator=gen) * 2 - 1
    rewards = th.randn(T, batch_per_task, generator=gen)
    dones = (th.rand(T, batch_per_task, generator=gen) < 0.3).float()
    balanced = MultiTaskReplayBufferSamples(obs, actions, next_obs, dones, rewards)
    flat = MixedReplayBufferSamples(
        *(x.reshape(T * batch_per_task, *x.shape[2:]) for x in balanced),
        th.arange(T).repeat_interleave(batch_per_task),
    )
    monkeypatch.setattr(per_task.replay_buffer, "sample", lambda batch_size, env=None: balanced)
    monkeypatch.setattr(mixed.replay_buffer, "sample_mixed", lambda batch_size, env=None: flat)
    for model, batch_size in ((per_task, batch_per_task), (mixed, T * batch_per_task)):
        th.manual_seed(7)  # the same reparametrisation noise, drawn in the same (task-major) order
        model.train(gradient_steps=2, batch_size=batch_size)
    reference = per_task.policy.state_dict()
    for key, value in mixed.policy.state_dict().items():
        th.testing.assert_close(value, reference[key], rtol=1e-5, atol=1e-6, msg=key)
    th.testing.assert_close(mixed.log_ent_coef, per_task.log_ent_coef, rtol=1e-5, atol=1e-6)
    assert not th.equal(per_task.log_ent_coef.detach(), th.log(th.tensor([0.05, 1.0, 3.0, 0.3])))  # it did train


def test_mixed_mode_learns_every_dense_task():
    """Short run on the built-in env: every dense task's own-policy return improves (an untrained policy
    wanders for all 30 steps, return about -30 to -60; a trained one reaches its goal, about -8)."""
    from test_learning import DENSE_TASKS, per_task_returns

    train_env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=1, seed=0)
    model = MultiHeadSAC(
        train_env,
        batch_mode="mixed",
        learning_starts=500,
        batch_size=128,  # in all, about 32 per task
        train_freq=1,
        gradient_steps=2,
        policy_kwargs=dict(net_arch=[64, 64]),
        seed=0,
    )
    before = per_task_returns(model)
    model.learn(3_000)
    after = per_task_returns(model)
    assert (after[DENSE_TASKS] > before[DENSE_TASKS] + 10).all(), (before, after)
    assert (after[DENSE_TASKS] > -18).all(), after


@pytest.mark.parametrize("algo", [MultiHeadSAC, QMPMultiHead])
def test_batch_mode_survives_save_and_load(env, tmp_path, algo, monkeypatch):
    model = algo(env, batch_mode="mixed", **SMALL)
    model.learn(150)
    model.save(tmp_path / "model")
    model.save_replay_buffer(tmp_path / "buffer")
    loaded = algo.load(tmp_path / "model", env=env)
    assert loaded.batch_mode == "mixed"
    loaded.load_replay_buffer(tmp_path / "buffer")
    monkeypatch.setattr(type(loaded.replay_buffer), "sample", lambda *a, **k: pytest.fail("per-task sampling after load"))
    updates = loaded._n_updates
    loaded.learn(100, reset_num_timesteps=False)
    assert loaded._n_updates > updates
    assert algo.load(tmp_path / "model", env=env, batch_mode="per_task").batch_mode == "per_task"  # overridable
    with pytest.raises(ValueError, match="batch_mode must be one of"):
        algo.load(tmp_path / "model", env=env, batch_mode="pooled")
