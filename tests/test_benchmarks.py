"""Smoke tests of the speed benchmarks in benchmarks/: minuscule budgets, checking the output only.

(The commitment study has its own smoke test; speed itself is measured by running the scripts.)"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import shutil
import zipfile
from typing import Any

import numpy as np
import pytest
from conftest import load_script


def test_throughput_runs_every_variant_side_by_side(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    throughput = load_script("throughput")
    out = tmp_path / "throughput.json"
    argv = ["--env", "MultiGoalPoint-v0", "--steps-per-task", "40", "--learning-starts", "10", "--batch-size", "8"]
    argv += ["--train-freq", "10", "--gradient-steps", "2", "--net-arch", "8", "--repeats", "2", "--output", str(out)]
    argv += ["--only", "QMP (Q", "own collector", "SB3 SAC (default)"]
    result = throughput.main(argv)

    assert set(result["seconds"]) == {"QMP (Q-switch collector)", "MultiTaskSAC (own collector)", "4 x SB3 SAC (default)"}
    for name, rounds in result["rounds"].items():
        assert len(rounds) == 2 and result["seconds"][name] == min(rounds) > 0
    assert json.loads(out.read_text())["settings"]["num_tasks"] == 4
    table = capsys.readouterr().out
    assert "| MultiTaskSAC (own collector) |" in table and "1.00x" in table


def test_switch_cost_reports_selection_and_network_passes(tmp_path: pathlib.Path) -> None:
    switch_cost = load_script("switch_cost")
    out = tmp_path / "switch.json"
    result = switch_cost.main(["--env", "MultiGoalPoint-v0", "--net-arch", "8", "--repeats", "3", "--output", str(out)])

    assert set(result["per_step_us"]) == {"own collector", "Q-switch (k=1)", "Q-switch, commit_steps=5"}
    assert len(result["network_passes_us"]) == 3
    assert all(us > 0 for us in [*result["per_step_us"].values(), *result["network_passes_us"].values()])
    assert json.loads(out.read_text())["settings"]["n_envs"] == 4


def test_env_speed_measures_each_env() -> None:
    env_speed = load_script("env_speed")
    result = env_speed.main(["--steps", "50", "--envs", "MultiGoalPoint-v0", "MazeNavigation-v0"])
    assert set(result) == {"MultiGoalPoint-v0", "MazeNavigation-v0"}
    assert all(rate > 0 for rate in result.values())


ENV = "MultiGoalPoint-v0"
STEPS = [1000, 2000, 3000]


def _episodes(values: list[list[float]]) -> np.ndarray:
    """Per-task rates (evaluations x tasks) as PerTaskEvalCallback arrays (evaluations x tasks x 2 episodes)."""
    return np.repeat(np.array(values, dtype=float)[:, :, None], 2, axis=2)


def _write_run(
    run_dir: pathlib.Path, own: dict[str, list[list[float]]], mixture: dict[str, list[list[float]]] | None = None
) -> None:
    """A fake PerTaskEvalCallback file. ``own``/``mixture``: npz key (without ``mixture_``) -> per-task rates.

    Only ``successes`` in ``own``: the old schema; anything more: the new one (with ``eval_modes``).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {key: _episodes(v) for key, v in own.items()}
    steps = STEPS[: len(own["successes"])]
    arrays.update(timesteps=np.array(steps), task_names=np.array(["a", "b"]))
    arrays.update(returns=-10 * (1 - arrays["successes"]), lengths=np.full(arrays["successes"].shape, 30))
    if len(own) > 1 or mixture:
        arrays["eval_modes"] = np.array(["own", "mixture"] if mixture else ["own"])
    for key, v in (mixture or {}).items():
        arrays[f"mixture_{key}"] = _episodes(v)
    if mixture:
        arrays.update(mixture_returns=arrays["returns"], mixture_lengths=arrays["lengths"])
    np.savez(run_dir / "evaluations_per_task.npz", **arrays)


def _write_grid_run(logs: pathlib.Path, algo: str, seed: int, n: int = 3000, **series: Any) -> pathlib.Path:
    """A finished run of paper_comparison's grid: LOGS/seed_<s>/<algo>/<env>_1/ with its run_finished.json."""
    run_dir = logs / f"seed_{seed}" / algo / f"{ENV}_1"
    _write_run(run_dir, **series)
    record = {
        "algo": algo,
        "seed": seed,
        "n_timesteps": n,
        "params": None,
        "command": f"train {algo} {seed}",
        "wall_time_s": 60.0 + seed,
    }
    (run_dir / "run_finished.json").write_text(json.dumps(record))
    return run_dir


