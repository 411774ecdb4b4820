"""The adaptive Q-switch (``AdaptiveQSwitchCollector``, ``collector_kwargs=dict(adaptive=True)``) and the sharing
statistics of every collector."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch as th
from conftest import SMALL_KWARGS, set_constant_actors, set_distance_critics
from stable_baselines3.common.logger import configure

from sb3_qmp import QMP, QMPMultiHead, SharedSAC, make_multitask_vec_env
from sb3_qmp.common.collectors import make_collector
from sb3_qmp.qmp import AdaptiveQSwitchCollector

# Policy j proposes action (MEANS[j], 0); task i's first critic prefers the proposal of PREFERRED[i].
MEANS = np.array([[-0.6, 0.0], [-0.2, 0.0], [0.2, 0.0], [0.6, 0.0]])
PREFERRED = np.array([2, 0, 3, 1])
TASKS = np.arange(4)


def set_twin_targets(policy: Any, first: np.ndarray, second: np.ndarray) -> None:
    """Critic 1 of task i scores ``-|a_0 - first[i]|``, critic 2 ``-|a_0 - second[i]|``."""
    set_distance_critics(policy, first, second)


def hand_set(env: Any, second: np.ndarray, **collector_kwargs: Any) -> QMP:
    """QMP with constant actors; critic 1 of task i prefers PREFERRED[i], critic 2 targets ``second[i]``."""
    model = QMP(env, collector_kwargs=collector_kwargs, seed=0, **{**SMALL_KWARGS, "learning_starts": 10_000})
    set_constant_actors(model.policy, MEANS)
    set_twin_targets(model.policy, MEANS[PREFERRED, 0], second)
    return model


def select(model: Any, obs: np.ndarray, collector: Any = None, deterministic: bool = False) -> np.ndarray:
    collector = collector or model.collector
    with th.no_grad():
        features, tasks = model.policy.split_obs(th.as_tensor(obs, dtype=th.float32))
        return collector.select(model.policy, features, tasks, deterministic)[1].numpy()


# --- the rule on hand-set critic networks ---------------------------------------------------------


def test_falls_back_to_the_own_policy_when_the_critics_disagree_more_than_the_advantage(point_env):
    # Critic 1 prefers PREFERRED[i] by d = |m_P - m_i|, critic 2 prefers the own policy by the same d: at both
    # proposals the twins disagree by d, so the advantage d clears kappa * d only for kappa < 1.
    obs = point_env.reset()
    plain = hand_set(point_env, second=MEANS[TASKS, 0])
    np.testing.assert_array_equal(select(plain, obs), PREFERRED)  # the plain switch trusts critic 1
    for kappa, expected in ((1.0, TASKS), (3.0, TASKS), (0.9, PREFERRED), (0.5, PREFERRED)):
        model = hand_set(point_env, second=MEANS[TASKS, 0], adaptive=True, uncertainty_scale=kappa)
        np.testing.assert_array_equal(select(model, obs), expected, err_msg=f"kappa={kappa}")
    # On the advantage itself the twins disagree by 2d (critic 1: +d, critic 2: -d).
    for kappa, expected in ((0.5, TASKS), (0.45, PREFERRED)):
        model = hand_set(point_env, second=MEANS[TASKS, 0], adaptive=True, uncertainty_scale=kappa, uncertainty="advantage")
        np.testing.assert_array_equal(select(model, obs), expected, err_msg=f"advantage, kappa={kappa}")


@pytest.mark.parametrize("uncertainty", ["value", "advantage"])
@pytest.mark.parametrize("critic_reduce", ["q1", "min"])
def test_shares_when_a_proposals_advantage_is_clear(point_env, uncertainty, critic_reduce):
    # Twins almost agree (targets 0.05 apart): the preferred proposal's advantage (>= 0.35) is far above
    # their disagreement (<= 0.1), even scaled by 3.
    model = hand_set(
        point_env,
        second=MEANS[PREFERRED, 0] + 0.05,
        adaptive=True,
        uncertainty_scale=3.0,
        uncertainty=uncertainty,
        critic_reduce=critic_reduce,
    )
    obs = point_env.reset()
    for _ in range(3):
        np.testing.assert_array_equal(select(model, obs), PREFERRED)
    np.testing.assert_allclose(model.collector.share_fraction(), 1.0)


def reference_choice(q: np.ndarray, tasks: np.ndarray, kappa: float, uncertainty: str, reduce: str) -> np.ndarray:
    """The documented rule, one row at a time: the best-scoring of the own policy and the confident others."""
    choice = np.empty(len(tasks), dtype=np.int64)
    for n, i in enumerate(tasks):
        rows = q[:, n, :]  # (C, T)
        scores = rows[0] if reduce == "q1" else rows.min(axis=0)
        advantage = scores - scores[i]
        if uncertainty == "value":
            spread = rows.max(axis=0) - rows.min(axis=0)
            unc = np.maximum(spread, spread[i])
        else:
            per_critic = rows - rows[:, i : i + 1]
            unc = per_critic.max(axis=0) - per_critic.min(axis=0)
        allowed = (advantage > kappa * unc) | (np.arange(len(scores)) == i)
        choice[n] = int(np.argmax(np.where(allowed, scores, -np.inf)))
    return choice


@pytest.mark.parametrize("cls", [QMP, QMPMultiHead])
@pytest.mark.parametrize(("uncertainty", "reduce"), [("value", "q1"), ("advantage", "min")])
def test_batched_choice_matches_the_rule_row_by_row(cls, uncertainty, reduce):
    # Untrained critics on 64 random rows: some share, some do not; the batched switch equals the rule.
    env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=16, seed=0)
    model = cls(env, seed=1, **SMALL_KWARGS)
    rng = np.random.default_rng(0)
    obs = np.concatenate([rng.uniform(-1, 1, (64, 2)), np.eye(4)[rng.integers(4, size=64)]], axis=1)
    features, tasks = model.policy.split_obs(th.as_tensor(obs, dtype=th.float32))
    shares = []
    for kappa in (0.0, 0.3, 1.0):
        collector = make_collector(
            "qswitch", 4, critic_reduce=reduce, adaptive=True, uncertainty_scale=kappa, uncertainty=uncertainty
        )
        with th.no_grad():
            th.manual_seed(0)
            proposals = model.policy.actor.propose(features)
            q = model.policy.critic.score_critics(features, proposals[0].transpose(0, 1), tasks).numpy()
            th.manual_seed(0)
            _, chosen = collector.select(model.policy, features, tasks)
        expected = reference_choice(q, tasks.numpy(), kappa, uncertainty, reduce)
        np.testing.assert_array_equal(chosen.numpy(), expected, err_msg=f"kappa={kappa}")
        shares.append(float((expected != tasks.numpy()).mean()))
    assert shares[0] > shares[-1] > 0.0 and shares[-1] < 1.0, f"the check needs both outcomes: {shares}"


# --- keeping a shared behaviour (critic scores set by table) -------------------------------------


def table_critic(model: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """Replace the critics' scores of every proposal by ``current["q"]`` ``(C, N, T)``."""
    current: dict[str, np.ndarray] = {}
    monkeypatch.setattr(
        model.policy.critic, "score_critics", lambda obs, actions, tasks: th.as_tensor(current["q"], dtype=th.float32)
    )
    return current


