"""Smoke test of benchmarks/commitment_study.py: a minuscule budget, checking the output structure only."""

from __future__ import annotations

import csv
import json
import pathlib

import pytest
from conftest import load_script


def test_commitment_study_smoke(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = load_script("commitment_study")
    argv = ["--steps", "300", "--seeds", "0", "--configs", "separated,qmp_k10", "--out", str(tmp_path)]
    argv += ["--learning-starts", "100", "--batch-size", "16", "--net-arch", "8", "--eval-episodes", "2"]
    payload = study.main(argv)

    files = {p.name for p in tmp_path.iterdir()}
    assert files == {"commitment_study.json", "commitment_study.csv", "commitment_study.md"}
    saved = json.loads((tmp_path / "commitment_study.json").read_text())
    assert saved["settings"]["steps"] == 300 and saved["settings"]["configs"] == ["separated", "qmp_k10"]
    assert [r["config"] for r in saved["runs"]] == ["separated", "qmp_k10"]
    for run in saved["runs"]:
        assert len(run["eval_success"]) == len(run["train_success"]) == 4
        assert all(0.0 <= s <= 1.0 for s in run["eval_success"])
        assert len(run["selection_matrix"]) == 4 and all(len(row) == 4 for row in run["selection_matrix"])
    separated, qmp = saved["runs"]
    # Separated only ever uses the own policy; QMP has collected with the switch after learning_starts.
    assert all(separated["selection_matrix"][t][t] == 1.0 for t in range(4))
    assert all(abs(sum(row) - 1.0) < 1e-3 for row in qmp["selection_matrix"])
    assert [s["config"] for s in saved["summary"]] == ["separated", "qmp_k10"]
    assert len(saved["summary"][1]["eval_success_mean"]) == 4

    with open(tmp_path / "commitment_study.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and "eval_success_task_3" in rows[0] and "mean_commitment_task_3" in rows[0]

    table = (tmp_path / "commitment_study.md").read_text()
    lines = table.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("| config") and "task 3 (sparse)" in lines[0]
    assert "QMP k=10" in table and "±" in table
    assert payload["table_markdown"] == table
    assert table.strip() in capsys.readouterr().out