QMP_SEEDS = [
    dict(
        own=dict(
            successes=[[0, 0], [0.5, 0.5], [1, 1]],
            successes_any_step=[[0.5, 1], [1, 1], [1, 1]],
            stages_completed=[[0, 1], [1, 2], [3, 3]],
        ),
        mixture=dict(successes=[[0, 0], [1, 1], [1, 1]], successes_any_step=[[1, 1], [1, 1], [1, 1]]),
    ),
    dict(
        own=dict(
            successes=[[0, 0], [0, 0], [0.5, 0]],
            successes_any_step=[[0, 0], [0.5, 1], [1, 1]],
            stages_completed=[[0, 0], [1, 1], [2, 3]],
        ),
        mixture=dict(successes=[[0, 0], [0, 0], [1, 1]], successes_any_step=[[0, 0], [1, 1], [1, 1]]),
    ),
]
SEPARATED_ANY_STEP = [[[0, 0], [0, 1], [0, 1]], [[0, 0], [0, 0], [1, 0]]]


def test_paper_comparison_tables_both_metrics_and_modes(tmp_path: pathlib.Path) -> None:
    comparison = load_script("paper_comparison")
    logs, out = tmp_path / "logs", tmp_path / "out"
    for seed in (0, 1):
        _write_grid_run(logs, "qmp", seed, **QMP_SEEDS[seed])
        zeros = [[0.0, 0.0]] * 3
        _write_grid_run(logs, "separated", seed, own=dict(successes=zeros, successes_any_step=SEPARATED_ANY_STEP[seed]))
    _write_grid_run(logs, "dnc", 0, own=dict(successes=[[0, 0], [1, 0], [1, 1]]))  # old schema: strict own only
    _write_grid_run(logs, "dnc", 1, own=dict(successes=[[0, 0], [0, 0], [1, 1]], successes_any_step=[[0, 0], [1, 1], [1, 1]]))
    (logs / "seed_0" / "shared" / f"{ENV}_1").mkdir(parents=True)  # started, never finished; seed 1 never started
    argv = ["--env", ENV, "--algos", "qmp", "separated", "dnc", "shared", "--seeds", "0", "1"]
    result = comparison.main([*argv, "--logs", str(logs), "--out", str(out), "--summarize-only", "--no-plots"])

    assert result["missing"] == ["shared seed 0 (unfinished)", "shared seed 1 (missing)"]
    assert result["finished"] == [
        "qmp seed 0",
        "separated seed 0",
        "dnc seed 0",
        "qmp seed 1",
        "separated seed 1",
        "dnc seed 1",
    ]
    qmp = result["summary"]["qmp"]["metrics"]
    any_step, strict = qmp["own"]["success_any_step"], qmp["own"]["success"]
    np.testing.assert_allclose(any_step["mean"], [0.375, 0.875, 1.0])
    np.testing.assert_allclose(any_step["std"], [0.375, 0.125, 0.0])
    assert any_step["steps_to_threshold"] == [2000.0, 3000.0] and any_step["steps_to_threshold_of_mean"] == 3000.0
    assert (strict["final_mean"], strict["final_std"]) == (0.625, 0.375)
    assert strict["steps_to_threshold"] == [3000.0, None] and strict["steps_to_threshold_of_mean"] is None
    assert strict["final_per_task"] == [0.75, 0.5]
    assert qmp["mixture"]["success_any_step"]["steps_to_threshold"] == [1000.0, 2000.0]
    assert qmp["mixture"]["success"]["steps_to_threshold"] == [2000.0, 3000.0]
    assert qmp["own"]["stages"]["final_per_task"] == [2.5, 3.0] and qmp["own"]["stages"]["final_per_task_std"] == [0.5, 0.0]
    # Area under the curve: per seed the mean over evaluations of the mean over tasks.
    np.testing.assert_allclose(any_step["auc_per_seed"], [(0.75 + 1 + 1) / 3, (0 + 0.75 + 1) / 3])
    np.testing.assert_allclose([any_step["auc_mean"], any_step["auc_std"]], [(2.75 + 1.75) / 6, (2.75 - 1.75) / 6])
    separated = result["summary"]["separated"]["metrics"]
    assert "mixture" not in separated and separated["own"]["success_any_step"]["final_per_task"] == [0.5, 0.5]
    # dnc: one old file (strict only) and one new: the any-step series is left out, and said so.
    assert set(result["summary"]["dnc"]["metrics"]["own"]) == {"success", "return", "length"}
    assert result["summary"]["dnc"]["incomplete"] == ["own success_any_step: 1 of 2 seeds"]
    # Orderings: by final success; the mixture ordering uses the own policy of methods without a mixture.
    order = {
        (m, mode): [(r["algo"], r["mode"]) for r in rows] for m, by in result["orderings"].items() for mode, rows in by.items()
    }
    assert order[("success_any_step", "own")] == [("qmp", "own"), ("separated", "own")]
    assert order[("success_any_step", "mixture")] == [("qmp", "mixture"), ("separated", "own")]
    assert order[("success", "own")] == [("dnc", "own"), ("qmp", "own"), ("separated", "own")]

    md = (out / "summary.md").read_text()
    assert "| QMP | own | 2 | 1.00 ± 0.00 | 2k, 3k (mean curve: 3k) | 0.62 ± 0.38 | 3k, never (mean curve: never) |" in md
    assert "| QMP | mixture | 2 | 1.00 ± 0.00 | 1k, 2k (mean curve: 2k) | 1.00 ± 0.00 | 2k, 3k (mean curve: 3k) |" in md
    assert "| DnC | own | 2 | n/a | n/a | 1.00 ± 0.00 | 3k, 3k (mean curve: 3k) |" in md
    assert "some seeds lack them (older files): DnC: own success_any_step: 1 of 2 seeds." in md
    assert "- any-step success (paper), mixture: QMP 1.00 > Separated (own) 0.50" in md
    assert "- strict success, own: DnC 1.00 > QMP 0.62 > Separated 0.00" in md
    assert "| QMP | own | 1.00 / 0.75 | 1.00 / 0.50 |" in md  # per task: any-step / strict
    assert "| QMP | own | 2.50 ± 0.50 | 3.00 ± 0.00 |" in md  # stages
    assert "| QMP | own | 0.75 ± 0.17 | 0.29 ± 0.21 | 1.42 ± 0.25 |" in md  # areas under the curves
    assert "| Separated | 1 | 3000 | 61 s | `train separated 1` |" in md
    assert "**Not finished yet (2):** shared seed 0 (unfinished), shared seed 1 (missing)" in md

    saved = json.loads((out / "summary.json").read_text())
    qmp0 = next(r for r in saved["runs"] if r["algo"] == "qmp" and r["seed"] == 0)
    assert qmp0["curves"]["mixture"]["success_any_step"] == [[1, 1], [1, 1], [1, 1]] and qmp0["wall_time_s"] == 60.0
    assert not list(out.glob("*.png"))  # --no-plots