def row0(first: list[float], second: list[float] | None = None) -> np.ndarray:
    """Scores (C=2, N=4, T=4): row 0 (task 0) gets ``first`` / ``second`` (default: the same); rows 1-3 prefer
    their own policy by far, in both critics."""
    q = np.zeros((2, 4, 4))
    q[:, np.arange(4), np.arange(4)] = 10.0
    q[0, 0], q[1, 0] = first, second if second is not None else first
    return q


def test_keeps_a_behaviour_while_its_advantage_holds_and_drops_it_when_it_vanishes(point_env, monkeypatch):
    model = hand_set(point_env, second=MEANS[PREFERRED, 0], adaptive=True, uncertainty_scale=1.0)
    current = table_critic(model, monkeypatch)
    obs = point_env.reset()
    steps = [
        (row0([0, 2, 1, 0]), 1),  # policy 1 clearly better than the own: share it
        (row0([0, 1, 3, 0]), 1),  # policy 2 is now best, but 1 still beats the own one: keep 1
        (row0([0, 0.5, 3, 0], [0, 1.5, 3, 0]), 2),  # 1's advantage 0.5 < twin disagreement 1: drop; 2 is confident
        (row0([0, 5, 0, 0]), 1),  # 2's advantage vanished (0): drop, re-decide: 1
        (row0([0, 1, 5, 0]), 1),  # 1 holds again (its advantage 1 > 0): keep, although 2 is best
    ]
    for t, (q, expected) in enumerate(steps):
        current["q"] = q
        np.testing.assert_array_equal(select(model, obs), [expected, 1, 2, 3], err_msg=f"step {t}")
    model.collector.episode_starts(np.array([True, False, False, False]))  # the episode ends the shared behaviour
    current["q"] = row0([0, 1, 5, 0])
    assert select(model, obs)[0] == 2  # a new episode decides afresh
    model.collector.episode_starts(np.ones(4, dtype=bool))
    # Shared behaviours of task 0: [1, 1], [2], [1, 1] (ended by the episode), [2] (ended by the episode).
    assert model.collector.mean_shared_length()[0] == pytest.approx(6 / 4)
    assert np.isnan(model.collector.mean_shared_length()[1:]).all()  # tasks 1-3 never shared
    np.testing.assert_allclose(model.collector.share_fraction(), [1.0, 0.0, 0.0, 0.0])
    # Windows between decisions: the same as the shared behaviours for task 0, single steps for the others.
    np.testing.assert_allclose(model.collector.mean_commitment(), [6 / 4, 1, 1, 1])


