"""Smoke test of benchmarks/sharing_study.py: a minuscule budget, checking outputs, resuming and the summary."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from conftest import load_script

TINY = [
    "--steps-per-task", "40", "--learning-starts-per-task", "10", "--batch-size", "16", "--net-arch", "8",
    "--eval-episodes", "2", "--eval-every", "20", "--solve-episodes", "1", "--nice", "0",
]  # fmt: skip


def test_sharing_study_smoke_resume_and_summary(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = load_script("sharing_study")
    grid = ["--envs", "DetourPoint-v0", "--configs", "separated,qmp_adaptive", "--seeds", "0", "--out", str(tmp_path)]
    payload = study.main([*grid, *TINY])

    cells = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "cells").rglob("*.json"))
    assert cells == ["cells/DetourPoint-v0/qmp_adaptive/seed_0.json", "cells/DetourPoint-v0/separated/seed_0.json"]
    record = json.loads((tmp_path / cells[0]).read_text())
    assert record["settings"]["total_steps"] == 160 and record["sparse_tasks"] == [3]
    for key in ("eval_success", "eval_success_any_step", "train_success", "train_success_any_step", "share_fraction"):
        assert len(record[key]) == 4, key
    assert record["curve_steps"] == [80, 160]  # every 20 env steps per task, 4 tasks
    assert len(record["steps_to_solve"]) == 4 and len(record["mixture_eval_success"]) == 4
    assert record["cpu_seconds"] > 0 and record["cell_seconds"] > 0
    separated = json.loads((tmp_path / cells[1]).read_text())
    assert separated["mixture_eval_success"] is None and separated["share_fraction"] == [0.0] * 4

    saved = json.loads((tmp_path / "sharing_study.json").read_text())
    assert [s["config"] for s in saved["summary"]] == ["separated", "qmp_adaptive"]
    ci = saved["summary"][1]["eval_success"][3]
    assert ci["n"] == 1 and ci["low"] == ci["mean"] == ci["high"]
    table = (tmp_path / "sharing_study.md").read_text()
    assert "## DetourPoint-v0" in table and "own task 3 (sparse)" in table and "adaptive (kappa=1" in table
    assert payload["table_markdown"] == table and table.strip() in capsys.readouterr().out
    focus = saved["summary"][1]["focus_tasks"]["eval_success"]  # DetourPoint's focus: its sparse task 3
    assert focus["mean"] == record["eval_success"][3] and focus["n"] == 1
    figure = tmp_path / "sharing_study.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000

    # Resuming: finished cells are skipped (nothing runs, the files stay as they are) ...
    stamp = (tmp_path / cells[0]).stat().st_mtime_ns
    study.main([*grid, *TINY])
    assert "2 cells; results" in capsys.readouterr().out and (tmp_path / cells[0]).stat().st_mtime_ns == stamp
    # ... the plan counts the cells still to run and times them from the finished ones ...
    assert study.main([*grid, "--seeds", "0", "1", "--plan", *TINY]) == {}
    planned = capsys.readouterr().out
    assert "DetourPoint-v0: 2 cells to run; a finished cell took" in planned and "2 cells to run; estimate" in planned
    # ... and a cell of other settings is refused, not silently mixed in.
    with pytest.raises(ValueError, match=r"other settings.*total_steps"):
        study.main([*grid, *TINY, "--steps-per-task", "DetourPoint-v0=50"])


def test_bootstrap_interval_and_argument_checks() -> None:
    study = load_script("sharing_study")
    stat = study.bootstrap_ci([0.0, 1.0, None, float("nan"), 1.0, 0.0])
    assert stat["n"] == 4 and stat["mean"] == 0.5 and 0.0 <= stat["low"] < 0.5 < stat["high"] <= 1.0
    assert study.bootstrap_ci([None])["mean"] is None
    wide = study.bootstrap_ci(np.random.default_rng(0).uniform(size=3).tolist())
    narrow = study.bootstrap_ci(np.random.default_rng(0).uniform(size=300).tolist())
    assert narrow["high"] - narrow["low"] < wide["high"] - wide["low"]
    args = study.parse_args(["--steps-per-task", "100", "ManyGoalPoint-v0=7"])
    assert args.steps["DetourPoint-v0"] == 100 and args.steps["ManyGoalPoint-v0"] == 7
    assert args.configs == study.DEFAULT_CONFIGS and args.seeds == list(range(10))
    for bad in (["--envs", "Nope-v0"], ["--configs", "qmp_k3"], ["--steps-per-task", "Nope-v0=5"], ["--jobs", "0"]):
        with pytest.raises(SystemExit):
            study.parse_args(bad)


def _cell(env: str, config: str, seed: int, success: list[float], sparse: list[int]) -> dict:
    return {
        "env": env,
        "config": config,
        "seed": seed,
        "eval_success": success,
        "sparse_tasks": sparse,
        "settings": {"solve_threshold": 0.8},
    }


def test_decision_rule_admits_only_configs_not_worse_and_picks_the_best_sparse_solver() -> None:
    study = load_script("sharing_study")
    envs = ["MultiGoalPoint-v0", "ConflictPoint-v0"]  # the first has sparse task 1, the second none
    configs = ["separated", "qmp_paper", "qmp_authors", "qmp_k10", "qmp_own0.3"]
    records = []
    for seed in range(6):
        sparse_paper = 1.0 if seed == 0 else 0.5  # solved (>= 0.8) by the paper's switch on 1 seed of 6
        sparse_authors = 1.0 if seed < 3 else 0.0  # 3 of 6
        records += [
            _cell(envs[0], "separated", seed, [1.0, 0.0], [1]),
            _cell(envs[0], "qmp_paper", seed, [1.0, sparse_paper], [1]),
            _cell(envs[0], "qmp_authors", seed, [1.0, sparse_authors], [1]),
            _cell(envs[0], "qmp_k10", seed, [1.0, 1.0], [1]),  # solves every seed ...
            _cell(envs[0], "qmp_own0.3", seed, [1.0, sparse_paper], [1]),
            _cell(envs[1], "separated", seed, [1.0, 1.0], []),
            _cell(envs[1], "qmp_paper", seed, [1.0, 0.9 + 0.1 * (seed % 2)], []),
            _cell(envs[1], "qmp_authors", seed, [1.0, 1.0 - 0.15 * (seed % 2)], []),  # a little worse, within noise
            _cell(envs[1], "qmp_k10", seed, [0.5, 0.5 + 0.01 * seed], []),  # ... but costs the conflict set
            _cell(envs[1], "qmp_own0.3", seed, [1.0, 1.0], []),
        ]
    decision = study.decide(records, envs, configs, seeds=6)
    rows = {row["config"]: row for row in decision["rows"]}
    assert "separated" not in rows  # only the Q-switch configurations compete
    assert rows["qmp_k10"]["worse_on"] == ["ConflictPoint-v0"] and not rows["qmp_k10"]["admissible"]
    assert rows["qmp_authors"]["admissible"] and rows["qmp_paper"]["admissible"]
    assert (rows["qmp_authors"]["sparse_solved"], rows["qmp_authors"]["sparse_attempts"]) == (3, 6)
    assert decision["chosen"] == "qmp_authors" and decision["beats_reference_on_sparse"]
    assert decision["status"] == "final"
    assert study.decide(records, envs, configs, seeds=10)["status"] == "provisional"
    # Ties in sparse solves go to the current default, not to whichever comes first.
    tie = [r for r in records if r["config"] != "qmp_authors"]
    tie += [{**r, "config": "qmp_authors"} for r in records if r["config"] == "qmp_own0.3"]
    assert study.decide(tie, envs, configs, seeds=6)["chosen"] == "qmp_authors"
    # Missing cells on a task set make a configuration inadmissible, never silently admissible.
    partial = [r for r in records if not (r["config"] == "qmp_authors" and r["env"] == envs[1])]
    assert not {row["config"]: row for row in study.decide(partial, envs, configs, 6)["rows"]}["qmp_authors"]["admissible"]
    table = study.decision_markdown(decision)
    assert "| commit_steps=10 |" in table and "chosen: **authors' switch (mean, Q1)**" in table


def test_a_summary_of_few_seeds_is_never_a_final_decision(tmp_path: pathlib.Path) -> None:
    study = load_script("sharing_study")
    grid = ["--envs", "ConflictPoint-v0", "--configs", "qmp_paper,qmp_authors", "--seeds", "0", "--out", str(tmp_path)]
    payload = study.main([*grid, *TINY])
    assert payload["decision"]["status"] == "provisional" and payload["decision"]["seeds_required"] == study.DECISION_SEEDS
    assert "**Provisional** (10 seeds per cell for a final decision)" in payload["table_markdown"]


def test_figure_counts_solves_on_the_focus_tasks() -> None:
    load_script("sharing_study")  # puts benchmarks/ on sys.path
    import sharing_plot

    sparse = {"num_tasks": 3, "sparse_tasks": [2], "eval_success": [0.0, 0.0, 0.8]}
    dense = {"num_tasks": 2, "sparse_tasks": [], "eval_success": [1.0, 0.5]}
    assert sharing_plot.focus_solved([sparse, {**sparse, "eval_success": [1.0, 1.0, 0.75]}], 0.8) == (1, 2)
    assert sharing_plot.focus_solved([dense], 0.8) == (1, 2)  # no sparse task: every task is a focus task
    curve = {**sparse, "curve_steps": [10, 20], "curve_success": [[1.0, 1.0, 0.0], [1.0, 0.0, 0.6]]}
    steps, success = sharing_plot.focus_curve(curve)
    assert steps.tolist() == [10.0, 20.0] and success.tolist() == [0.0, 0.6]