def test_paper_comparison_figures_redrawn_from_the_summary(tmp_path: pathlib.Path) -> None:
    from sb3_qmp.plot import main as plot_main

    comparison = load_script("paper_comparison")
    logs, out = tmp_path / "logs", tmp_path / "out"
    qmp = {key: {k: v for k, v in value.items() if k != "stages_completed"} for key, value in QMP_SEEDS[0].items()}
    _write_grid_run(logs, "qmp", 0, **qmp)
    _write_grid_run(logs, "dnc", 0, own=dict(successes=[[0, 0], [1, 0], [1, 1]]))
    argv = ["--env", ENV, "--algos", "qmp", "dnc", "--seeds", "0", "--logs", str(logs), "--out", str(out)]
    comparison.main([*argv, "--summarize-only"])
    drawn = sorted(p.name for p in out.glob("*.png"))
    # Both success metrics, own alone and own + mixture overlaid.
    kinds, metrics, views = ("", "per_task_"), ("success", "success_any_step"), ("", "_both")
    assert drawn == sorted(f"{ENV}_{kind}{m}{sfx}.png" for kind in kinds for m in metrics for sfx in views)
    # The JSON keeps every run's curves: the plot CLI redraws the same figures from it alone.
    redraw = shlex.split(json.loads((out / "summary.json").read_text())["plot_command"])
    assert redraw[:5] == ["python", "-m", "sb3_qmp.plot", "--from-summary", str(out / "summary.json")]
    for png in out.glob("*.png"):
        png.unlink()
    assert sorted(pathlib.Path(p).name for p in plot_main(redraw[3:])) == drawn


def test_paper_comparison_rebuilds_a_summary_from_its_stored_runs(tmp_path: pathlib.Path) -> None:
    """A committed summary.json is enough to write the summary again (the logs are gone), with its own settings."""
    comparison = load_script("paper_comparison")
    logs, out, again = tmp_path / "logs", tmp_path / "out", tmp_path / "again"
    for seed in (0, 1):
        _write_grid_run(logs, "qmp", seed, **QMP_SEEDS[seed])
    (logs / "seed_0" / "separated" / f"{ENV}_1").mkdir(parents=True)  # started, never finished
    argv = ["--env", ENV, "--algos", "qmp", "separated", "--seeds", "0", "1", "--threshold", "0.5", "--reference", "separated"]
    first = comparison.main([*argv, "--logs", str(logs), "--out", str(out), "--summarize-only", "--no-plots"])
    shutil.rmtree(logs)

    rebuilt = comparison.main(["--rebuild-from", str(out / "summary.json"), "--out", str(again), "--no-plots"])
    for key in ("finished", "missing", "seconds", "runs", "summary", "orderings", "aggregates"):
        assert rebuilt[key] == first[key], key
    text = (again / "summary.md").read_text()
    assert text.startswith(f"# {ENV}: qmp, separated x seeds 0 1, 3000 env steps per run")  # the stored settings
    assert "separated seed 0 (unfinished)" in text and "to 50% any-step" in text
    assert {k: rebuilt["settings"][k] for k in ("threshold", "reference")} == {"threshold": 0.5, "reference": "separated"}
    assert text.replace(str(again), str(out)) == (out / "summary.md").read_text()
    # A final-model statistic is kept as measured (the models are not needed, nor measured again).
    stored = json.loads((out / "summary.json").read_text())
    stored["final_info"] = {"key": "stages_completed", "values": {"qmp": [[1.0, 2.0], [3.0, 3.0]]}}
    (out / "summary.json").write_text(json.dumps(stored))
    rebuilt = comparison.main(["--rebuild-from", str(out / "summary.json"), "--no-plots"])  # into its own folder
    assert rebuilt["final_info"] == stored["final_info"]
    assert "stages_completed" in (out / "summary.md").read_text()
    with pytest.raises(SystemExit, match="No summary at"):
        comparison.main(["--rebuild-from", str(tmp_path / "none.json")])
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"not a summary\.json of this script"):
        comparison.main(["--rebuild-from", str(tmp_path / "other.json")])