def test_without_keep_every_step_decides(point_env, monkeypatch):
    model = hand_set(point_env, second=MEANS[PREFERRED, 0], adaptive=True, uncertainty_scale=1.0, adaptive_keep=False)
    current = table_critic(model, monkeypatch)
    obs = point_env.reset()
    for q, expected in ((row0([0, 2, 1, 0]), 1), (row0([0, 1, 3, 0]), 2), (row0([0, 0.5, 0, 0], [0, 1.5, 0, 0]), 0)):
        current["q"] = q
        assert select(model, obs)[0] == expected


def test_own_prob_forces_the_own_policy_at_decisions_only(point_env, monkeypatch):
    model = hand_set(point_env, second=MEANS[PREFERRED, 0], adaptive=True, own_prob=0.5)
    current = table_critic(model, monkeypatch)
    current["q"] = row0([0, 2, 1, 0])
    draws = iter([th.tensor([0.9, 1.0, 1.0, 1.0]), th.tensor([0.0, 0.0, 0.0, 0.0])])
    monkeypatch.setattr(th, "rand", lambda n, device=None, generator=None: next(draws))
    obs = point_env.reset()
    assert select(model, obs)[0] == 1  # draw 0.9 >= 0.5: the switch decides
    np.testing.assert_array_equal(select(model, obs), [1, 1, 2, 3])  # row 0 keeps 1: no decision, no own_prob


# --- limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [QMP, QMPMultiHead])
@pytest.mark.parametrize(("score", "critic_reduce", "own_prob"), [("mean", "q1", 0.0), ("sample", "min", 0.3)])
def test_zero_scale_without_keep_is_the_plain_switch(cls, score, critic_reduce, own_prob):
    env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=8, seed=0)
    model = cls(env, seed=2, **SMALL_KWARGS)
    model.learn(150)  # trained a little: generic critics, no ties
    common = dict(score=score, critic_reduce=critic_reduce, own_prob=own_prob)
    plain = make_collector("qswitch", 4, **common)
    adaptive = make_collector("qswitch", 4, **common, adaptive=True, uncertainty_scale=0.0, adaptive_keep=False)
    obs = env.reset()
    shared = 0
    for _ in range(6):
        features, tasks = model.policy.split_obs(th.as_tensor(obs, dtype=th.float32))
        with th.no_grad():
            th.manual_seed(5)
            actions_plain, chosen_plain = plain.select(model.policy, features, tasks)
            th.manual_seed(5)
            actions_adaptive, chosen_adaptive = adaptive.select(model.policy, features, tasks)
        np.testing.assert_array_equal(chosen_adaptive.numpy(), chosen_plain.numpy())
        np.testing.assert_allclose(actions_adaptive.numpy(), actions_plain.numpy(), atol=1e-6)
        shared += int((chosen_plain != tasks).sum())
        obs, *_ = env.step(actions_plain.numpy())
    assert shared > 0, "the check needs rows that share"
    np.testing.assert_allclose(adaptive.mean_commitment(), plain.mean_commitment())


