"""The grid runner (sb3_qmp.grid): zoo runs as Ray tasks, skipped when finished, resumed mid-way when killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sb3_qmp.common.checkpoints import read_progress
from sb3_qmp.grid import (
    RunOptions,
    RunSpec,
    execute_run,
    progress_rows,
    progress_text,
    run_grid,
    run_state,
    runs,
    summarize_grid,
)
from sb3_qmp.grid.__main__ import main as grid_main
from sb3_qmp.grid.runs import archive_run

pytest.importorskip("ray")

# Rollouts of the MultiGoalPoint entry are 32 env steps (train_freq 8 x 4 sub-envs): budgets are multiples.
EVAL = "callback:[{'sb3_qmp.common.callbacks.PerTaskEvalCallback':{'eval_freq':320,'n_eval_episodes':1}}]"
FAST = RunOptions(checkpoint_minutes=10.0, nice=0)


def model_data(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("data"))


def run_in_background(spec: RunSpec, logs: Path, options: RunOptions) -> tuple[threading.Thread, dict, Path]:
    """``execute_run`` in a thread, so that the test can act on its training process: the thread, the dict its
    result goes into, and the run's folder."""
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(execute_run(spec, str(logs), options)))
    worker.start()
    return worker, result, logs / f"seed_{spec.seed}" / spec.algo / f"{spec.env}_1"


def test_grid_of_two_algos_and_two_seeds_completes(tmp_path: Path) -> None:
    specs = [RunSpec(algo, "MultiGoalPoint-v0", seed, 640, (EVAL,)) for seed in (0, 1) for algo in ("qmp", "separated")]
    finished: list[str] = []
    results = run_grid(
        specs,
        tmp_path / "logs",
        FAST,
        num_cpus=2,
        poll=0.5,
        live=False,
        on_finished=lambda r: finished.append(r["name"]),
        archive=tmp_path / "archive",
    )
    assert all(r["finished"] for r in results) and sorted(finished) == sorted(s.name for s in specs)
    for spec in specs:
        state = run_state(spec, tmp_path / "logs")
        assert state.state == "finished" and state.record["num_timesteps"] == 640
        assert "sb3_qmp.train" in state.record["command"] and "--resume" in state.record["command"]
        assert (tmp_path / "archive" / spec.algo / spec.env / f"seed_{spec.seed}" / "evaluations_per_task.npz").is_file()
    summary = summarize_grid(specs, tmp_path / "logs")
    own = summary["envs"]["MultiGoalPoint-v0"]["modes"]["own"]
    assert set(own["aggregates"]) == {"qmp", "separated"} and "separated" in own["improvement"]
    assert "4 done" in progress_text(progress_rows(specs, tmp_path / "logs"))
    # Re-running skips every finished run (no Ray needed), and the archive alone also counts as finished.
    again = run_grid(specs, tmp_path / "logs", FAST, live=False)
    assert all(r.get("skipped") for r in again)
    shutil.rmtree(tmp_path / "logs")
    assert all(run_state(s, tmp_path / "logs", archive=tmp_path / "archive").state == "finished" for s in specs)
    # Other settings in the same folder are refused.
    with pytest.raises(ValueError, match="finished with -n 640"):
        run_grid([RunSpec("qmp", "MultiGoalPoint-v0", 0, 960, (EVAL,))], tmp_path / "logs", FAST, archive=tmp_path / "archive")


