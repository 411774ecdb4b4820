"""The behaviour policies: Q-switch argmax, ties, options, own/uniform/fixed, commitment, own_prob."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch as th
from conftest import SMALL_KWARGS, set_constant_actors, set_distance_critics
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure

from sb3_qmp import QMP, MultiTaskSAC, MultiTaskWrapper, make_multitask_vec_env
from sb3_qmp.common.collectors import QSwitchCollector, make_collector

# Policy j proposes action (MEANS[j], 0). Task i's first critic prefers the proposal of PREFERRED[i]; its second
# critic is Q2_i = -|a_0 - SECOND_TARGETS[i]|, so min(Q1, Q2) = -max(|a_0 - t1|, |a_0 - t2|) prefers the proposal
# nearest the midpoint of the two targets, PREFERRED_MIN[i] (and Q2 alone prefers yet another one on tasks 0 and 3).
MEANS = np.array([[-0.6, 0.0], [-0.2, 0.0], [0.2, 0.0], [0.6, 0.0]])
PREFERRED = np.array([2, 0, 3, 1])
PREFERRED_MIN = np.array([1, 3, 0, 2])
SECOND_TARGETS = 2 * MEANS[PREFERRED_MIN, 0] - MEANS[PREFERRED, 0]
SPREAD = 0.5  # pre-tanh std of every policy in the tests that need real action spread
ROWS_PER_TASK = 4000


def hand_set_qmp(env, **collector_kwargs) -> QMP:
    model = QMP(env, collector_kwargs=collector_kwargs, seed=0, **SMALL_KWARGS)
    set_constant_actors(model.policy, MEANS)
    set_distance_critics(model.policy, MEANS[PREFERRED, 0], SECOND_TARGETS)
    return model


def select(model, obs: np.ndarray):
    with th.no_grad():
        features, tasks = model.policy.split_obs(th.as_tensor(obs, dtype=th.float32))
        actions, chosen = model.collector.select(model.policy, features, tasks)
    return actions.numpy(), chosen.numpy(), tasks.numpy()


def spread_select(env, score: str):
    """The Q1 switch (task i's target: policy PREFERRED[i]'s mean) on ROWS_PER_TASK rows of every task,
    with every policy sampling around its mean with pre-tanh std SPREAD."""
    model = hand_set_qmp(env, score=score, critic_reduce="q1")
    set_constant_actors(model.policy, MEANS, log_std=float(np.log(SPREAD)))
    obs = np.repeat(env.reset(), ROWS_PER_TASK, axis=0)
    th.manual_seed(0)
    return select(model, obs)


def reference_switch(task: int, score: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference of that switch for ``n`` independent rows of ``task``: the winner and the executed action
    (the winner's sample, the one that was scored when ``score="sample"``)."""
    samples = np.tanh(np.arctanh(MEANS)[None] + SPREAD * rng.standard_normal((n, *MEANS.shape)))
    candidates = samples if score == "sample" else np.broadcast_to(MEANS, samples.shape)
    winner = (-np.abs(candidates[..., 0] - MEANS[PREFERRED[task], 0])).argmax(axis=1)
    return winner, samples[np.arange(n), winner]


@pytest.mark.parametrize("score", ["mean", "sample"])
@pytest.mark.parametrize(("critic_reduce", "expected"), [("q1", PREFERRED), ("min", PREFERRED_MIN)])
def test_qswitch_picks_the_argmax_of_the_configured_critic(point_env, score, critic_reduce, expected):
    # The twin critics disagree: Q1 alone, min(Q1, Q2) and Q2 alone each pick another policy.
    model = hand_set_qmp(point_env, score=score, critic_reduce=critic_reduce)
    obs = point_env.reset()
    actions, chosen, tasks = select(model, obs)
    np.testing.assert_array_equal(chosen, expected[tasks])
    np.testing.assert_allclose(actions, MEANS[expected[tasks]], atol=1e-5)  # log-std -20: sample = mean

    features, task_ids = model.policy.split_obs(th.as_tensor(obs, dtype=th.float32))
    candidates = th.as_tensor(MEANS, dtype=th.float32).expand(4, -1, -1)  # every row scores all 4 proposals
    with th.no_grad():
        scores = model.critic.score(features, candidates, task_ids, critic_reduce).numpy()
    q1 = -np.abs(MEANS[None, :, 0] - MEANS[PREFERRED, 0][:, None])
    q2 = -np.abs(MEANS[None, :, 0] - SECOND_TARGETS[:, None])
    np.testing.assert_allclose(scores, q1 if critic_reduce == "q1" else np.minimum(q1, q2), atol=1e-5)