def test_exact_ties_go_to_the_own_policy(point_env):
    # Zero critics score every proposal alike: the plain switch takes the lowest index, the adaptive one the own.
    obs = point_env.reset()
    plain = hand_set(point_env, second=MEANS[PREFERRED, 0])
    adaptive = hand_set(point_env, second=MEANS[PREFERRED, 0], adaptive=True, uncertainty_scale=0.0, adaptive_keep=False)
    for model in (plain, adaptive):
        with th.no_grad():
            for layer in (*model.critic.q_net.hidden, model.critic.q_net.output):
                layer.weight.zero_()
                layer.bias.zero_()
    np.testing.assert_array_equal(select(plain, obs), 0)
    np.testing.assert_array_equal(select(adaptive, obs), TASKS)


# --- evaluation, save/load, logging, validation ---------------------------------------------------


def test_deterministic_evaluation_copy_and_save_load(point_env, tmp_path):
    model = hand_set(point_env, second=MEANS[PREFERRED, 0] + 0.05, adaptive=True, uncertainty_scale=2.0)
    obs = point_env.reset()
    select(model, obs)
    state = (model.collector._choice.clone(), model.collector._steps_left.clone(), model.collector.selection_counts.copy())
    rng = th.get_rng_state()
    mixture, _ = model.predict(obs, deterministic=True, behaviour="mixture")
    np.testing.assert_allclose(mixture, MEANS[PREFERRED], atol=1e-5)  # the winner's mean
    view = model.mixture_policy()
    view.predict(obs, deterministic=True)
    assert isinstance(view.collector, AdaptiveQSwitchCollector) and view.collector.selection_counts.sum() == 4
    assert th.equal(model.collector._choice, state[0]) and th.equal(model.collector._steps_left, state[1])
    np.testing.assert_array_equal(model.collector.selection_counts, state[2])
    assert th.equal(th.get_rng_state(), rng), "a deterministic evaluation draws nothing from torch's RNG"

    model.save(tmp_path / "model")
    loaded = QMP.load(tmp_path / "model", env=point_env)
    assert isinstance(loaded.collector, AdaptiveQSwitchCollector) and loaded.collector.uncertainty_scale == 2.0
    assert (loaded.collector.uncertainty, loaded.collector.adaptive_keep) == ("value", True)
    np.testing.assert_allclose(loaded.predict(obs, deterministic=True, behaviour="mixture")[0], mixture, atol=1e-6)
    set_twin_targets(loaded.policy, MEANS[PREFERRED, 0], MEANS[TASKS, 0])  # twins now disagree by the advantage
    np.testing.assert_allclose(loaded.mixture_policy().predict(obs, deterministic=True)[0], MEANS[TASKS], atol=1e-5)


def test_shared_length_reaches_the_logger(point_env, tmp_path):
    model = hand_set(point_env, second=MEANS[PREFERRED, 0] + 0.05, adaptive=True)
    model.learning_starts = 0
    model.gradient_steps = 0  # keep the hand-set networks
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(400, log_interval=1)
    log = pd.read_csv(tmp_path / "progress.csv")
    collector = model.collector
    for task in range(4):
        lengths = log[f"collect/task_{task}/mean_shared_length"].dropna()
        assert len(lengths) > 0 and 1.0 < lengths.iloc[-1] <= 30.0
    np.testing.assert_allclose(model.selection_matrix(), np.eye(4)[PREFERRED])
    # Every episode is one shared behaviour: one finished behaviour per finished episode, and every shared
    # step is in a finished behaviour or in the open one.
    np.testing.assert_array_equal(collector.shared_count, [len(buffer) for buffer in model.task_success_buffer])
    steps = collector.selection_counts.sum(axis=1)
    shared_steps = steps - np.diag(collector.selection_counts)
    np.testing.assert_array_equal(collector.shared_len_sum + collector._run_len, shared_steps)
    np.testing.assert_array_equal(shared_steps, steps)