def test_killed_run_resumes_from_its_checkpoint_exactly(tmp_path: Path) -> None:
    spec = RunSpec("qmp", "MultiGoalPoint-v0", 0, 3200, (EVAL,))
    options = RunOptions(checkpoint_minutes=10.0, checkpoint_steps=640, nice=0, attempts=2)
    reference = execute_run(spec, str(tmp_path / "uninterrupted"), options)
    assert reference["finished"] and reference["attempts"] == 1

    worker, result, run_dir = run_in_background(spec, tmp_path / "killed", options)
    deadline = time.time() + 120
    while True:  # SIGKILL the training process at ~60%, after a checkpoint
        progress = read_progress(run_dir) or {}
        if progress.get("num_timesteps", 0) >= 0.6 * spec.n_timesteps and progress.get("last_checkpoint"):
            break
        assert time.time() < deadline, "the run did not reach 60%"
        time.sleep(0.05)
    os.kill(progress["pid"], signal.SIGKILL)
    killed_rows = dict(np.load(run_dir / "evaluations_per_task.npz"))
    worker.join(timeout=180)

    assert result["finished"] and result["attempts"] == 2
    attempts = json.loads((run_dir / "run_attempts.json").read_text())["attempts"]
    assert attempts[0]["returncode"] == -signal.SIGKILL and attempts[1]["resumed_from"] >= 0.6 * 3200 - 640
    resumed, uninterrupted = (
        model_data(run_dir / "MultiGoalPoint-v0.zip"),
        model_data(tmp_path / "uninterrupted" / "seed_0" / "qmp" / "MultiGoalPoint-v0_1" / "MultiGoalPoint-v0.zip"),
    )
    assert resumed["num_timesteps"] == uninterrupted["num_timesteps"] == 3200
    assert resumed["_n_updates"] == uninterrupted["_n_updates"]
    # The evaluation history continues the killed run's rows (those up to its checkpoint) in the same folder.
    rows = dict(np.load(run_dir / "evaluations_per_task.npz"))
    kept = killed_rows["timesteps"] <= attempts[1]["resumed_from"]
    assert kept.any()
    n = int(kept.sum())
    np.testing.assert_array_equal(rows["timesteps"][:n], killed_rows["timesteps"][:n])
    np.testing.assert_array_equal(rows["successes"][:n], killed_rows["successes"][:n])
    np.testing.assert_array_equal(rows["timesteps"], np.arange(320, 3201, 320))
    record = json.loads((run_dir / "run_finished.json").read_text())
    assert record["attempts"] == 2 and record["wall_time_s"] > 0


