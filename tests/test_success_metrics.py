"""Both success metrics (strict ``is_success`` and the paper's ``success_any_step``) in evaluation and training logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium import spaces
from stable_baselines3.common.logger import configure

from sb3_qmp import QMP, MultiTaskWrapper, Separated, make_multitask_vec_env
from sb3_qmp.common.callbacks import EVAL_CSV, PerTaskEvalCallback, load_evaluations
from sb3_qmp.common.evaluation import episode_outcome, evaluate_per_task

EPISODE = 5
FLAG_ID = "FlagOnceTest-v0"


class FlagOnceEnv(gym.Env):
    """Two tasks, 5-step episodes, actions ignored. Task 0 sets its success flag at step 2 only (reached,
    then lost: a paper success, not a strict one); task 1 sets it at steps 2 and 5 (success in both)."""

    num_tasks = 2
    task_names = ("lost", "kept")

    def __init__(self, report_any_step: bool = True) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.report_any_step = report_any_step
        self.task = 0
        self._t = 0
        self._any = False
        self._stages = 0

    def set_task(self, task_id: int) -> None:
        self.task = task_id

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t, self._any, self._stages = 0, False, 0
        return self.np_random.uniform(-1, 1, size=2).astype(np.float32), {"is_success": False}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._t += 1
        flag = self._t == 2 or (self.task == 1 and self._t == EPISODE)
        self._any |= flag
        self._stages += int(flag)
        info: dict[str, Any] = {"is_success": flag, "stages_completed": self._stages}
        if self.report_any_step:
            info["success_any_step"] = self._any
        obs = np.full(2, self._t / EPISODE, dtype=np.float32)
        return obs, float(flag), False, self._t >= EPISODE, info


def make_flag_env(report_any_step: bool = True, task_id: int | None = None) -> MultiTaskWrapper:
    return MultiTaskWrapper(FlagOnceEnv(report_any_step), task_id=task_id)


if FLAG_ID not in gym.registry:
    gym.register(FLAG_ID, entry_point=make_flag_env, max_episode_steps=EPISODE)

STRICT = np.array([0.0, 1.0])
ANY_STEP = np.array([1.0, 1.0])
STAGES = np.array([1.0, 2.0])


def flag_env(report_any_step: bool = True, n_envs_per_task: int = 1) -> Any:
    return make_multitask_vec_env(lambda: make_flag_env(report_any_step), n_envs_per_task=n_envs_per_task, seed=0)


TINY: dict[str, Any] = dict(
    learning_starts=0, gradient_steps=0, buffer_size=1_000, batch_size=8, policy_kwargs=dict(net_arch=[8])
)


def test_episode_outcome_reads_both_metrics_and_falls_back():
    assert episode_outcome({"is_success": False, "success_any_step": True, "stages_completed": 1}) == (0.0, 1.0, 1.0)
    strict, any_step, stages = episode_outcome({"is_success": True})
    assert (strict, any_step) == (1.0, 1.0) and np.isnan(stages)
    assert episode_outcome({"success": 1.0})[:2] == (1.0, 1.0)  # Meta-World's key
    assert episode_outcome({})[:2] == (0.0, 0.0)


@pytest.mark.parametrize("cls", [Separated, QMP])
def test_callback_records_strict_any_step_and_stages(tmp_path: Path, cls: type) -> None:
    model = cls(flag_env(), seed=0, **TINY)
    model.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    callback = PerTaskEvalCallback(flag_env(), eval_freq=-1, n_eval_episodes=3, log_path=str(tmp_path / "eval"), verbose=0)
    model.learn(2 * EPISODE, callback=callback)
    data = load_evaluations(str(tmp_path / "eval"))
    prefixes = ["", "mixture_"] if model.has_mixture else [""]
    for prefix in prefixes:
        np.testing.assert_array_equal(data[prefix + "successes"][0], np.repeat(STRICT[:, None], 3, axis=1))
        np.testing.assert_array_equal(data[prefix + "successes_any_step"][0], np.repeat(ANY_STEP[:, None], 3, axis=1))
        np.testing.assert_array_equal(data[prefix + "stages_completed"][0], np.repeat(STAGES[:, None], 3, axis=1))
        assert data[prefix + "lengths"].shape == (1, 2, 3) and (data[prefix + "lengths"] == EPISODE).all()
    progress = pd.read_csv(tmp_path / "log" / "progress.csv")
    row = progress.dropna(subset=["eval_tasks/success_rate"]).iloc[-1]
    for task in range(2):
        assert row[f"eval_tasks/task_{task}/success_rate"] == STRICT[task]
        assert row[f"eval_tasks/task_{task}/success_any_step_rate"] == ANY_STEP[task]
        assert row[f"eval_tasks/task_{task}/stages_completed"] == STAGES[task]
    assert row["eval_tasks/success_rate"] == 0.5 and row["eval_tasks/success_any_step_rate"] == 1.0
    if model.has_mixture:
        assert row["eval_tasks/mixture/task_0/success_rate"] == 0.0
        assert row["eval_tasks/mixture/task_0/success_any_step_rate"] == 1.0
    table = pd.read_csv(tmp_path / "eval" / EVAL_CSV)
    own = table[table["mode"] == "own"].set_index("task")
    np.testing.assert_array_equal(own["success_rate"], STRICT)
    np.testing.assert_array_equal(own["success_any_step_rate"], ANY_STEP)
    np.testing.assert_array_equal(own["stages_completed"], STAGES)


def test_any_step_falls_back_to_the_strict_success(tmp_path: Path) -> None:
    model = Separated(flag_env(report_any_step=False), seed=0, **TINY)
    callback = PerTaskEvalCallback(flag_env(report_any_step=False), eval_freq=-1, n_eval_episodes=1, verbose=0)
    callback.init_callback(model)
    result = callback.evaluate()
    np.testing.assert_array_equal(result["own"]["success_any_step"][:, 0], STRICT)


def test_training_logs_both_metrics(tmp_path: Path) -> None:
    model = Separated(flag_env(n_envs_per_task=2), seed=0, **TINY)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(4 * EPISODE * 4, log_interval=1)
    progress = pd.read_csv(tmp_path / "progress.csv")
    last = progress.iloc[-1]
    for task in range(2):
        assert last[f"rollout/task_{task}/success_rate"] == STRICT[task]
        assert last[f"rollout/task_{task}/success_any_step_rate"] == ANY_STEP[task]
    assert list(model.task_success_any_step_buffer[0]) == [1.0] * 8 and list(model.task_success_buffer[0]) == [0.0] * 8


def test_evaluate_per_task_returns_both_metrics() -> None:
    model = QMP(flag_env(), seed=0, **TINY)
    result = evaluate_per_task(model, FLAG_ID, n_eval_episodes=2, seed=0)
    for prefix in ("", "mixture_"):
        np.testing.assert_array_equal(result[prefix + "success"], STRICT)
        np.testing.assert_array_equal(result[prefix + "success_any_step"], ANY_STEP)
        np.testing.assert_array_equal(result[prefix + "stages"], STAGES)
        np.testing.assert_array_equal(result[prefix + "length"], [EPISODE, EPISODE])