def test_plain_switch_records_shared_behaviours(point_env):
    # The plain per-step switch with a fixed preference: consecutive steps of one other policy form one behaviour.
    model = hand_set(point_env, second=MEANS[PREFERRED, 0])
    obs = point_env.reset()
    for _ in range(5):
        select(model, obs)
    set_distance_critics(model.policy, MEANS[TASKS, 0])  # now every task prefers its own policy
    select(model, obs)
    np.testing.assert_allclose(model.collector.mean_shared_length(), 5.0)
    np.testing.assert_allclose(model.collector.share_fraction(), 5 / 6)
    assert np.isnan(model.collector.evaluation_copy().mean_shared_length()).all()  # a copy starts afresh


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(uncertainty_scale=1.0), "only apply to the adaptive switch"),
        (dict(adaptive_keep=False), "only apply to the adaptive switch"),
        (dict(adaptive="yes"), "adaptive must be True or False"),
        (dict(adaptive=True, commit_steps=5), "replaces commit_steps"),
        (dict(adaptive=True, commit_steps=2, switch_margin=0.1), "replaces commit_steps"),
        (dict(adaptive=True, switch_margin=0.1), "leave switch_margin=None"),
        (dict(adaptive=True, uncertainty_scale=-1.0), "uncertainty_scale must be a finite number >= 0"),
        (dict(adaptive=True, uncertainty_scale=float("inf")), "uncertainty_scale must be a finite number >= 0"),
        (dict(adaptive=True, uncertainty_scale="1"), "uncertainty_scale must be a finite number >= 0"),
        (dict(adaptive=True, uncertainty="std"), "uncertainty must be 'value' or 'advantage'"),
        (dict(adaptive=True, adaptive_keep=1), "adaptive_keep must be True or False"),
    ],
)
def test_adaptive_argument_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_collector("qswitch", 4, **kwargs)


def test_adaptive_needs_twin_critics(point_env):
    model = QMP(
        point_env,
        collector_kwargs=dict(adaptive=True),
        **{**SMALL_KWARGS, "policy_kwargs": dict(net_arch=[8], n_critics=1)},
    )
    with pytest.raises(ValueError, match="n_critics=1"):
        select(model, point_env.reset())


@pytest.mark.parametrize("cls", [QMP, QMPMultiHead, SharedSAC])  # every architecture's critic
def test_score_critics_agrees_with_score(cls):
    env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=2, seed=0)
    critic = cls(env, seed=0, **SMALL_KWARGS).policy.critic
    rng = np.random.default_rng(1)
    obs = th.as_tensor(rng.uniform(-1, 1, (9, 2)), dtype=th.float32)
    actions = th.as_tensor(rng.uniform(-1, 1, (9, 3, 2)), dtype=th.float32)
    tasks = th.as_tensor([3, 0, 0, 2, 1, 3, 3, 2, 0])  # not in task order, uneven counts
    with th.no_grad():
        per_critic = critic.score_critics(obs, actions, tasks)
        assert per_critic.shape == (2, 9, 3)
        th.testing.assert_close(per_critic[0], critic.score(obs, actions, tasks, "q1"))
        th.testing.assert_close(per_critic.min(dim=0).values, critic.score(obs, actions, tasks, "min"))
        assert not th.allclose(per_critic[0], per_critic[1])


def test_options_as_numpy_values_and_off_values_with_a_class() -> None:
    keep = make_collector("qswitch", 4, adaptive=np.True_, adaptive_keep=np.False_)
    assert isinstance(keep, AdaptiveQSwitchCollector) and keep.adaptive_keep is False
    # A variant given as the class takes the "off" values (None) a YAML may hold; adaptive= has nothing to choose.
    collector = make_collector(AdaptiveQSwitchCollector, 4, switch_margin=None, uncertainty_scale=0.0)
    assert type(collector) is AdaptiveQSwitchCollector and collector.uncertainty_scale == 0.0
    with pytest.raises(ValueError, match="collector=AdaptiveQSwitchCollector is a class already"):
        make_collector(AdaptiveQSwitchCollector, 4, adaptive=False)
