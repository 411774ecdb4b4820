"""PerTaskEvalCallback: every task evaluated with its own policy, logged and written to file."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper, VecNormalize

from sb3_qmp import QMP, TaskAssignmentWrapper, make_multitask_vec_env
from sb3_qmp.common.callbacks import EVAL_CSV, EVAL_FILE, PerTaskEvalCallback, chosen_log_dir, load_evaluations
from sb3_qmp.common.normalize import VecNormalizePerTask

TINY: dict[str, Any] = dict(
    learning_starts=64, batch_size=16, buffer_size=2_000, train_freq=4, policy_kwargs=dict(net_arch=[16])
)


def test_logs_every_task_and_writes_file(tmp_path: Path) -> None:
    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    model = QMP("MlpPolicy", env, seed=0, **TINY)
    model.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    callback = PerTaskEvalCallback(eval_freq=100, n_eval_episodes=2, log_path=str(tmp_path / "eval"), verbose=0)
    model.learn(240, callback=callback)

    data = load_evaluations(str(tmp_path / "eval"))
    steps = data["timesteps"].tolist()
    assert steps == [100, 200, 240], "every eval_freq env steps, plus one at the end"
    assert data["successes"].shape == data["returns"].shape == (3, 4, 2)  # (evaluations, tasks, episodes per task)
    assert set(np.unique(data["successes"])) <= {0.0, 1.0}
    # 30-step time limit: every episode ends within 30 steps; returns are the env's (negative step costs).
    assert (data["lengths"] >= 1).all() and (data["lengths"] <= 30).all() and (data["returns"] < 0).all()
    assert data["task_names"].tolist() == ["right", "up-right", "left", "right-sparse"]
    assert data["selection_counts"].shape == (3, 4, 4)
    assert model.selection_counts is not None
    assert data["selection_counts"][-1].sum() == model.selection_counts.sum() > 0

    csv_rows = (tmp_path / "eval" / EVAL_CSV).read_text().strip().splitlines()
    assert len(csv_rows) == 1 + 3 * 4 * 2, "one row per evaluation, task and mode (QMP: own and mixture)"
    progress = (tmp_path / "log" / "progress.csv").read_text().splitlines()[0].split(",")
    for task in range(4):
        assert f"eval_tasks/task_{task}/success_rate" in progress and f"eval_tasks/task_{task}/mean_reward" in progress
    assert "eval_tasks/success_rate" in progress and "eval_tasks/mean_reward" in progress


def test_each_task_runs_its_own_task(tmp_path: Path) -> None:
    """The rows' one-hot suffixes seen by predict match the task being evaluated, for any eval env size."""
    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    model = QMP("MlpPolicy", env, seed=0, **TINY)
    seen: list[np.ndarray] = []
    predict = model.predict

    def spy(obs, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(obs[:, -4:].argmax(axis=1))
        return predict(obs, *args, **kwargs)

    model.predict = spy  # type: ignore[method-assign, assignment]
    # A single-env eval env (an env id with one sub-env per task is the default): tasks in 4 rounds.
    import gymnasium as gym

    callback = PerTaskEvalCallback(
        eval_env=gym.make("MultiGoalPoint-v0"), eval_freq=-1, n_eval_episodes=1, log_path=str(tmp_path), verbose=0
    )
    model.learn(8, callback=callback)  # evaluates once, at the end
    rows = np.concatenate(seen)
    assert sorted(set(rows.tolist())) == [0, 1, 2, 3]
    assert (np.diff(rows) >= 0).all(), "tasks are evaluated one round after the other"
    assert callback.successes[-1].shape == (4, 1)


def test_from_env_id_and_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_eval_episodes"):
        PerTaskEvalCallback(n_eval_episodes=0)
    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    model = QMP("MlpPolicy", env, seed=0, **TINY)
    callback = PerTaskEvalCallback("MultiGoalPoint-v0", eval_freq=-1, n_eval_episodes=1, log_path=str(tmp_path), verbose=0)
    model.learn(4, callback=callback)
    assert (tmp_path / EVAL_FILE).is_file()
    with pytest.raises(FileNotFoundError, match="PerTaskEvalCallback"):
        load_evaluations(str(tmp_path / "nothing"))


def test_reward_only_vecnormalize(tmp_path: Path) -> None:
    """Reward normalisation changes nothing the policy sees: the eval env stays unwrapped, returns raw."""
    env = VecNormalizePerTask(make_multitask_vec_env("MultiGoalPoint-v0", seed=0), norm_obs=False, norm_reward=True)
    model = QMP("MlpPolicy", env, seed=0, **TINY)
    callback = PerTaskEvalCallback(eval_freq=48, n_eval_episodes=1, log_path=str(tmp_path), verbose=0)
    model.learn(96, callback=callback)  # used to fail: "Error while synchronizing normalization stats"
    assert callback.timesteps == [48, 96]
    assert not isinstance(callback.eval_env, VecNormalize)
    returns, lengths = callback.returns[-1], callback.lengths[-1]
    # Raw returns: every step costs at least 1 (normalised ones would be O(1) per episode).
    assert (returns <= -lengths).all()


def test_observation_normalization_is_matched_and_synced() -> None:
    """With normalised features on the training side, evaluation sees the same normalised observations."""
    stats = VecNormalizePerTask(make_multitask_vec_env("MultiGoalPoint-v0", seed=0), norm_reward=False, epsilon=0.0)
    model = QMP("MlpPolicy", stats, seed=0, **TINY)
    stats.obs_rms.mean[:], stats.obs_rms.var[:] = 1.0, 4.0
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    predict = model.predict

    def spy(obs, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((obs.copy(), callback.eval_env.get_original_obs()))  # type: ignore[union-attr]
        return predict(obs, *args, **kwargs)

    model.predict = spy  # type: ignore[method-assign, assignment]
    callback = PerTaskEvalCallback("MultiGoalPoint-v0", eval_freq=-1, n_eval_episodes=1, verbose=0)
    callback.init_callback(model)
    eval_norm = callback.eval_env
    assert isinstance(eval_norm, VecNormalizePerTask) and not eval_norm.training and not eval_norm.norm_reward
    for mean in (1.0, 0.0):  # the training statistics move on: every evaluation re-syncs
        stats.obs_rms.mean[:] = mean
        seen.clear()
        callback.evaluate()
        normalised, raw = map(np.concatenate, zip(*seen))
        np.testing.assert_allclose(normalised[:, :2], (raw[:, :2] - mean) / 2.0, rtol=1e-6)
        np.testing.assert_array_equal(normalised[:, -4:], raw[:, -4:])  # the one-hot task id untouched
        assert eval_norm.obs_rms.mean.tolist() == [mean, mean]


def test_log_dir_only_when_the_user_chose_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    assert chosen_log_dir(None) is None
    assert chosen_log_dir(configure(None, ["stdout"])) is None  # SB3's throw-away <tmp>/SB3-<date-time>
    assert chosen_log_dir(configure(None, [""])) is None
    auto_csv = configure(None, ["csv"])  # files are written there anyway: ours go along
    assert chosen_log_dir(auto_csv) == auto_csv.get_dir()
    assert chosen_log_dir(configure(str(tmp_path / "mine"), ["stdout"])) == str(tmp_path / "mine")
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path / "env"))
    assert chosen_log_dir(configure(None, ["stdout"])) == str(tmp_path / "env")


