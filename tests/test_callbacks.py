"""PerTaskEvalCallback: every task evaluated with its own policy, logged and written to file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stable_baselines3.common.logger import configure

from sb3_qmp import QMP, make_multitask_vec_env
from sb3_qmp.common.callbacks import EVAL_CSV, EVAL_FILE, PerTaskEvalCallback, load_evaluations

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
    assert len(csv_rows) == 1 + 3 * 4
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

    callback = PerTaskEvalCallback(eval_env=gym.make("MultiGoalPoint-v0"), eval_freq=-1, n_eval_episodes=1, verbose=0)
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