def test_ordering_says_when_nothing_separates_two_methods() -> None:
    summary = load_script("comparison_summary")

    def row(algo: str, final: float, reach: float | None, mode: str = "own") -> dict[str, Any]:
        return {"algo": algo, "mode": mode, "final_mean": final, "reach": reach}

    rows = [row("qmp", 0.75, None), row("shared", 0.75, None), row("separated", 0.3, None)]
    assert summary.ordering_text(rows, "own") == "QMP 0.75 = Shared 0.75 > Separated 0.30"
    rows = [row("qmp", 1.0, 1000.0, "mixture"), row("separated", 1.0, 2000.0)]  # the earlier one leads
    assert summary.ordering_text(rows, "mixture") == "QMP 1.00 > Separated (own) 1.00"
    # Means equal up to float noise on either side of a rounding boundary print the same.
    rows = [row("qmp", 0.425 - 1e-12, None, "mixture"), row("separated", 0.425 + 1e-12, None)]
    assert summary.ordering_text(rows, "mixture") == "QMP 0.42 = Separated (own) 0.42"
    assert summary._mean_std({"final_mean": 0.425 + 1e-12, "final_std": 0.0}) == "0.42 ± 0.00"  # as the ordering


def test_late_success_averages_the_last_tenth_of_the_run() -> None:
    """The late value is the mean over the evaluations at or after 90% of the final env step (here 950k, 1M
    and a last one 2k steps later; 900k is below 90% of 1.002M), per seed, then mean and std over seeds."""
    from sb3_qmp.common.results import Run

    summary = load_script("comparison_summary")
    steps = [500_000, 850_000, 900_000, 950_000, 1_000_000, 1_002_000]
    per_seed = [[0.0, 1.0, 0.5, 0.5, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]]  # the mean over two tasks
    runs = [
        Run("qmp", ENV, f"run{seed}", steps, {"own": {"success_any_step": np.array([curve, curve]).T}}, seed=seed)
        for seed, curve in enumerate(per_seed)
    ]
    entry = summary.summarize_method(runs, threshold=1.0)["metrics"]["own"]["success_any_step"]
    assert entry["late_from_step"] == 950_000
    np.testing.assert_allclose(entry["late_per_seed"], [0.5, 1.0])  # seed 0: (0.5 + 1 + 0) / 3
    np.testing.assert_allclose([entry["late_mean"], entry["late_std"]], [0.75, 0.25])
    assert entry["final_mean"] == 0.5  # what one evaluation says: seed 0 lost its tasks at the last one
    table = summary.to_markdown({"qmp": summary.summarize_method(runs, threshold=1.0)}, threshold=1.0)
    assert "| QMP | own | 950k | 0.75 ± 0.25 | n/a |" in table


def test_paper_comparison_redraw_command_is_portable(tmp_path: pathlib.Path) -> None:
    """A summary committed inside the repository names itself relative to the root (the command works on
    any checkout); one outside keeps its path."""
    comparison = load_script("paper_comparison")
    args = argparse.Namespace(highlight_task=None, selection_windows=None, title_note=None)
    inside = comparison.REPOSITORY / "benchmarks" / "results" / "paper_maze" / "summary.json"
    outside = tmp_path / "summary.json"
    for summary, shown in ((inside, "benchmarks/results/paper_maze/summary.json"), (outside, str(outside))):
        assert shlex.split(comparison.plot_command(summary, ["success"], ["own"], args))[4] == shown


