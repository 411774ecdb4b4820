"""The two evaluation modes: each task's own policy and the collection mixture (deterministic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import SMALL_KWARGS, set_constant_actors, set_distance_critics
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from sb3_qmp import (
    QMP,
    DnC,
    DnCReg,
    MultiHeadSAC,
    MultiTaskSAC,
    QMPDomain,
    QMPMultiHead,
    QMPUniform,
    Separated,
    SharedSAC,
    make_multitask_vec_env,
)
from sb3_qmp.common.callbacks import EVAL_CSV, PerTaskEvalCallback, load_evaluations
from sb3_qmp.common.evaluation import empty_episodes, evaluate_per_task, reported, run_episodes

# Policy j's mean action is (MEANS[j], 0); task i's critic prefers policy PREFERRED[i] (a derangement).
MEANS = np.array([[-0.6, 0.0], [-0.2, 0.0], [0.2, 0.0], [0.6, 0.0]])
PREFERRED = np.array([2, 0, 3, 1])
TASKS = np.arange(4)


def spread_actors(policy: Any) -> None:
    """Constant means ``MEANS`` with a real spread (std 1): a sample is far from the mean."""
    set_constant_actors(policy, MEANS)
    with th.no_grad():
        policy.actor.net.output.bias[:, 0, MEANS.shape[1] :] = 0.0


def hand_set(env: VecEnv, preferred: np.ndarray = PREFERRED, cls: type = QMP, **collector_kwargs: Any) -> Any:
    # learning_starts beyond every test's steps: the hand-set networks are never trained.
    kwargs = {**SMALL_KWARGS, "learning_starts": 10_000}
    model = cls(env, collector_kwargs=collector_kwargs, seed=0, **kwargs)
    spread_actors(model.policy)
    set_distance_critics(model.policy, MEANS[preferred, 0])
    return model


def first_action(actions: np.ndarray) -> np.ndarray:
    return np.asarray(actions)[:, 0]


@pytest.mark.parametrize("score", ["mean", "sample"])
def test_mixture_executes_the_preferred_policys_mean_and_own_its_own(point_env, score):
    model = hand_set(point_env, score=score)
    obs = point_env.reset()
    own, _ = model.predict(obs, deterministic=True)
    mixture, _ = model.predict(obs, deterministic=True, behaviour="mixture")
    view, _ = model.mixture_policy().predict(obs, deterministic=True)
    np.testing.assert_allclose(own, MEANS[TASKS], atol=1e-5)
    # Task i's critic scores every policy's MEAN (even with score="sample") and the winner's mean acts.
    np.testing.assert_allclose(mixture, MEANS[PREFERRED], atol=1e-5)
    np.testing.assert_allclose(view, MEANS[PREFERRED], atol=1e-5)
    single, _ = model.predict(obs[1], deterministic=True, behaviour="mixture")  # one observation, no batch
    np.testing.assert_allclose(single, MEANS[PREFERRED[1]], atol=1e-5)
    # Not deterministic: the collector's behaviour, the winner's sample (std 1: far from every mean).
    sampled, _ = model.predict(obs, deterministic=False, behaviour="mixture")
    assert np.abs(sampled - MEANS[PREFERRED]).max() > 0.05


def set_twin_targets(policy: Any, first: np.ndarray, second: np.ndarray) -> None:
    """Critic 1 of task i scores ``-|a_0 - first[i]|``, critic 2 ``-|a_0 - second[i]|``."""
    set_distance_critics(policy, first, second)


def test_mixture_scores_with_the_models_critic_reduce(point_env):
    other = (PREFERRED + 2) % 4
    q = -np.abs(MEANS[None, None, :, 0] - np.stack([MEANS[PREFERRED, 0], MEANS[other, 0]])[:, :, None])  # (C, T, J)
    by_min = q.min(axis=0).argmax(axis=1)
    assert (by_min != PREFERRED).any()
    obs = point_env.reset()
    for reduce, expected in (("q1", PREFERRED), ("min", by_min)):
        model = hand_set(point_env, critic_reduce=reduce)
        set_twin_targets(model.policy, MEANS[PREFERRED, 0], MEANS[other, 0])
        actions, _ = model.mixture_policy().predict(obs, deterministic=True)
        np.testing.assert_allclose(actions, MEANS[expected], atol=1e-5)


def test_mixture_commitment_ends_at_episode_starts(point_env):
    model = hand_set(point_env, commit_steps=3)
    view = model.mixture_policy()
    obs = point_env.reset()
    np.testing.assert_allclose(view.predict(obs, deterministic=True)[0], MEANS[PREFERRED], atol=1e-5)
    later = (PREFERRED + 1) % 4
    set_distance_critics(model.policy, MEANS[later, 0])  # every task now prefers another policy
    start = np.array([True, False, False, False])
    # Row 0 starts an episode: it re-decides; the others keep their 3-step commitment.
    actions = view.predict(obs, episode_start=start, deterministic=True)[0]
    np.testing.assert_allclose(actions, MEANS[np.where(start, later, PREFERRED)], atol=1e-5)
    actions = view.predict(obs, episode_start=np.zeros(4, dtype=bool), deterministic=True)[0]
    np.testing.assert_allclose(actions, MEANS[np.where(start, later, PREFERRED)], atol=1e-5)
    actions = view.predict(obs, episode_start=np.zeros(4, dtype=bool), deterministic=True)[0]
    np.testing.assert_allclose(actions, MEANS[later], atol=1e-5)  # the 3 steps are over
    view.reset()
    set_distance_critics(model.policy, MEANS[PREFERRED, 0])
    np.testing.assert_allclose(view.predict(obs, deterministic=True)[0], MEANS[PREFERRED], atol=1e-5)


@pytest.mark.parametrize("margin", [None, 0.05])
def test_mixture_uses_the_switch_margin(point_env, margin):
    model = hand_set(point_env, commit_steps=50, switch_margin=margin)
    view = model.mixture_policy()
    obs = point_env.reset()
    view.predict(obs, deterministic=True)
    later = (PREFERRED + 1) % 4
    set_distance_critics(model.policy, MEANS[later, 0])
    actions = view.predict(obs, deterministic=True)[0]
    np.testing.assert_allclose(actions, MEANS[PREFERRED if margin is None else later], atol=1e-5)


def test_domain_and_uniform_mixtures_execute_the_drawn_policys_mean(point_env):
    permutation = np.eye(4)[PREFERRED]  # row i puts all its mass on policy PREFERRED[i]
    domain = hand_set(point_env, cls=QMPDomain, matrix=permutation.tolist())
    obs = point_env.reset()
    np.testing.assert_allclose(domain.predict(obs, deterministic=True, behaviour="mixture")[0], MEANS[PREFERRED], atol=1e-5)
    uniform = hand_set(point_env, cls=QMPUniform)
    view = uniform.mixture_policy(seed=3)
    drawn = np.stack([first_action(view.predict(obs, deterministic=True)[0]) for _ in range(200)])
    # Every action is one policy's exact mean, every policy is drawn, and a seed replays the draws.
    distance = np.abs(drawn[..., None] - MEANS[None, None, :, 0])  # (draws, rows, policies)
    assert distance.min(axis=-1).max() < 1e-5
    assert set(distance.argmin(axis=-1).ravel().tolist()) == {0, 1, 2, 3}
    again = uniform.mixture_policy(seed=3)
    np.testing.assert_array_equal(
        drawn[:5], np.stack([first_action(again.predict(obs, deterministic=True)[0]) for _ in range(5)])
    )


class ActionSpy(VecEnvWrapper):
    """Records every executed action with the task of its row, and every reset observation."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.tasks: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.resets: list[np.ndarray] = []
        self._obs: np.ndarray | None = None

    def reset(self) -> Any:
        self._obs = self.venv.reset()
        self.resets.append(self._obs.copy())
        return self._obs

    def step_async(self, actions: np.ndarray) -> None:
        assert self._obs is not None
        self.tasks.append(self._obs[:, -4:].argmax(axis=1))
        self.actions.append(np.array(actions, copy=True))
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        self._obs = obs
        return obs, rewards, dones, infos

    def first_actions_by_task(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.tasks), np.concatenate(self.actions)[:, 0]


