"""Run checkpoints (sb3_qmp.common.checkpoints) and crash-safe files (sb3_qmp.common.files)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL_KWARGS

from sb3_qmp import QMP, make_multitask_vec_env
from sb3_qmp.common.checkpoints import (
    RunCheckpointCallback,
    checkpoint_problem,
    latest_checkpoint,
    list_checkpoints,
    read_progress,
    write_checkpoint,
)
from sb3_qmp.common.files import atomic_write_text
from sb3_qmp.zoo.resume import RUN_OPTIONS, prepare_run, replace_n_timesteps


@pytest.fixture
def model() -> QMP:
    return QMP(make_multitask_vec_env("MultiGoalPoint-v0", seed=0), seed=0, **SMALL_KWARGS)


def test_checkpoint_holds_model_buffer_and_evaluations(tmp_path: Path, model: QMP) -> None:
    model.learn(128)
    (tmp_path / "evaluations_per_task.npz").write_bytes(b"npz bytes")
    checkpoint = write_checkpoint(model, tmp_path)
    assert checkpoint.num_timesteps == 128 and checkpoint.path.name == "000000000128"
    names = set(checkpoint.manifest["files"])
    assert {"model.zip", "replay_buffer.pkl", "evaluations_per_task.npz"} <= names
    loaded = QMP.load(checkpoint.model)
    loaded.load_replay_buffer(checkpoint.replay_buffer)
    assert loaded.num_timesteps == 128 and loaded.replay_buffer.task_sizes().tolist() == [32] * 4
    np.testing.assert_array_equal(loaded.selection_counts, model.selection_counts)


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path, model: QMP) -> None:
    for _ in range(3):
        model.learn(32, reset_num_timesteps=False)
        write_checkpoint(model, tmp_path, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["000000000096", "000000000064"]
    with pytest.raises(ValueError, match="keep must be >= 2"):
        write_checkpoint(model, tmp_path, keep=1)


@pytest.mark.parametrize("damage", ["truncate_model", "drop_manifest", "garble_buffer"])
def test_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path: Path, model: QMP, damage: str) -> None:
    model.learn(64)
    older = write_checkpoint(model, tmp_path)
    model.learn(64, reset_num_timesteps=False)
    newest = write_checkpoint(model, tmp_path)
    if damage == "truncate_model":
        data = newest.model.read_bytes()
        newest.model.write_bytes(data[: len(data) // 2])
    elif damage == "drop_manifest":
        (newest.path / "checkpoint.json").unlink()
    else:  # same size, other bytes: only the hash notices
        buffer = newest.path / "replay_buffer.pkl"
        data = bytearray(buffer.read_bytes())
        data[len(data) // 2] ^= 0xFF
        buffer.write_bytes(bytes(data))
    assert checkpoint_problem(newest.path) is not None
    with pytest.warns(UserWarning, match="damaged"):
        found = latest_checkpoint(tmp_path)
    assert found is not None and found.path == older.path


def test_unfinished_checkpoint_folder_is_ignored(tmp_path: Path, model: QMP) -> None:
    model.learn(64)
    good = write_checkpoint(model, tmp_path)
    (tmp_path / "checkpoints" / ".tmp-128-999").mkdir()  # a writer killed mid-checkpoint
    assert latest_checkpoint(tmp_path).path == good.path


def test_callback_checkpoints_at_rollout_starts_and_writes_progress(tmp_path: Path, model: QMP) -> None:
    callback = RunCheckpointCallback(tmp_path, every_minutes=None, every_steps=64)
    model.learn(256, callback=callback)
    # Rollouts are 32 env steps (train_freq 8 x 4 envs): checkpoints at 64, 128, 192 and the end (256).
    assert [c.num_timesteps for c in callback.checkpoints] == [64, 128, 192, 256]
    progress = read_progress(tmp_path)
    assert progress["state"] == "ended" and progress["num_timesteps"] == 256 and progress["total_timesteps"] == 256
    with pytest.raises(ValueError, match="every_minutes, every_steps"):
        RunCheckpointCallback(tmp_path, every_minutes=None, every_steps=None)


def test_killed_writer_leaves_the_old_file_whole(tmp_path: Path) -> None:
    """SIGKILL in the middle of an atomic write: the target keeps its previous complete content."""
    target = tmp_path / "summary.json"
    atomic_write_text(target, "old complete content")
    script = textwrap.dedent(
        f"""
        import os, signal
        from sb3_qmp.common.files import atomic_open
        with atomic_open({str(target)!r}) as f:
            f.write("new partial")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    process = subprocess.run([sys.executable, "-c", script], check=False)
    assert process.returncode == -signal.SIGKILL
    assert target.read_text() == "old complete content"


def test_resume_options_pick_the_newest_good_checkpoint(tmp_path: Path, model: QMP) -> None:
    run = tmp_path / "qmp" / "MultiGoalPoint-v0_1"
    model.learn(64)
    write_checkpoint(model, run)
    argv = ["--algo", "qmp", "--env", "MultiGoalPoint-v0", "-f", str(tmp_path), "-n", "200", "--resume"]
    try:
        zoo_argv = prepare_run(argv)
        assert zoo_argv is not None
        assert zoo_argv[-2:] == ["-i", str(run / "checkpoints" / "000000000064" / "model.zip")]
        assert zoo_argv[zoo_argv.index("-n") + 1] == "136"  # the steps still to go
        assert RUN_OPTIONS.resume_dir == run and RUN_OPTIONS.checkpoint_minutes == 10.0
        # A finished run is left alone.
        model.save(run / "MultiGoalPoint-v0.zip")
        model.num_timesteps = 200
        model.save(run / "MultiGoalPoint-v0.zip")
        assert prepare_run(argv) is None
        with pytest.raises(SystemExit, match="needs -n"):
            prepare_run([*argv[:-3], "--resume"])
    finally:
        prepare_run([])  # leave no resume state for other tests