def test_paper_comparison_runs_its_grid_on_ray(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The preset runs the package's zoo command through the Ray grid runner, archives every finished run,
    summarises with rliable's estimators, and rebuilds the summary from the archive alone."""
    pytest.importorskip("ray")
    comparison = load_script("paper_comparison")
    logs, out = tmp_path / "logs", tmp_path / "out"
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # the runs must get one thread whatever the caller has
    argv = ["--env", ENV, "--algos", "qmp", "separated", "--seeds", "0", "-n", "640", "--jobs", "2", "--nice", "0"]
    argv += ["--logs", str(logs), "--out", str(out), "--no-plots", "--poll", "0.2"]
    result = comparison.main(argv)

    assert result["missing"] == [] and sorted(result["finished"]) == ["qmp seed 0", "separated seed 0"]
    for run in result["runs"]:
        assert run["command"].startswith("OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ")
        assert " -m sb3_qmp.train --algo " in run["command"] and " --resume " in run["command"]
        assert run["num_timesteps"] == 640 and run["wall_time_s"] > 0
        assert (out / "runs" / run["algo"] / ENV / "seed_0" / "run_finished.json").is_file()
    own = result["aggregates"]["own"]
    assert set(own["aggregates"]) == {"qmp", "separated"} and set(own["improvement"]) == {"separated"}
    assert set(result["aggregates"]["mixture"]["aggregates"]) == {"qmp"}
    assert "P(qmp > method)" in (out / "summary.md").read_text()

    # A fresh machine (no logs): the same command rebuilds the summary from the archive, training nothing.
    shutil.rmtree(logs)
    again = comparison.main(argv)
    assert again["finished"] == result["finished"] and again["summary"] == result["summary"]
    # Finished runs of other settings are never mixed in.
    with pytest.raises(SystemExit, match=r"finished with -n 640 .*not -n 960"):
        comparison.main([*argv, "-n", "960"])


def test_paper_comparison_summarizes_plain_zoo_layout(tmp_path: pathlib.Path) -> None:
    comparison = load_script("paper_comparison")
    logs = tmp_path / "logs"
    _write_run(logs / "qmp" / f"{ENV}_1", own=dict(successes=[[0.0, 0.5], [1.0, 1.0], [1.0, 1.0]]))
    _write_run(logs / "qmp" / f"{ENV}_2", own=dict(successes=[[0.0, 0.0], [0.5, 1.0], [1.0, 1.0]]))
    _write_run(logs / "separated" / f"{ENV}_1", own=dict(successes=[[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]]))
    argv = ["--env", ENV, "--algos", "qmp", "separated", "--logs", str(logs), "--summarize-only"]
    result = comparison.main([*argv, "--out", str(tmp_path / "out")])

    qmp, separated = result["summary"]["qmp"], result["summary"]["separated"]
    strict = qmp["metrics"]["own"]["success"]
    assert qmp["seeds"] == 2 and strict["timesteps"] == [1000, 2000, 3000] and qmp["seed_ids"] == [None, None]
    np.testing.assert_allclose(strict["mean"], [0.125, 0.875, 1.0])
    np.testing.assert_allclose(strict["std"], [0.125, 0.125, 0.0])
    assert strict["steps_to_threshold"] == [2000.0, 3000.0]
    assert separated["metrics"]["own"]["success"]["steps_to_threshold"] == [None]
    assert strict["final_per_task"] == [1.0, 1.0] and separated["metrics"]["own"]["success"]["final_per_task"] == [1.0, 0.0]
    assert result["missing"] == []  # the earlier layout does not record seeds: nothing is called missing
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"summary.json", "summary.md", f"{ENV}_success.png"} <= files
    assert (
        "| QMP | own | 2 | n/a | n/a | 1.00 ± 0.00 | 2k, 3k (mean curve: 3k) |"
        in (tmp_path / "out" / "summary.md").read_text()
    )


def test_paper_comparison_reports_an_info_key_of_the_final_models(tmp_path: pathlib.Path) -> None:
    from sb3_qmp import QMP, make_multitask_vec_env

    comparison = load_script("paper_comparison")
    logs = tmp_path / "logs"
    _write_run(logs / "qmp" / f"{ENV}_1", own=dict(successes=[[0.0, 0.5], [1.0, 1.0]]))
    model = QMP(make_multitask_vec_env(ENV, seed=0), learning_starts=20, batch_size=8, seed=0)
    model.learn(40)
    model.save(logs / "qmp" / f"{ENV}_1" / f"{ENV}.zip")
    argv = ["--env", ENV, "--algos", "qmp", "--logs", str(logs), "--summarize-only"]
    result = comparison.main([*argv, "--final-info-key", "task_id", "--final-episodes", "2"])
    # Each task's own policy ran in an env of that task: the info key read back is the task index.
    assert result["final_info"] == {"key": "task_id", "values": {"qmp": [[0.0, 1.0, 2.0, 3.0]]}}
    # What the grid reads to tell a finished run from one interrupted (and saved) early:
    from sb3_qmp.zoo.resume import saved_num_timesteps

    assert saved_num_timesteps(logs / "qmp" / f"{ENV}_1" / f"{ENV}.zip") == model.num_timesteps >= 40
    assert saved_num_timesteps(tmp_path / "missing.zip") is None
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as archive:
        archive.writestr("data", "{}")
    assert saved_num_timesteps(tmp_path / "bad.zip") is None