def test_evaluate_policy_runs_the_mixture_view(point_env):
    model = hand_set(point_env)
    for policy, chosen in ((model, TASKS), (model.mixture_policy(), PREFERRED)):
        spy = ActionSpy(make_multitask_vec_env("MultiGoalPoint-v0", seed=0))
        mean_return, _ = evaluate_policy(policy, spy, n_eval_episodes=4, deterministic=True)
        assert np.isfinite(mean_return)
        tasks, actions = spy.first_actions_by_task()
        np.testing.assert_allclose(actions, MEANS[chosen[tasks], 0], atol=1e-5)


def collector_state(model: Any) -> dict[str, np.ndarray]:
    collector = model.collector
    return {
        "choice": collector._choice.numpy().copy(),
        "steps_left": collector._steps_left.numpy().copy(),
        "window_len": collector._window_len.numpy().copy(),
        "window_len_sum": collector.window_len_sum.copy(),
        "window_count": collector.window_count.copy(),
        "selection_counts": model.selection_counts.copy(),
    }


@pytest.mark.parametrize("cls", [QMP, QMPUniform])
def test_evaluation_leaves_collection_untouched(point_env, cls):
    model = hand_set(point_env, cls=cls, commit_steps=7)
    model.learning_starts = 0
    model.gradient_steps = 0
    model.learn(12)  # 3 vec steps: commitments half-way through their windows
    before = collector_state(model)
    assert before["steps_left"].max() > 0 and before["selection_counts"].sum() == 12
    rng_before = th.get_rng_state()
    callback = PerTaskEvalCallback("MultiGoalPoint-v0", eval_freq=-1, n_eval_episodes=2, verbose=0)
    callback.init_callback(model)
    callback.evaluate()
    evaluate_policy(model.mixture_policy(), make_multitask_vec_env("MultiGoalPoint-v0", seed=1), n_eval_episodes=4)
    model.predict(point_env.reset(), deterministic=True, behaviour="mixture")
    after = collector_state(model)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    assert th.equal(th.get_rng_state(), rng_before), "a deterministic evaluation draws nothing from torch's RNG"


