"""The README's main job, ``python -m sb3_qmp.demo``, on a tiny budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from sb3_qmp import QMP
from sb3_qmp.demo import main


def test_demo_trains_reports_every_task_and_saves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "demo.zip"
    result = main(["--steps", "1200", "--output", str(output), "--eval-episodes", "1"])
    printed = capsys.readouterr().out
    assert output.is_file() and 0.0 <= result["mean_success"] <= 1.0 and result["seconds"] > 0
    assert printed.count("[") >= 4, "one row of per-task success and selection frequencies per task"
    assert "mean success" in printed
    model = QMP.load(output)
    assert model.num_tasks == 4 and model.num_timesteps == 1200


def test_demo_rejects_a_non_positive_budget() -> None:
    with pytest.raises(SystemExit):
        main(["--steps", "0"])