def test_paper_comparison_errors(tmp_path: pathlib.Path) -> None:
    comparison = load_script("paper_comparison")
    (tmp_path / "logs").mkdir()
    argv = ["--env", ENV, "--algos", "qmp", "--logs", str(tmp_path / "logs"), "--summarize-only"]
    with pytest.raises(SystemExit, match=r"No finished per-task evaluations of \['qmp'\] on MultiGoalPoint-v0"):
        comparison.main(argv)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        comparison.main(["--env", ENV, "--logs", str(tmp_path / "nowhere"), "--summarize-only"])
    with pytest.raises(SystemExit, match="START:END"):
        comparison.main([*argv, "--selection-windows", "0:1k", "oops"])


def test_meta_world_runs_draw_their_variations_from_the_run_seed() -> None:
    """Meta-World runs pass their seed to the env's variation draw; Reacher runs get no env kwargs."""
    from sb3_qmp.grid import RunOptions, RunSpec

    options = RunOptions()
    command = RunSpec("qmp", "MetaWorldDoorDrawer-v0", 3, 1000).command("logs", options)
    assert command[command.index("--env-kwargs") + 1] == "variation_seed:3"
    command = RunSpec("qmp", "MetaWorldMT10-v0", 4, 1000).command("logs", options)
    assert command[command.index("--env-kwargs") + 1] == "benchmark_seed:4"
    assert "--env-kwargs" not in RunSpec("qmp", "MultistageReacher-v1", 0, 1000).command("logs", options)


def test_denormals_compares_kept_and_flushed_on_a_saved_model(tmp_path: pathlib.Path) -> None:
    import torch as th

    from sb3_qmp import QMP, make_multitask_vec_env

    denormals = load_script("denormals")
    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    model = QMP(env, learning_starts=40, batch_size=8, policy_kwargs=dict(net_arch=[8]), seed=0)
    model.learn(60)
    # What a long run leaves behind: part of the critic's Adam moments denormal.
    for state in model.critic.optimizer.state.values():
        state["exp_avg_sq"].view(-1)[::2] = 1e-40
    model.save(tmp_path / "model")
    out = tmp_path / "denormals.json"
    argv = ["--algo", "qmp", "--env", "MultiGoalPoint-v0", "--model", str(tmp_path / "model.zip")]
    result = denormals.main([*argv, "--fill-steps", "40", "--gradient-steps", "3", "--repeats", "1", "--output", str(out)])

    assert result["num_timesteps_of_model"] == 60
    assert 0.2 < result["denormal_moments_at_load"]["critic"]["denormal_fraction"] <= 0.5
    assert result["denormal_moments_after"]["flushed"]["critic"]["denormal_fraction"] == 0.0
    assert result["weights_bit_identical"] is True
    assert json.loads(out.read_text())["ms_per_gradient_step"]["flushed"] > 0
    assert th.tensor([1e-39]).mul(1.0).item() != 0.0  # the benchmark left the thread unflushed
    with pytest.raises(SystemExit):
        denormals.main(["--algo", "qmp", "--env", "MultiGoalPoint-v0", "--model", str(tmp_path / "missing.zip")])


def test_paper_campaign_runs_seed_zero_of_every_method_first() -> None:
    campaign = load_script("paper_campaign")
    specs = campaign.campaign_specs([0, 1], with_dnc=True, full_budget=False)
    names = [(s.env.split("-")[0], s.algo, s.seed, s.n_timesteps) for s in specs]
    assert names[:5] == [
        ("MazeNavigation", "qmp", 0, 4_000_000),
        ("MazeNavigation", "separated", 0, 4_000_000),
        ("MetaWorldDoorDrawer", "qmp", 0, 2_000_000),
        ("MetaWorldDoorDrawer", "separated", 0, 2_000_000),
        ("MetaWorldDoorDrawer", "shared", 0, 2_000_000),
    ]
    assert [n[1] for n in names[10:]] == ["dnc_reg"] * 4 and len(names) == 14
    full = campaign.campaign_specs([0], with_dnc=False, full_budget=True)
    assert {s.env: s.n_timesteps for s in full} == {"MazeNavigation-v0": 12_000_000, "MetaWorldDoorDrawer-v0": 10_000_000}
    # Another order of the task sets changes which runs start first within a seed, and nothing else.
    meta_first = campaign.campaign_specs([0, 1], with_dnc=True, full_budget=False, task_sets=list(campaign.CAMPAIGN)[::-1])
    assert [(s.env.split("-")[0], s.algo, s.seed) for s in meta_first[:4]] == [
        ("MetaWorldDoorDrawer", "qmp", 0),
        ("MetaWorldDoorDrawer", "separated", 0),
        ("MetaWorldDoorDrawer", "shared", 0),
        ("MazeNavigation", "qmp", 0),
    ]
    assert sorted(s.name for s in meta_first) == sorted(s.name for s in specs)
    only = campaign.campaign_specs([0], with_dnc=False, full_budget=False, task_sets=["MetaWorldDoorDrawer-v0"])
    assert [s.algo for s in only] == ["qmp", "separated", "shared"]
    for bad in (["MazeNavigation-v0", "MazeNavigation-v0"], ["Maze"], []):
        with pytest.raises(ValueError, match="task_sets must be distinct names"):
            campaign.campaign_specs([0], with_dnc=False, full_budget=False, task_sets=bad)
    with pytest.raises(SystemExit):
        campaign.main(["--logs", "x", "--task-sets", "MazeNavigation-v0", "MazeNavigation-v0", "--summarize-only"])