def test_without_log_path_keeps_results_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where SB3 puts its default logger folder
    model = QMP("MlpPolicy", make_multitask_vec_env("MultiGoalPoint-v0", seed=0), seed=0, verbose=0, **TINY)
    callback = PerTaskEvalCallback(eval_freq=-1, n_eval_episodes=1, verbose=0)
    with pytest.warns(UserWarning, match="no log_path"):
        model.learn(16, callback=callback)  # one rollout: 4 vec steps x 4 envs
    assert model.logger.get_dir() is not None and model.logger.get_dir().startswith(str(tmp_path))  # type: ignore[union-attr]
    assert callback.log_path is None and callback.timesteps == [16] and callback.successes[0].shape == (4, 1)
    assert not list(tmp_path.rglob(EVAL_FILE)), "no stray files in SB3's temp logger folder"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per callback
        warnings.filterwarnings("ignore", message="This run ends at")  # TINY's learning_starts: not this test's concern
        model.learn(16, callback=callback, reset_num_timesteps=False)
    assert callback.timesteps == [16, 32]


def test_log_path_defaults_to_a_chosen_logger_folder(tmp_path: Path) -> None:
    model = QMP("MlpPolicy", make_multitask_vec_env("MultiGoalPoint-v0", seed=0), seed=0, **TINY)
    model.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    callback = PerTaskEvalCallback(eval_freq=-1, n_eval_episodes=1, verbose=0)
    model.learn(16, callback=callback)
    assert callback.log_path == str(tmp_path / "log")
    assert load_evaluations(str(tmp_path / "log"))["timesteps"].tolist() == [16]


class _DoneTaskSpy(VecEnvWrapper):
    """Records the task of every finished episode."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.finished_tasks: list[int] = []

    def reset(self) -> Any:
        return self.venv.reset()

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        self.finished_tasks += [int(infos[i]["task_id"]) for i in np.flatnonzero(dones)]
        return obs, rewards, dones, infos


class _ForceTaskZero(_DoneTaskSpy):
    """Reassigns every sub-env to task 0 at each reset, behind the callback's back."""

    def reset(self) -> Any:
        self.venv.env_method("set_task", 0)
        return self.venv.reset()


def test_eval_env_with_a_task_assignment_wrapper_runs_every_task() -> None:
    # rl-zoo3 wraps eval envs in TaskAssignmentWrapper; with 1 sub-env it cycles tasks on its own and
    # would override the callback's choice (tasks 0, 1, 0, 1 instead of 0, 1, 2, 3).
    model = QMP("MlpPolicy", make_multitask_vec_env("MultiGoalPoint-v0", seed=0), seed=0, **TINY)
    assigner = TaskAssignmentWrapper(DummyVecEnv([lambda: gym.make("MultiGoalPoint-v0")]))
    spy = _DoneTaskSpy(assigner)
    callback = PerTaskEvalCallback(spy, eval_freq=-1, n_eval_episodes=2, verbose=0)
    callback.init_callback(model)
    result = callback.evaluate()
    assert result["own"]["success"].shape == (4, 2)
    assert spy.finished_tasks[:8] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert assigner.assign, "the wrapper takes over again after the evaluation"

    rogue = PerTaskEvalCallback(_ForceTaskZero(make_multitask_vec_env("MultiGoalPoint-v0")), eval_freq=-1, verbose=0)
    rogue.init_callback(model)
    with pytest.raises(RuntimeError, match="ran task 0 instead of task 1"):
        rogue.evaluate()