def test_a_running_attempt_is_on_record_before_it_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner cut off with its machine never reaches the end of its attempt: the attempt's times must be in
    ``run_attempts.json`` while it runs. CPU time is the process's own (not the time it was stopped)."""
    monkeypatch.setattr(runs, "ATTEMPT_UPDATE_S", 0.2)
    spec = RunSpec("qmp", "MultiGoalPoint-v0", 0, 1280, (EVAL,))
    worker, result, run_dir = run_in_background(spec, tmp_path / "logs", FAST)
    deadline = time.time() + 120
    while (read_progress(run_dir) or {}).get("state") != "running":  # training has started
        assert time.time() < deadline and worker.is_alive(), "the run did not start training"
        time.sleep(0.02)
    pid = read_progress(run_dir)["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:

        def running_attempt() -> dict:
            attempts = json.loads((run_dir / "run_attempts.json").read_text())["attempts"]
            assert len(attempts) == 1 and attempts[0]["returncode"] is None
            return attempts[0]

        time.sleep(0.6)  # three update periods: the record now read was written while the process was stopped
        while not (run_dir / "run_attempts.json").is_file():
            assert time.time() < deadline, "no record of the running attempt"
            time.sleep(0.05)
        first = running_attempt()
        time.sleep(1.0)
        later = running_attempt()
    finally:
        os.kill(pid, signal.SIGCONT)
    worker.join(timeout=180)
    assert later["wall_time_s"] >= first["wall_time_s"] + 0.6  # the wall clock runs on while stopped,
    assert 0 < first["cpu_time_s"] == later["cpu_time_s"]  # the stopped process spends no CPU time
    assert result["finished"] and result["attempts"] == 1
    (attempt,) = json.loads((run_dir / "run_attempts.json").read_text())["attempts"]
    assert attempt["returncode"] == 0 and attempt["wall_time_s"] >= later["wall_time_s"]
    assert attempt["cpu_time_s"] >= later["cpu_time_s"]
    record = json.loads((run_dir / "run_finished.json").read_text())
    assert (record["wall_time_s"], record["cpu_time_s"]) == (attempt["wall_time_s"], attempt["cpu_time_s"])


def test_a_run_finishes_where_children_are_reaped_by_the_system(tmp_path: Path) -> None:
    """With SIGCHLD ignored the kernel reaps the training process itself: the runner must still see it end."""
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        result = execute_run(RunSpec("separated", "MultiGoalPoint-v0", 0, 320), str(tmp_path), FAST)
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert result["finished"] and result["attempts"] == 1


def test_cpu_time_of_a_run_is_unknown_when_an_attempt_did_not_measure_it(tmp_path: Path) -> None:
    """Attempts recorded by versions that did not measure CPU time: the run's wall time still adds up every
    attempt (a cut-off one too), its CPU time is not made up from a part of them."""
    spec = RunSpec("qmp", "MultiGoalPoint-v0", 0, 640)
    run_dir = spec.log_folder(tmp_path) / "qmp" / "MultiGoalPoint-v0_1"
    run_dir.mkdir(parents=True)
    with zipfile.ZipFile(run_dir / "MultiGoalPoint-v0.zip", "w") as archive:
        archive.writestr("data", json.dumps({"num_timesteps": 640}))
    old = {"started_at": "00:00", "wall_time_s": 100.0, "returncode": -9, "resumed_from": None}
    cut_off = {"started_at": "01:00", "wall_time_s": 50.0, "cpu_time_s": 45.0, "returncode": None, "resumed_from": 320}
    last = {"started_at": "02:00", "wall_time_s": 20.0, "cpu_time_s": 19.0, "returncode": 0, "resumed_from": 480}
    (run_dir / "run_attempts.json").write_text(json.dumps({"attempts": [old, cut_off, last]}))
    assert runs.finish(spec, str(tmp_path), FAST, ["cmd"], [last], 0)["finished"]
    record = json.loads((run_dir / "run_finished.json").read_text())
    assert (record["wall_time_s"], record["cpu_time_s"], record["attempts"]) == (170.0, None, 3)
    (run_dir / "run_attempts.json").write_text(json.dumps({"attempts": [cut_off, last]}))
    runs.finish(spec, str(tmp_path), FAST, ["cmd"], [last], 0)
    record = json.loads((run_dir / "run_finished.json").read_text())
    assert (record["wall_time_s"], record["cpu_time_s"], record["attempts"]) == (70.0, 64.0, 2)


def test_a_run_restarted_before_its_first_checkpoint_is_read_from_its_new_folder(tmp_path: Path) -> None:
    """A run stopped before its first checkpoint starts over in ``<env>_2`` (rl-zoo3 numbers a new folder):
    the runner must report, and take results from, that folder, not the abandoned ``<env>_1``."""
    spec = RunSpec("shared", "MetaWorldDoorDrawer-v0", 1, 2000)
    runs = spec.log_folder(tmp_path) / "shared"
    abandoned, restarted = runs / "MetaWorldDoorDrawer-v0_1", runs / "MetaWorldDoorDrawer-v0_2"
    abandoned.mkdir(parents=True)
    (abandoned / "progress.json").write_text(json.dumps({"num_timesteps": 82524}))
    restarted.mkdir()
    (restarted / "progress.json").write_text(json.dumps({"num_timesteps": 396000, "last_checkpoint": 396000}))
    state = run_state(spec, tmp_path)
    assert (state.state, state.path, state.progress["num_timesteps"]) == ("started", restarted, 396000)
    (restarted / "run_finished.json").write_text(json.dumps({"n_timesteps": 2000, "num_timesteps": 2000}))
    state = run_state(spec, tmp_path)
    assert (state.state, state.path, state.record["num_timesteps"]) == ("finished", restarted, 2000)


def test_cli_status_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--algos", "qmp", "--envs", "MultiGoalPoint-v0", "--seeds", "0", "-n", "640", "--logs", str(tmp_path)]
    grid_main([*argv, "--status"])
    assert "1 waiting" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="Unknown algorithms"):
        grid_main([*argv[:1], "sac", *argv[2:]])
    with pytest.raises(ValueError, match="not finished"):
        archive_run(RunSpec("qmp", "MultiGoalPoint-v0", 0, 640), tmp_path, tmp_path / "archive")