def test_callback_mixture_mode_acts_with_the_mixture_from_the_same_starts():
    model = hand_set(make_multitask_vec_env("MultiGoalPoint-v0", seed=0))
    spy = ActionSpy(make_multitask_vec_env("MultiGoalPoint-v0", seed=0))
    callback = PerTaskEvalCallback(spy, eval_freq=-1, n_eval_episodes=1, verbose=0)
    callback.init_callback(model)
    assert callback.eval_modes == ("own", "mixture")
    result = callback.evaluate()
    tasks, actions = spy.first_actions_by_task()
    half = len(actions) // 2  # own first, then the mixture, the same number of steps (30-step limit)
    np.testing.assert_allclose(actions[:half], MEANS[tasks[:half], 0], atol=1e-5)
    np.testing.assert_allclose(actions[half:], MEANS[PREFERRED[tasks[half:]], 0], atol=1e-5)
    own_start, mixture_start = spy.resets
    np.testing.assert_array_equal(own_start, mixture_start)
    assert result["mixture"]["return"].shape == result["own"]["return"].shape == (4, 1)
    callback.evaluate()
    assert not np.array_equal(spy.resets[2], own_start), "every evaluation starts from new states"


def test_identical_policies_give_identical_results_in_both_modes(tmp_path: Path):
    # Every task's critic prefers its own policy: the mixture IS the own policy, episode for episode.
    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    model = hand_set(env, preferred=TASKS)
    callback = PerTaskEvalCallback(eval_freq=-1, n_eval_episodes=3, log_path=str(tmp_path), verbose=0)
    callback.init_callback(model)
    result = callback.evaluate()
    for name in ("return", "success", "success_any_step", "length"):
        np.testing.assert_array_equal(result["mixture"][name], result["own"][name], err_msg=name)
    assert np.unique(result["own"]["return"]).size > 1, "the start states differ between episodes"
    per_task = evaluate_per_task(model, "MultiGoalPoint-v0", n_eval_episodes=2, seed=5)
    assert per_task["eval_modes"].tolist() == ["own", "mixture"]
    for name in ("success", "success_any_step", "return", "length"):
        assert per_task[name].shape == (4,)
        np.testing.assert_array_equal(per_task[f"mixture_{name}"], per_task[name], err_msg=name)
    deranged = evaluate_per_task(hand_set(env), "MultiGoalPoint-v0", n_eval_episodes=2, seed=5)
    np.testing.assert_array_equal(deranged["return"], per_task["return"])  # same own policies, same seed
    assert not np.array_equal(deranged["mixture_return"], deranged["return"])