def test_qswitch_executes_the_winners_sample(point_env):
    # score="mean": the means decide, so the winner is fixed; the executed action is a fresh sample of it.
    actions, chosen, tasks = spread_select(point_env, "mean")
    np.testing.assert_array_equal(chosen, PREFERRED[tasks])
    for task in range(4):
        pre_tanh = np.arctanh(actions[tasks == task].astype(np.float64))
        np.testing.assert_allclose(pre_tanh.mean(axis=0), np.arctanh(MEANS[PREFERRED[task]]), atol=0.04)
        np.testing.assert_allclose(pre_tanh.std(axis=0), SPREAD, rtol=0.05)


@pytest.mark.parametrize("score", ["mean", "sample"])
def test_qswitch_scores_means_or_samples_as_configured(point_env, score):
    # With spread, scoring samples spreads the choice over the policies, while scoring means always picks
    # PREFERRED; and a scored sample is the executed one (a fresh draw of the winner lands farther from the target).
    actions, chosen, tasks = spread_select(point_env, score)
    rng = np.random.default_rng(0)
    for task in range(4):
        ref_winner, ref_action = reference_switch(task, score, 100_000, rng)
        rows = tasks == task
        frequencies = np.bincount(chosen[rows], minlength=4) / rows.sum()
        np.testing.assert_allclose(frequencies, np.bincount(ref_winner, minlength=4) / ref_winner.size, atol=0.03)
        target = MEANS[PREFERRED[task], 0]
        distance = np.abs(actions[rows, 0] - target).mean()
        assert distance == pytest.approx(np.abs(ref_action[:, 0] - target).mean(), abs=0.02)
        quantiles = [0.1, 0.5, 0.9]
        expected = np.quantile(ref_action[:, 0], quantiles)
        np.testing.assert_allclose(np.quantile(actions[rows, 0], quantiles), expected, atol=0.05)


def test_qswitch_routes_rows_in_any_order_and_count():
    # 3 envs per task, then rows shuffled: the per-row critic must still be the row's own task.
    env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=3, seed=1)
    model = hand_set_qmp(env)
    obs = env.reset()
    for rows in (np.arange(12), np.random.default_rng(0).permutation(12), np.array([5, 5, 1])):
        _, chosen, tasks = select(model, obs[rows])
        np.testing.assert_array_equal(chosen, PREFERRED[tasks])


def test_qswitch_ties_go_to_the_lowest_index(point_env):
    model = hand_set_qmp(point_env)
    with th.no_grad():
        for layer in (*model.critic.q_net.hidden, model.critic.q_net.output):
            layer.weight.zero_()
            layer.bias.zero_()
    _, chosen, _ = select(model, point_env.reset())
    np.testing.assert_array_equal(chosen, 0)


def test_qswitch_selection_counts_during_learn(point_env):
    model = hand_set_qmp(point_env)
    model.learning_starts = 0
    model.gradient_steps = 0  # keep the hand-set networks
    model.learn(200)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[np.arange(4), PREFERRED] = 50
    np.testing.assert_array_equal(model.selection_counts, expected)
    np.testing.assert_allclose(model.selection_matrix().sum(axis=1), 1.0)


def test_own_collector_uses_each_rows_policy(point_env):
    model = MultiTaskSAC(point_env, seed=0, **SMALL_KWARGS)
    set_constant_actors(model.policy, MEANS)
    actions, chosen, tasks = select(model, point_env.reset())
    np.testing.assert_array_equal(chosen, tasks)
    np.testing.assert_allclose(actions, MEANS[tasks], atol=1e-5)


def test_single_task_qmp_reduces_to_sac():
    # With one task the switch has one candidate: same choice, same action, same random draws.
    env = make_multitask_vec_env([lambda: gym.make("Pendulum-v1")], n_envs_per_task=3, seed=3)
    model = QMP(env, seed=3, **SMALL_KWARGS)
    model.learn(300)  # trained networks, not the initial ones
    assert model.num_tasks == 1
    obs = env.reset()
    own = make_collector("own", 1)
    for _ in range(5):
        th.manual_seed(7)
        actions_qmp, chosen_qmp, _ = select(model, obs)
        th.manual_seed(7)
        features, tasks = model.policy.split_obs(th.as_tensor(obs, dtype=th.float32))
        with th.no_grad():
            actions_own, chosen_own = own.select(model.policy, features, tasks)
        np.testing.assert_array_equal(chosen_qmp, 0)
        np.testing.assert_array_equal(chosen_own.numpy(), 0)
        np.testing.assert_allclose(actions_qmp, actions_own.numpy(), atol=1e-6)
        obs, *_ = env.step(actions_qmp)


