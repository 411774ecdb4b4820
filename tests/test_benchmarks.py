"""Smoke tests of the speed benchmarks in benchmarks/: minuscule budgets, checking the output only.

(The commitment study has its own smoke test; speed itself is measured by running the scripts.)"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
from types import ModuleType

import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str) -> ModuleType:
    if str(BENCHMARKS) not in sys.path:  # the scripts import their shared helpers (benchmarks/report.py)
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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


def _write_run(folder: pathlib.Path, algo: str, seed: int, successes: list[list[float]]) -> None:
    """A fake rl-zoo3 run folder with a PerTaskEvalCallback file: successes (evaluations x tasks), 2 episodes each."""
    run_dir = folder / algo / f"MultiGoalPoint-v0_{seed}"
    run_dir.mkdir(parents=True)
    success = np.repeat(np.array(successes)[:, :, None], 2, axis=2)
    np.savez(
        run_dir / "evaluations_per_task.npz",
        timesteps=np.arange(1, len(successes) + 1) * 1000,
        returns=-10 * (1 - success),
        successes=success,
        lengths=np.full(success.shape, 30),
        task_names=np.array(["a", "b"]),
    )


def test_paper_comparison_summarizes_seeds(tmp_path: pathlib.Path) -> None:
    comparison = load_script("paper_comparison")
    logs = tmp_path / "logs"
    _write_run(logs, "qmp", 1, [[0.0, 0.5], [1.0, 1.0], [1.0, 1.0]])
    _write_run(logs, "qmp", 2, [[0.0, 0.0], [0.5, 1.0], [1.0, 1.0]])
    _write_run(logs, "separated", 1, [[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]])
    argv = ["--env", "MultiGoalPoint-v0", "--algos", "qmp", "separated", "--logs", str(logs), "--summarize-only"]
    result = comparison.main([*argv, "--out", str(tmp_path / "out")])

    qmp, separated = result["summary"]["qmp"], result["summary"]["separated"]
    assert qmp["seeds"] == 2 and qmp["timesteps"] == [1000, 2000, 3000]
    np.testing.assert_allclose(qmp["mean_success"], [0.125, 0.875, 1.0])
    np.testing.assert_allclose(qmp["std_success"], [0.125, 0.125, 0.0])
    assert qmp["steps_to_threshold"] == [2000.0, 3000.0] and separated["steps_to_threshold"] == [None]
    assert qmp["final_per_task"] == [1.0, 1.0] and separated["final_per_task"] == [1.0, 0.0]
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"summary.json", "summary.md", "MultiGoalPoint-v0_success.png"} <= files
    assert "| qmp | 2 | 1.00 ± 0.00 |" in (tmp_path / "out" / "summary.md").read_text()


def test_paper_comparison_reports_an_info_key_of_the_final_models(tmp_path: pathlib.Path) -> None:
    from sb3_qmp import QMP, make_multitask_vec_env

    comparison = load_script("paper_comparison")
    logs = tmp_path / "logs"
    _write_run(logs, "qmp", 1, [[0.0, 0.5], [1.0, 1.0]])
    model = QMP(make_multitask_vec_env("MultiGoalPoint-v0", seed=0), learning_starts=20, batch_size=8, seed=0)
    model.learn(40)
    model.save(logs / "qmp" / "MultiGoalPoint-v0_1" / "MultiGoalPoint-v0.zip")
    argv = ["--env", "MultiGoalPoint-v0", "--algos", "qmp", "--logs", str(logs), "--summarize-only"]
    result = comparison.main([*argv, "--final-info-key", "task_id", "--final-episodes", "2"])
    # Each task's own policy ran in an env of that task: the info key read back is the task index.
    assert result["summary"]["qmp"]["final_info"] == [[0.0, 1.0, 2.0, 3.0]]
    assert result["summary"]["qmp"]["final_info_key"] == "task_id"


def test_paper_comparison_without_runs_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    comparison = load_script("paper_comparison")
    (tmp_path / "logs").mkdir()
    with pytest.raises(SystemExit, match=r"No per-task evaluations of \['qmp'\] on MultiGoalPoint-v0"):
        comparison.main(["--env", "MultiGoalPoint-v0", "--algos", "qmp", "--logs", str(tmp_path / "logs"), "--summarize-only"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        comparison.main(["--env", "MultiGoalPoint-v0", "--logs", str(tmp_path / "nowhere"), "--summarize-only"])