@pytest.mark.parametrize(("cls", "modes"), [(QMP, ["own", "mixture"]), (Separated, ["own"])])
def test_callback_files_and_logs_of_each_mode(tmp_path: Path, cls: type, modes: list[str]) -> None:
    model = cls(make_multitask_vec_env("MultiGoalPoint-v0", seed=0), seed=0, **SMALL_KWARGS)
    model.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    callback = PerTaskEvalCallback(eval_freq=40, n_eval_episodes=2, log_path=str(tmp_path / "eval"), verbose=0)
    model.learn(80, callback=callback)
    data = load_evaluations(str(tmp_path / "eval"))
    assert data["eval_modes"].tolist() == modes
    shape = (2, 4, 2)  # (evaluations, tasks, episodes per task)
    for prefix in ["", "mixture_"] if "mixture" in modes else [""]:
        for name in ("returns", "successes", "successes_any_step", "lengths"):
            assert data[prefix + name].shape == shape, prefix + name
    assert not any(key.startswith("mixture_") for key in data) or "mixture" in modes
    assert "stages_completed" not in data and "mixture_stages_completed" not in data  # the point env has none
    header, *rows = (tmp_path / "eval" / EVAL_CSV).read_text().strip().splitlines()
    assert header.split(",")[:2] == ["timesteps", "mode"] and "success_any_step_rate" in header
    assert sorted({row.split(",")[1] for row in rows}) == sorted(modes) and len(rows) == 2 * 4 * len(modes)
    progress = (tmp_path / "log" / "progress.csv").read_text().splitlines()[0].split(",")
    expected = ["eval_tasks/success_rate", "eval_tasks/success_any_step_rate", "eval_tasks/task_3/success_any_step_rate"]
    mixture_keys = [
        "eval_tasks/mixture/success_rate",
        "eval_tasks/mixture/success_any_step_rate",
        "eval_tasks/mixture/mean_reward",
        "eval_tasks/mixture/task_3/success_rate",
        "eval_tasks/mixture/task_3/success_any_step_rate",
        "eval_tasks/mixture/task_3/mean_reward",
    ]
    assert set(expected) <= set(progress)
    assert set(mixture_keys) <= set(progress) if "mixture" in modes else not set(mixture_keys) & set(progress)