def test_summary_rows_follow_env_steps_not_positions() -> None:
    """Methods evaluated at different steps: each row is one env step (a final evaluation 2k steps after a round
    step gets its own label), and a method not evaluated there has a blank cell."""
    from sb3_qmp.common.results import Run

    summary_module = load_script("comparison_summary")
    curve = {"own": {"success_any_step": np.array([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]])}}
    runs = [
        Run("qmp", "Env-v0", "a", np.array([0, 1_000_000, 1_002_000]), curve),
        Run("separated", "Env-v0", "b", np.array([0, 500_000, 1_000_000]), curve),
    ]
    lines = summary_module.to_markdown(summary_module.summarize(runs, 1.0), 1.0).splitlines()
    assert "| 500k |  | 0.50 ± 0.00 |" in lines  # QMP has no evaluation at 500k
    assert "| 1.00M | 0.50 ± 0.00 | 1.00 ± 0.00 |" in lines
    assert "| 1.002M | 1.00 ± 0.00 |  |" in lines


def test_runs_table_shows_cpu_time_once_a_run_has_it() -> None:
    """Runs with a recorded CPU time get a CPU-time column ("?" for runs recorded before the grid runner measured
    it); summaries of older runs keep the table they had."""
    from sb3_qmp.common.results import Run

    summary_module = load_script("comparison_summary")
    curve = {"own": {"success_any_step": np.array([[0.0, 1.0]])}}
    summary = summary_module.summarize([Run("qmp", "Env-v0", "a", np.array([100]), curve)], 1.0)
    old = {"algo": "qmp", "seed": 0, "n_timesteps": 100, "command": "train 0", "wall_time_s": 70.4}
    new = {"algo": "qmp", "seed": 1, "n_timesteps": 100, "command": "train 1", "wall_time_s": 80.0, "cpu_time_s": 61.6}
    lines = summary_module.to_markdown(summary, 1.0, [old, new]).splitlines()
    assert "| method | seed | env steps | wall time | CPU time | command |" in lines
    assert "| QMP | 0 | 100 | 70 s | ? | `train 0` |" in lines
    assert "| QMP | 1 | 100 | 80 s | 62 s | `train 1` |" in lines
    lines = summary_module.to_markdown(summary, 1.0, [old]).splitlines()
    assert "| method | seed | env steps | wall time | command |" in lines and "| QMP | 0 | 100 | 70 s | `train 0` |" in lines


def test_maze_routes_agree_where_goals_share_a_corridor() -> None:
    sharing = load_script("maze_sharing")
    agreement, conflict = sharing.route_matrices()
    assert [len(sharing.route_cells(t)) for t in range(10)] == [9, 9, 9, 9, 11, 11, 11, 12, 24, 15]  # task 8: 2 routes
    np.testing.assert_array_equal(np.diag(agreement), 1.0)
    assert (agreement >= 0).all() and (conflict >= 0).all() and (agreement + conflict <= 1 + 1e-12).all()
    # Task 0's whole route, (1,3) -> (5,8), also heads for task 3's goal (4,10).
    assert agreement[0, 3] == 1.0
    # Task 8's goal (3,10) lies back past task 1's start (1,10): on task 1's route, heading there never agrees,
    # and on 5 of its 9 cells it reverses task 1's move.
    assert agreement[1, 8] == 0.0 and conflict[1, 8] == pytest.approx(5 / 9)


