"""Batched networks: rows routed to members by index give exactly each member's own output."""

from __future__ import annotations

import pytest
import torch as th

from sb3_qmp.common.batched import BatchedMLP, MemberLayout, member_layout
from sb3_qmp.mtsac.policies import MultiTaskActor, MultiTaskCritic
from sb3_qmp.multihead.policies import MultiHeadActor, MultiHeadCritic

T, D, A = 4, 5, 3
LAYOUTS = {
    "in order": [0, 1, 2, 3],
    "two per member, in order": [0, 0, 1, 1, 2, 2, 3, 3],
    "permuted": [2, 0, 3, 1],
    "uneven, a member missing": [1, 1, 3, 1, 0],
    "single row": [2],
}


@pytest.mark.parametrize("members", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_pack_unpack_round_trip(members):
    members = th.tensor(members)
    layout = MemberLayout(members, T)
    x = th.randn(len(members), 2, 3)
    packed = layout.pack(x)
    assert packed.shape[:2] == (T, int(th.bincount(members, minlength=T).max()))
    for row, member in enumerate(members.tolist()):  # every row sits in its member's slice
        assert any(th.equal(packed[member, slot], x[row]) for slot in range(packed.shape[1]))
    th.testing.assert_close(layout.unpack(packed), x)
    assert layout.in_order == (members.tolist() in (LAYOUTS["in order"], LAYOUTS["two per member, in order"]))


def test_layout_cache_ignores_later_in_place_edits():
    members = th.tensor([0, 1, 2, 3])
    first = member_layout(members, T)
    members[0] = 3
    second = member_layout(members, T)
    assert second is not first and th.equal(second.member, th.tensor([3, 1, 2, 3]))
    with pytest.raises(ValueError, match="Member indices"):
        MemberLayout(th.tensor([0, 4]), T)


def reference_rows(net: BatchedMLP, x: th.Tensor, members: th.Tensor) -> th.Tensor:
    """Row by row, through a private copy of its member's weights (the slow, obviously right way)."""
    return th.cat([net(x[n].view(1, 1, -1), members[n : n + 1]).view(1, -1) for n in range(x.shape[0])])


@pytest.mark.parametrize("members", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_task_actions_use_each_rows_own_policy(members):
    th.manual_seed(0)
    tasks = th.tensor(members)
    obs = th.randn(len(members), D)
    actor = MultiTaskActor(T, D, A, [16, 16])
    with th.no_grad():
        expected = th.tanh(reference_rows(actor.net, obs, tasks)[:, :A])
        th.testing.assert_close(actor.task_actions(obs, tasks, deterministic=True), expected)


@pytest.mark.parametrize("members", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("reduce", ["q1", "min"])
def test_critic_score_uses_each_rows_own_critics(members, reduce):
    th.manual_seed(1)
    tasks = th.tensor(members)
    n, k = len(members), 3
    obs, actions = th.randn(n, D), th.randn(n, k, A)
    critic = MultiTaskCritic(T, D, A, [16, 16])
    with th.no_grad():
        x = th.cat([obs.unsqueeze(1).expand(-1, k, -1), actions], dim=-1)
        per_critic = [
            th.stack([reference_rows(critic.q_net, x[:, j], tasks + c * T).squeeze(1) for j in range(k)], dim=1)
            for c in range(critic.n_critics)
        ]
        expected = per_critic[0] if reduce == "q1" else th.minimum(*per_critic)
        th.testing.assert_close(critic.score(obs, actions, tasks, reduce), expected)


@pytest.mark.parametrize("members", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_multihead_task_actions_and_score_match_the_training_path(members):
    th.manual_seed(2)
    tasks = th.tensor(members)
    obs = th.randn(len(members), D)
    actor, critic = MultiHeadActor(T, D, A, [16]), MultiHeadCritic(T, D, A, [16])
    with th.no_grad():
        mean, _ = actor.distribution_params(obs.unsqueeze(0).expand(T, -1, -1))  # every head on every row
        expected = th.tanh(mean[tasks, th.arange(len(members))])
        th.testing.assert_close(actor.task_actions(obs, tasks, deterministic=True), expected)
        q = critic(obs.unsqueeze(0).expand(T, -1, -1), expected.unsqueeze(0).expand(T, -1, -1))  # (C, T, N)
        score = critic.score(obs, expected.unsqueeze(1), tasks, "min").squeeze(1)
        th.testing.assert_close(score, q.min(dim=0).values[tasks, th.arange(len(members))])


def test_rows_of_one_member_run_only_through_that_member() -> None:
    """N rows of one task: the networks see N rows (not T x N padded ones), with the same results."""
    from sb3_qmp.common.batched import BatchedMLP, MemberLayout, run_rows

    th.manual_seed(0)
    num_members, n = 12, 40
    net = BatchedMLP(2 * num_members, 5, [8], 3)
    seen: list[int] = []
    net.hidden[0].register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0] * args[0].shape[1]))
    x = th.randn(n, 5)
    one = MemberLayout(th.full((n,), 7), num_members)
    assert not one.balanced
    y = run_rows(net, x, one, copies=2)
    assert sum(seen) == 2 * n  # both copies (critics), N rows each
    for c in range(2):  # row by row through member c * M + 7
        expected = net(x.unsqueeze(0), th.tensor([c * num_members + 7]))[0]
        th.testing.assert_close(y[c], expected)
    # A balanced layout (every member, equal counts) takes the packed path with the same results.
    members = th.arange(n) % 4
    balanced = MemberLayout(members, 4)
    small = BatchedMLP(4, 5, [8], 3)
    packed = run_rows(small, x, balanced)[0]
    rowwise = th.stack([small(x[i : i + 1].unsqueeze(0), th.tensor([int(members[i])]))[0, 0] for i in range(n)])
    assert balanced.balanced
    th.testing.assert_close(packed, rowwise)