def test_replace_n_timesteps_handles_every_spelling() -> None:
    assert replace_n_timesteps(["-n", "5", "--seed", "1"], 3) == ["-n", "3", "--seed", "1"]
    assert replace_n_timesteps(["--n-timesteps=5"], 3) == ["--n-timesteps=3"]


def test_eval_history_is_restored(tmp_path: Path, model: QMP) -> None:
    from sb3_qmp.common.callbacks import PerTaskEvalCallback

    first = PerTaskEvalCallback(eval_freq=64, n_eval_episodes=1, log_path=str(tmp_path / "a"), verbose=0)
    model.learn(128, callback=first)
    second = PerTaskEvalCallback(eval_freq=64, n_eval_episodes=1, log_path=str(tmp_path / "b"), verbose=0)
    second.restore(str(tmp_path / "a"))
    model.learn(128, callback=second, reset_num_timesteps=False)
    assert second.timesteps == [*first.timesteps, 192, 256]
    for key, values in first.history.items():
        np.testing.assert_array_equal(np.array(second.history[key][: len(values)]), np.array(values))
    # The evaluation seeds continue their sequence: the next start states are an uninterrupted run's.
    restored = PerTaskEvalCallback(eval_freq=64, n_eval_episodes=1, verbose=0)
    restored.restore(str(tmp_path / "a"))
    restored.init_callback(model)
    reference = np.random.default_rng(0)
    for _ in first.timesteps:
        reference.integers(2**31 - 2**20, size=1)
    assert restored._seeds.bit_generator.state == reference.bit_generator.state


def test_restore_refuses_other_tasks(tmp_path: Path, model: QMP) -> None:
    from sb3_qmp.common.callbacks import PerTaskEvalCallback

    first = PerTaskEvalCallback(eval_freq=64, n_eval_episodes=1, log_path=str(tmp_path), verbose=0)
    model.learn(64, callback=first)
    data = dict(np.load(tmp_path / "evaluations_per_task.npz"))
    data["task_names"] = np.array(["a", "b", "c", "d"])
    np.savez(tmp_path / "other.npz", **data)
    callback = PerTaskEvalCallback(eval_freq=64, n_eval_episodes=1, verbose=0)
    callback.restore(str(tmp_path / "other.npz"))
    with pytest.raises(ValueError, match="holds evaluations of tasks"):
        callback.init_callback(model)


def test_progress_is_none_without_a_file(tmp_path: Path) -> None:
    assert read_progress(tmp_path) is None
    (tmp_path / "progress.json").write_text("{not json")
    assert read_progress(tmp_path) is None
    (tmp_path / "progress.json").write_text(json.dumps({"num_timesteps": 3}))
    assert read_progress(tmp_path) == {"num_timesteps": 3}
    assert os.path.exists(tmp_path / "progress.json")


KILL_DURING = textwrap.dedent(
    """
    import os, signal, sys
    from sb3_qmp import QMP, make_multitask_vec_env
    from sb3_qmp.common.checkpoints import write_checkpoint

    folder, what = sys.argv[1], sys.argv[2]
    model = QMP(make_multitask_vec_env("MultiGoalPoint-v0", seed=0), learning_starts=20, batch_size=8, seed=0,
                policy_kwargs=dict(net_arch=[8]))
    model.learn(64)
    model.save(os.path.join(folder, "model.zip"))
    model.save_replay_buffer(os.path.join(folder, "buffer.pkl"))
    write_checkpoint(model, folder)
    model.learn(64, reset_num_timesteps=False)
    import pickle
    dump = pickle.dump
    def dying_dump(obj, f, *args, **kwargs):  # the process is killed after writing part of the file
        f.write(b"partial")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    pickle.dump = dying_dump
    import stable_baselines3.common.save_util as save_util
    save_util.pickle.dump = dying_dump
    if what == "buffer":
        model.save_replay_buffer(os.path.join(folder, "buffer.pkl"))
    else:
        write_checkpoint(model, folder)
    """
)


@pytest.mark.parametrize("what", ["buffer", "checkpoint"])
def test_sigkill_while_saving_leaves_the_previous_files_usable(tmp_path: Path, what: str) -> None:
    process = subprocess.run([sys.executable, "-c", KILL_DURING, str(tmp_path), what], check=False, capture_output=True)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()[-2000:]
    model = QMP.load(tmp_path / "model.zip")
    model.load_replay_buffer(tmp_path / "buffer.pkl")  # the complete earlier buffer, not a truncated one
    assert model.replay_buffer.size() == 64
    checkpoint = latest_checkpoint(tmp_path)  # no warning: the interrupted checkpoint never appeared
    assert checkpoint is not None and checkpoint.num_timesteps == 64