def test_maze_sharing_finds_selection_that_follows_routes_and_none_where_it_does_not(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sharing = load_script("maze_sharing")
    monkeypatch.setattr(sharing, "PERMUTATIONS", 300)
    agreement, _ = sharing.route_matrices()
    rng = np.random.default_rng(0)

    def run(seed: int, first: np.ndarray, then: np.ndarray) -> dict[str, Any]:
        """Selections in the first 1M env steps in proportion to ``first``, in the next 1M to ``then``."""
        early, late = np.round(first * 100_000), np.round(then * 100_000)
        return {"algo": "qmp", "seed": seed, "path": f"r{seed}", "timesteps": [1_000_000, 2_000_000],
                "selection_counts": [early, early + late]}  # fmt: skip

    follows = 0.5 * np.eye(10) + agreement * 0.05 + 1e-3
    random = 0.5 * np.eye(10) + rng.uniform(0, 0.05, size=(10, 10))
    runs = [run(0, follows, follows), run(1, follows, random), {"algo": "separated", "seed": 0, "selection_counts": None}]
    (tmp_path / "summary.json").write_text(json.dumps({"runs": runs}, default=lambda a: a.tolist()))
    result = sharing.main(["--summary", str(tmp_path / "summary.json"), "--out", str(tmp_path), "--last", "1000000"])

    whole, last = (result["windows"][w]["runs"] for w in ("whole run", "last 1M env steps"))
    for follows_routes in (whole["seed 0"], last["seed 0"]):
        assert follows_routes["within_task_correlation_agreement"] == pytest.approx(1.0)
        assert follows_routes["p_value_agreement"] < 0.01 and follows_routes["share_difference_agreeing_minus_other"] > 0
    # Seed 1 switched to shares unrelated to the routes for its last 1M env steps: the window sees only those.
    assert abs(last["seed 1"]["within_task_correlation_agreement"]) < 0.3 and last["seed 1"]["p_value_agreement"] > 0.05
    assert whole["seed 1"]["within_task_correlation_agreement"] > 0.3
    together = result["windows"]["last 1M env steps"]["runs_together"]
    assert together["within_task_correlation_agreement"] == pytest.approx(
        np.mean([last[s]["within_task_correlation_agreement"] for s in ("seed 0", "seed 1")])
    )
    assert together["p_value_agreement"] < 0.01
    assert "| whole run | seed 0 | 1.00 (" in (tmp_path / "maze_sharing.md").read_text()
    assert "| last 1M env steps | runs together (2) | " in (tmp_path / "maze_sharing.md").read_text()
    assert json.loads((tmp_path / "maze_sharing.json").read_text())["algo"] == "qmp"
    with pytest.raises(SystemExit, match="No summary"):
        sharing.main(["--summary", str(tmp_path / "missing.json")])


def test_maze_sharing_runs_together_weigh_every_run() -> None:
    sharing = load_script("maze_sharing")
    agreement, _ = sharing.route_matrices()
    rng = np.random.default_rng(0)
    # Three runs that follow the routes weakly (own policy kept, shares partly in proportion to the agreement).
    runs = [0.5 * np.eye(10) + 0.05 * (0.3 * agreement + rng.uniform(0, 1, (10, 10))) for _ in range(3)]
    correlations = [sharing.within_task_correlation(r, agreement) for r in runs]
    alone = [sharing.permutation_p_value([r], agreement, c, 300) for r, c in zip(runs, correlations)]
    assert alone[0] < 0.05 and min(alone[1:]) > 0.05  # only one of them is clear on its own
    # Together they are: the mean correlation is compared with the mean of three runs' shuffles (narrower
    # than one run's), not with one run's.
    assert sharing.permutation_p_value(runs, agreement, float(np.mean(correlations)), 300) < 0.05


def test_campaign_summaries_add_the_maze_route_analysis(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After each summary of Maze (not of Meta-World, not before a first finished run) the campaign compares
    QMP's selection with the maze's routes, into the same folder."""
    campaign = load_script("paper_campaign")
    calls: list[tuple[str, list[str]]] = []
    finished = {"MazeNavigation-v0": True, "MetaWorldDoorDrawer-v0": True}

    class Script:
        def __init__(self, name: str) -> None:
            self.name = name

        def main(self, argv: list[str]) -> None:
            calls.append((self.name, argv))
            if self.name == "paper_comparison" and not finished[argv[1]]:
                raise SystemExit("no finished run")

    monkeypatch.setattr(campaign, "_script", Script)
    args = argparse.Namespace(seeds=[0], logs=tmp_path / "logs", results=tmp_path)
    specs = campaign.campaign_specs([0], with_dnc=False, full_budget=False)
    for env in campaign.CAMPAIGN:
        campaign.summarize(args, specs, env)
    maze = tmp_path / "paper_maze"
    assert [name for name, _ in calls] == ["paper_comparison", "maze_sharing", "paper_comparison"]
    assert calls[1][1] == ["--summary", str(maze / "summary.json"), "--out", str(maze)]
    calls.clear()
    finished["MazeNavigation-v0"] = False
    campaign.summarize(args, specs, "MazeNavigation-v0")
    assert [name for name, _ in calls] == ["paper_comparison"]
