"""Resuming an interrupted run: save + replay buffer, load, ``learn(reset_num_timesteps=False)``.

A run split in two at N env steps must end where the unsplit run ends: the same step and update counters,
the same per-task replay-buffer sizes, selection counts and optimizer step counts, and per-task statistics
that carry on from before the split. A ``CheckpointCallback``'s files (model + replay buffer) are enough.
(Weights cannot match: the env is reset when the run resumes, and random-number states are not saved.)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SMALL_KWARGS
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback

from sb3_qmp import QMP, DnC, MultiTaskSAC, SharedSAC, make_multitask_vec_env
from sb3_qmp.zoo import checkpoint_replay_buffer, register_zoo

TOTAL, SPLIT = 400, 200  # env steps (100 and 50 per task); the split falls on a vec-env step (4 sub-envs)
CASES = {
    "qmp": (QMP, dict(collector_kwargs=dict(commit_steps=2))),
    "dnc": (DnC, dict(distill_period=150, distill_epochs=5, distill_batch_size=16)),
    "shared": (SharedSAC, {}),
}


def make_model(name: str) -> MultiTaskSAC:
    cls, kwargs = CASES[name]
    return cls(make_multitask_vec_env("MultiGoalPoint-v0", seed=0), seed=0, stats_window_size=1000, **SMALL_KWARGS, **kwargs)


def resume(name: str, model_path: Path, buffer_path: Path) -> MultiTaskSAC:
    cls, _ = CASES[name]
    model = cls.load(model_path, env=make_multitask_vec_env("MultiGoalPoint-v0", seed=1))
    model.load_replay_buffer(buffer_path)
    return model


def counters(model: MultiTaskSAC) -> dict[str, Any]:
    """What must not depend on where a run was split."""
    optimizers = {"actor": model.actor.optimizer, "critic": model.critic.optimizer, "ent_coef": model.ent_coef_optimizer}
    state = {
        "num_timesteps": model.num_timesteps,
        "n_updates": model._n_updates,
        "task_sizes": model.replay_buffer.task_sizes().tolist(),
        "task_pos": model.replay_buffer.task_pos.tolist(),
        "selections_per_task": model.selection_counts.sum(axis=1).tolist(),
        "distill_count": getattr(model, "distill_count", None),
    }
    for name, optimizer in optimizers.items():  # Adam's step count: it continued rather than restarted
        state[f"{name}_optimizer_steps"] = sorted({float(s["step"]) for s in optimizer.state.values()})
    return state


def episodes_per_task(model: MultiTaskSAC) -> np.ndarray:
    """Episodes in the per-task statistics (the window, 1000, is never full here)."""
    return np.array([len(buffer) for buffer in model.task_success_buffer])


class CountEpisodes(BaseCallback):
    """Episodes finished per task during one ``learn`` call."""

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        self.counts = np.zeros(num_tasks, dtype=np.int64)

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"]):
            if done:
                self.counts[info["task_id"]] += 1
        return True


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[MultiTaskSAC, Path]]:
    """Every case trained for TOTAL steps in one go, with checkpoints (model + replay buffer) at SPLIT and TOTAL."""
    runs = {}
    for name in CASES:
        folder = tmp_path_factory.mktemp(name)
        model = make_model(name)
        checkpoints = CheckpointCallback(save_freq=SPLIT // model.n_envs, save_path=str(folder), save_replay_buffer=True)
        model.learn(TOTAL, callback=checkpoints)
        runs[name] = (model, folder)
    return runs


@pytest.mark.parametrize("name", list(CASES))
def test_split_run_ends_like_the_unsplit_run(name, reference_runs, tmp_path):
    reference, _ = reference_runs[name]
    first = make_model(name)
    first.learn(SPLIT)
    first.save(tmp_path / "model.zip")
    first.save_replay_buffer(tmp_path / "buffer.pkl")
    saved_episodes = episodes_per_task(first)
    saved_log_ent_coef = first.log_ent_coef.detach().clone()
    saved_windows = first.collector.window_count.copy()
    del first  # the process is killed

    resumed = resume(name, tmp_path / "model.zip", tmp_path / "buffer.pkl")
    np.testing.assert_array_equal(episodes_per_task(resumed), saved_episodes)
    np.testing.assert_array_equal(resumed.collector.window_count, saved_windows)
    assert np.array_equal(resumed.log_ent_coef.detach(), saved_log_ent_coef)
    new_episodes = CountEpisodes(resumed.num_tasks)
    resumed.learn(TOTAL - SPLIT, reset_num_timesteps=False, callback=new_episodes)
    assert counters(resumed) == counters(reference)
    # Per-task statistics carry on from before the split.
    np.testing.assert_array_equal(episodes_per_task(resumed), saved_episodes + new_episodes.counts)
    assert (resumed.collector.window_count >= saved_windows).all()


@pytest.mark.parametrize("name", ["qmp"])
def test_checkpoint_callback_files_are_enough_to_resume(name, reference_runs):
    reference, folder = reference_runs[name]
    assert sorted(p.name for p in folder.iterdir()) == [
        f"rl_model_{SPLIT}_steps.zip",
        f"rl_model_{TOTAL}_steps.zip",
        f"rl_model_replay_buffer_{SPLIT}_steps.pkl",
        f"rl_model_replay_buffer_{TOTAL}_steps.pkl",
    ]
    # Killed after the first checkpoint: resume from its two files only. SB3 calls callbacks before it stores the
    # step's transitions and trains, so a checkpoint lacks the last vec-env step's transitions (one per sub-env)
    # and the gradient step that followed them.
    resumed = resume(name, folder / f"rl_model_{SPLIT}_steps.zip", folder / f"rl_model_replay_buffer_{SPLIT}_steps.pkl")
    assert resumed.num_timesteps == SPLIT
    np.testing.assert_array_equal(resumed.replay_buffer.task_sizes(), SPLIT // 4 - 1)
    resumed.learn(TOTAL - SPLIT, reset_num_timesteps=False)
    expected = counters(reference)
    expected["task_sizes"] = [size - 1 for size in expected["task_sizes"]]
    expected["task_pos"] = [pos - 1 for pos in expected["task_pos"]]
    expected["n_updates"] -= 1
    for name in ("actor", "critic", "ent_coef"):
        expected[f"{name}_optimizer_steps"] = [steps - 1 for steps in expected[f"{name}_optimizer_steps"]]
    assert counters(resumed) == expected


# ----------------------------------------------------------------------------------------------
# rl-zoo3: -i continues a killed run from a --save-freq checkpoint saved with --save-replay-buffer
# ----------------------------------------------------------------------------------------------
ZOO = ["--env", "MultiGoalPoint-v0", "--seed", "1", "--eval-freq", "-1", "--num-threads", "1"]
ZOO_PARAMS = ["-params", "learning_starts:100", "callback:None"]  # no per-task evaluation: not what is tested


def zoo_train(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    register_zoo()
    from rl_zoo3.train import train

    monkeypatch.setattr(sys, "argv", ["rl_zoo3.train", "--algo", "qmp", *ZOO, *args, *ZOO_PARAMS])
    train()


def test_zoo_resumes_from_a_checkpoint_with_its_replay_buffer(monkeypatch, tmp_path, capsys):
    logs = tmp_path / "logs"
    zoo_train(monkeypatch, ["-n", "400", "--save-freq", "200", "--save-replay-buffer", "-f", str(logs)])
    first = logs / "qmp" / "MultiGoalPoint-v0_1"
    checkpoint = first / "rl_model_200_steps.zip"
    assert checkpoint_replay_buffer(checkpoint) == first / "rl_model_replay_buffer_200_steps.pkl"
    assert (first / "replay_buffer.pkl").is_file()  # the final buffer (416 steps) must not be the one loaded

    # The run was killed after its first checkpoint: continue it for 200 more env steps.
    capsys.readouterr()
    zoo_train(monkeypatch, ["-n", "200", "--save-replay-buffer", "-f", str(logs), "-i", str(checkpoint)])
    assert "Loading the checkpoint's replay buffer" in capsys.readouterr().out
    second = logs / "qmp" / "MultiGoalPoint-v0_2"
    model = QMP.load(second / "MultiGoalPoint-v0.zip")
    model.load_replay_buffer(second / "replay_buffer.pkl")
    # The counters went on from 200 (to 424: whole 32-step rollouts); the buffer is the checkpoint's (200 env
    # steps less the last vec-env step, see above) plus every step since.
    assert model.num_timesteps == 424
    np.testing.assert_array_equal(model.replay_buffer.task_sizes(), (424 - 4) // 4)
    assert model.selection_counts.sum() == 424 - 100  # every collection step after learning_starts, once


def test_zoo_resume_without_a_buffer_warns(monkeypatch, tmp_path):
    logs = tmp_path / "logs"
    zoo_train(monkeypatch, ["-n", "200", "--save-freq", "200", "-f", str(logs)])
    checkpoint = logs / "qmp" / "MultiGoalPoint-v0_1" / "rl_model_200_steps.zip"
    assert checkpoint_replay_buffer(checkpoint) is None  # saved without --save-replay-buffer
    with pytest.warns(UserWarning, match="training continues from an empty buffer"):
        zoo_train(monkeypatch, ["-n", "32", "-f", str(logs), "-i", str(checkpoint)])
