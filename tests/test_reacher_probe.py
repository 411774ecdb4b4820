"""Smoke test of benchmarks/reacher_probe.py: a minuscule budget, a resumed run and the summary files."""

from __future__ import annotations

import json
import pathlib

import pytest
from conftest import load_script

from sb3_qmp.grid.engine import ray_session

pytest.importorskip("mujoco")
pytest.importorskip("dm_control", reason="the Jaco model ships with dm-control")


def test_probe_runs_resumes_and_summarizes(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    probe = load_script("reacher_probe")
    common = ["--versions", "1", "--tasks", "2", "--learning-starts", "40", "--eval-freq", "30", "--eval-episodes", "1"]
    common += ["--jobs", "1", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]
    # One Ray instance for the three grid invocations (each would otherwise start and stop its own).
    with ray_session(num_cpus=1):
        (first,) = probe.main([*common, "--steps", "60"])
        assert [h["env_steps"] for h in first["history"]] == [30, 60]
        # a longer budget continues the same run from its checkpoint (once its result file is gone)
        (tmp_path / "out" / "per_run" / "v1_task2_seed0.json").unlink()
        (resumed,) = probe.main([*common, "--steps", "90"])
        history = resumed["history"]
        assert [h["env_steps"] for h in history] == [30, 60, 90]
        assert history[2]["wall_s"] >= history[1]["wall_s"] > 0  # wall time adds up over sessions
        assert resumed["final"] == {k: history[-1][k] for k in resumed["final"]}
        for key in ("stages_completed", "success_any_step", "is_success"):
            assert resumed["best_during_training"][key] == max(h[key] for h in history)
        # a finished run is read back, not trained again
        assert probe.main([*common, "--steps", "90"])[0] == resumed
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary[0]["env_id"] == "MultistageReacher-v1" and "history" not in summary[0]
        assert "| MultistageReacher-v1 | 2 | 0 | 90 |" in (tmp_path / "out" / "summary.md").read_text()
        assert "MultistageReacher-v1" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        probe.main([*common, "--steps", "50"])  # not a multiple of --eval-freq