def test_uniform_and_fixed_choices_follow_their_distribution(point_env):
    model = MultiTaskSAC(point_env, seed=0, **SMALL_KWARGS)
    obs = th.as_tensor(np.repeat(point_env.reset(), 500, axis=0), dtype=th.float32)
    features, tasks = model.policy.split_obs(obs)
    th.manual_seed(0)
    uniform = make_collector("uniform", 4)
    _, chosen = uniform.select(model.policy, features, tasks)
    counts = np.zeros((4, 4))
    np.add.at(counts, (tasks.numpy(), chosen.numpy()), 1)
    np.testing.assert_allclose(counts / 500, 0.25, atol=0.07)

    matrix = np.array([[0.5, 0.5, 0, 0], [0, 1, 0, 0], [0.1, 0.2, 0.3, 0.4], [0, 0, 0, 1]])
    fixed = make_collector("fixed", 4, matrix=matrix)
    _, chosen = fixed.select(model.policy, features, tasks)
    counts = np.zeros((4, 4))
    np.add.at(counts, (tasks.numpy(), chosen.numpy()), 1)
    np.testing.assert_allclose(counts / 500, matrix, atol=0.07)
    assert counts[matrix == 0].sum() == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(matrix=np.eye(3)), "must be 4 x 4"),
        (dict(matrix=np.full((4, 4), 0.3)), "sum to 1"),
        (dict(matrix=-np.eye(4)), "non-negative"),
        (dict(matrix="no_such_preset"), "Unknown mixture preset"),
        (dict(), "needs collector_kwargs"),
    ],
)
def test_fixed_matrix_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_collector("fixed", 4, **kwargs)


def test_collector_argument_validation(point_env):
    with pytest.raises(ValueError, match="Unknown collector"):
        make_collector("greedy", 4)
    with pytest.raises(ValueError, match="score must be"):
        QSwitchCollector(4, score="max")
    with pytest.raises(ValueError, match="critic_reduce"):
        QSwitchCollector(4, critic_reduce="mean")
    with pytest.raises(ValueError, match="commit_steps"):
        QSwitchCollector(4, commit_steps=0)
    with pytest.raises(ValueError, match="own_prob"):
        QSwitchCollector(4, own_prob=1.5)
    with pytest.raises(TypeError, match="Bad collector_kwargs"):
        QMP(point_env, collector_kwargs=dict(temperature=2.0))


# --- temporal commitment and own-policy probability -----------------------------------------------


def test_commitment_keeps_the_choice_for_k_steps_then_redecides(point_env):
    k = 3
    model = hand_set_qmp(point_env, commit_steps=k)
    obs = point_env.reset()
    history = []
    for step in range(7):
        if step == 1:  # change every task's preference: committed rows must not follow until re-deciding
            set_distance_critics(model.policy, MEANS[(PREFERRED + 1) % 4, 0])
        history.append(select(model, obs)[1])
    history = np.array(history)
    np.testing.assert_array_equal(history[:3], np.tile(PREFERRED, (3, 1)))  # window 1 (decided at step 0)
    np.testing.assert_array_equal(history[3:6], np.tile((PREFERRED + 1) % 4, (3, 1)))  # re-decided at step 3
    np.testing.assert_allclose(model.collector.mean_commitment(), k)


def test_commitment_resets_at_episode_end(point_env):
    model = hand_set_qmp(point_env, commit_steps=10)
    obs = point_env.reset()
    select(model, obs)
    set_distance_critics(model.policy, MEANS[(PREFERRED + 1) % 4, 0])
    dones = np.array([True, False, False, False])
    model.collector.episode_starts(dones)
    chosen = select(model, obs)[1]
    assert chosen[0] == (PREFERRED[0] + 1) % 4  # the finished episode re-decides
    np.testing.assert_array_equal(chosen[1:], PREFERRED[1:])  # the others keep their commitment