def test_own_only_on_request(tmp_path: Path) -> None:
    model = QMP(make_multitask_vec_env("MultiGoalPoint-v0", seed=0), seed=0, **{**SMALL_KWARGS, "learning_starts": 0})
    callback = PerTaskEvalCallback(eval_freq=-1, n_eval_episodes=1, log_path=str(tmp_path), eval_modes=("own",), verbose=0)
    model.learn(8, callback=callback)
    data = load_evaluations(str(tmp_path))
    assert data["eval_modes"].tolist() == ["own"] and not any(key.startswith("mixture_") for key in data)


NO_MIXTURE = [Separated, SharedSAC, DnC, DnCReg, MultiHeadSAC]
WITH_MIXTURE: list[tuple[type, dict[str, Any]]] = [
    (QMP, {}),
    (QMPMultiHead, {}),
    (QMPUniform, {}),
    (QMPDomain, {"mixture": np.full((4, 4), 0.25)}),
    (MultiTaskSAC, {"collector": "qswitch"}),
]


@pytest.mark.parametrize("cls", NO_MIXTURE)
def test_models_without_a_mixture_refuse_the_mixture(point_env, cls):
    model = cls(point_env, **SMALL_KWARGS)
    assert not model.has_mixture
    obs = point_env.reset()
    with pytest.raises(ValueError, match="has no mixture"):
        model.predict(obs, behaviour="mixture")
    with pytest.raises(ValueError, match="has no mixture"):
        model.mixture_policy()
    callback = PerTaskEvalCallback("MultiGoalPoint-v0", eval_freq=-1, eval_modes=("own", "mixture"), verbose=0)
    with pytest.raises(ValueError, match=f"{cls.__name__} has no mixture"):
        callback.init_callback(model)
    with pytest.raises(ValueError, match="has no mixture"):
        evaluate_per_task(model, "MultiGoalPoint-v0", n_eval_episodes=1, eval_modes=("own", "mixture"))
    auto = PerTaskEvalCallback("MultiGoalPoint-v0", eval_freq=-1, verbose=0)
    auto.init_callback(model)
    assert auto.eval_modes == ("own",)


@pytest.mark.parametrize(("cls", "kwargs"), WITH_MIXTURE)
def test_mixture_algorithms_have_a_mixture(point_env, cls, kwargs):
    model = cls(point_env, **kwargs, **SMALL_KWARGS)
    assert model.has_mixture
    actions, _ = model.predict(point_env.reset(), deterministic=True, behaviour="mixture")
    assert actions.shape == (4, 2) and np.abs(actions).max() <= 1.0


def test_bad_behaviour_and_eval_modes(point_env):
    model = QMP(point_env, **SMALL_KWARGS)
    with pytest.raises(ValueError, match="behaviour must be 'own'"):
        model.predict(point_env.reset(), behaviour="mix")
    for modes in ("both", ("mixture",), ("own", "own"), ("own", "greedy")):
        with pytest.raises(ValueError, match="eval_modes"):
            PerTaskEvalCallback(eval_modes=modes)  # type: ignore[arg-type]


def test_run_episodes_refuses_results_too_small_for_its_rows(point_env):
    env = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=2, seed=0)  # two rows per task
    model = hand_set(env)
    with pytest.raises(ValueError, match="2 episodes per task: too few"):
        run_episodes(model, env, [row % 4 for row in range(8)], 2, empty_episodes(4, 2))
    episodes = run_episodes(model, env, [row % 4 for row in range(8)], 2, empty_episodes(4, 4))
    assert reported(episodes)["length"].dtype == np.int64
    with pytest.raises(ValueError, match="were not run"):
        reported(run_episodes(model, env, [0, 1, 2, None, 0, 1, 2, None], 1, empty_episodes(4, 2)))
    # Fewer rows than tasks: the callback runs rounds, the last one with unrecorded rows.
    callback = PerTaskEvalCallback(DummyVecEnv([lambda: gym.make("MultiGoalPoint-v0")] * 3), eval_freq=-1, verbose=0)
    callback.init_callback(model)
    assert callback.evaluate()["mixture"]["length"].shape == (4, 5)