def test_switch_margin_redecides_early(point_env):
    model = hand_set_qmp(point_env, commit_steps=100, switch_margin=0.1)
    obs = point_env.reset()
    select(model, obs)
    set_distance_critics(model.policy, MEANS[(PREFERRED + 1) % 4, 0])  # advantage of the new choice >= 0.4
    np.testing.assert_array_equal(select(model, obs)[1], (PREFERRED + 1) % 4)


def test_own_prob_one_is_the_own_collector(point_env):
    model = hand_set_qmp(point_env, own_prob=1.0, commit_steps=4)
    for _ in range(5):
        actions, chosen, tasks = select(model, point_env.reset())
        np.testing.assert_array_equal(chosen, tasks)
        np.testing.assert_allclose(actions, MEANS[tasks], atol=1e-5)


def test_defaults_are_the_papers_switch(point_env):
    # k=1, own_prob=0 re-decides every step: a preference change is followed at once.
    model = hand_set_qmp(point_env, commit_steps=1, own_prob=0.0)
    obs = point_env.reset()
    np.testing.assert_array_equal(select(model, obs)[1], PREFERRED)
    set_distance_critics(model.policy, MEANS[(PREFERRED + 1) % 4, 0])
    np.testing.assert_array_equal(select(model, obs)[1], (PREFERRED + 1) % 4)


def test_collector_from_factories_env_path():
    # The env-factory path of MultiTaskWrapper gives the same routing as a task-aware base env.
    factories = [lambda i=i: gym.make("MultiGoalPoint-v0", task_id=i).unwrapped.env for i in range(4)]
    env = make_multitask_vec_env(factories, seed=0)
    assert env.get_attr("num_tasks")[0] == 4
    assert isinstance(env.envs[0].unwrapped, MultiTaskWrapper)
    model = hand_set_qmp(env)
    _, chosen, tasks = select(model, env.reset())
    np.testing.assert_array_equal(tasks, np.arange(4))
    np.testing.assert_array_equal(chosen, PREFERRED)


def test_own_prob_windows_survive_the_switch_margin(point_env, monkeypatch):
    # own_prob acts per decision: a window it gave to the own policy must not be switched away early,
    # even though every other proposal beats the own one by far more than the margin.
    model = hand_set_qmp(point_env, commit_steps=50, own_prob=0.5, switch_margin=0.01)
    forced = th.tensor([True, False, True, False])
    draws = iter([th.where(forced, 0.0, 1.0)])  # the first decision forces rows 0 and 2, later ones none
    monkeypatch.setattr(th, "rand", lambda n, device=None, generator=None: next(draws, th.ones(n)))
    obs = point_env.reset()
    first = select(model, obs)[1]
    tasks = np.arange(4)
    np.testing.assert_array_equal(first, np.where(forced.numpy(), tasks, PREFERRED))
    set_distance_critics(model.policy, MEANS[(PREFERRED + 1) % 4, 0])  # now every row prefers another policy
    for _ in range(3):
        chosen = select(model, obs)[1]
        np.testing.assert_array_equal(chosen[forced.numpy()], tasks[forced.numpy()])  # forced windows kept
        np.testing.assert_array_equal(chosen[~forced.numpy()], ((PREFERRED + 1) % 4)[~forced.numpy()])  # switched


@pytest.mark.parametrize("commit_steps", [1, 4])
def test_own_prob_one_skips_proposals_and_critic(point_env, monkeypatch, commit_steps):
    model = hand_set_qmp(point_env, own_prob=1.0, commit_steps=commit_steps, switch_margin=0.1 if commit_steps > 1 else None)

    def fail(*args, **kwargs):
        raise AssertionError("own_prob=1 must not evaluate proposals or critics")

    monkeypatch.setattr(model.policy.actor, "propose", fail)
    monkeypatch.setattr(model.policy.critic, "score", fail)
    for _ in range(3):
        _, chosen, tasks = select(model, point_env.reset())
        np.testing.assert_array_equal(chosen, tasks)


def test_mixture_warmup_collects_with_own_policies_first(point_env):
    model = hand_set_qmp(point_env, warmup_steps=100)
    model.learning_starts = 0
    model.gradient_steps = 0  # keep the hand-set networks
    model.learn(200)  # 50 vec-env steps of 4 rows: 25 in the warm-up, 25 with the switch
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[np.arange(4), np.arange(4)] += 25
    expected[np.arange(4), PREFERRED] += 25
    np.testing.assert_array_equal(model.selection_counts, expected)
    with pytest.raises(ValueError, match="warmup_steps"):
        QSwitchCollector(4, warmup_steps=-1)


def test_commitment_windows_restart_at_every_episode_end_during_learn(point_env):
    # Episodes (30 steps, or fewer on success) are not multiples of k: every episode end must cut the window
    # and the first step of the next episode must open a new one, whatever is left of the old one.
    k = 7
    model = hand_set_qmp(point_env, commit_steps=k)
    model.learning_starts = 0
    model.gradient_steps = 0
    steps_left, dones = [], []
    select_fn = model.collector.select

    def spy(*args, **kwargs):
        out = select_fn(*args, **kwargs)
        steps_left.append(model.collector._steps_left.clone().numpy())
        return out

    class RecordDones(BaseCallback):
        def _on_step(self) -> bool:
            dones.append(self.locals["dones"].copy())
            return True

    model.collector.select = spy
    model.learn(400, callback=RecordDones())
    steps_left, dones = np.array(steps_left), np.array(dones)
    assert dones.any(), "the check needs episode ends"
    expected = np.full(4, k - 1)
    for t in range(1, len(steps_left)):
        expected = np.where(dones[t - 1] | (expected == 0), k - 1, expected - 1)
        np.testing.assert_array_equal(steps_left[t], expected)
    assert model.collector.window_count.sum() > 0


def test_mean_commitment_reaches_the_logger(point_env, tmp_path):
    model = hand_set_qmp(point_env, commit_steps=5)
    model.learning_starts = 0
    model.gradient_steps = 0
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(400, log_interval=1)
    log = pd.read_csv(tmp_path / "progress.csv")
    for task in range(4):
        values = log[f"collect/task_{task}/mean_commitment"].dropna()
        assert len(values) > 0
        assert 1.0 <= values.iloc[-1] <= 5.0


def test_a_collector_of_your_own_needs_no_registration(tmp_path) -> None:
    """``collector=`` takes a Collector subclass: it collects, evaluates as a mixture, and saves with the model."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        from custom_collector import SoftmaxQSwitch
    finally:
        sys.path.pop(0)
    from sb3_qmp import QMP, MultiTaskSAC

    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    model = MultiTaskSAC(
        env, collector=SoftmaxQSwitch, collector_kwargs=dict(temperature=0.2), learning_starts=40, batch_size=16, seed=0
    )
    model.learn(120)
    assert isinstance(model.collector, SoftmaxQSwitch) and model.has_mixture
    assert model.selection_counts.sum() > 0 and (model.selection_counts.sum(axis=1) > 0).all()
    actions, _ = model.mixture_policy(seed=0).predict(env.reset(), deterministic=True)
    assert actions.shape == (4, 2)
    model.save(tmp_path / "model.zip")
    loaded = MultiTaskSAC.load(tmp_path / "model.zip", env=env)
    assert isinstance(loaded.collector, SoftmaxQSwitch) and loaded.collector.temperature == 0.2
    with pytest.raises(ValueError, match="QMP always collects with the 'qswitch' collector"):
        QMP(env, collector=SoftmaxQSwitch)
    with pytest.raises(TypeError, match=r"not a subclass of sb3_qmp\.common\.collectors\.Collector"):
        MultiTaskSAC(env, collector=dict)


def test_a_pickled_collector_keeps_settings_and_statistics_not_live_rows(point_env) -> None:
    """Per-row state (commitments, open shared behaviours, a step's scores: tied to the live env, maybe on a GPU)
    is never saved; the statistics are, and a warm-up step after loading counts like any other."""
    import pickle

    model = hand_set_qmp(point_env, commit_steps=5, switch_margin=0.1)
    for _ in range(3):
        select(model, point_env.reset())
    collector = model.collector
    assert collector._scores is not None and (collector._run_len > 0).any()
    loaded = pickle.loads(pickle.dumps(collector))
    assert loaded._choice is None and loaded._scores is None and loaded._run_len.shape == (0,)
    for name in type(collector).STATISTICS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(collector, name), err_msg=name)
    features, tasks = model.policy.split_obs(th.as_tensor(point_env.reset(), dtype=th.float32))
    shared_count = loaded.shared_count.copy()
    with th.no_grad():
        loaded.own_actions(model.policy, features, tasks)
    np.testing.assert_array_equal(loaded.shared_count, shared_count)  # nothing stale closed as a behaviour
    assert loaded.selection_counts.trace() == collector.selection_counts.trace() + 4
