"""sb3_qmp.plot: curves and heatmaps from real (tiny) runs in the rl-zoo3 log layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sb3_qmp import make_multitask_vec_env
from sb3_qmp.common.callbacks import PerTaskEvalCallback
from sb3_qmp.plot import Run, aggregate, find_runs, load_selection_counts, main, selection_matrix
from sb3_qmp.registry import get_algo

ENV = "MultiGoalPoint-v0"
TINY: dict[str, Any] = dict(
    learning_starts=64, batch_size=16, buffer_size=2_000, train_freq=4, policy_kwargs=dict(net_arch=[16])
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two algorithms x two seeds, saved as rl-zoo3 would: logs/<algo>/<env>_<run>/."""
    root = tmp_path_factory.mktemp("logs")
    for algo in ("qmp", "separated"):
        for seed in (0, 1):
            run_dir = root / algo / f"{ENV}_{seed + 1}"
            model = get_algo(algo)("MlpPolicy", make_multitask_vec_env(ENV, seed=seed), seed=seed, **TINY)
            callback = PerTaskEvalCallback(eval_freq=80, n_eval_episodes=1, log_path=str(run_dir), verbose=0)
            model.learn(160, callback=callback)
            model.save(run_dir / ENV)
    return root


def _assert_png(path: str | Path) -> None:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2_000, f"{path} is not a real PNG"


def test_plot_cli_from_zoo_logs(logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_zip = logs / "qmp" / f"{ENV}_1" / f"{ENV}.zip"
    paths = main([str(logs), "-o", str(tmp_path), "--heatmap", str(model_zip)])
    names = sorted(Path(p).name for p in paths)
    assert names == sorted(
        [
            f"{ENV}_success.png",
            f"{ENV}_per_task_success.png",
            f"{ENV}_qmp_selection.png",
            f"{ENV}_selection.png",  # the --heatmap of the model zip
        ]
    )
    for path in paths:
        _assert_png(path)
    # separated records selections (its collector always picks the own policy): an all-zero map is skipped.
    assert find_runs([str(logs)], algos=["separated"])[0].selection_counts is not None
    assert not (tmp_path / f"{ENV}_separated_selection.png").exists()
    assert f"No selection heatmap for separated on {ENV}" in capsys.readouterr().err
    paths = main([str(logs), "-o", str(tmp_path / "ret"), "--metric", "return", "--no-heatmaps", "--algos", "qmp"])
    assert sorted(Path(p).name for p in paths) == [f"{ENV}_per_task_return.png", f"{ENV}_return.png"]


def test_runs_found_and_selection_counts(logs: Path) -> None:
    runs = find_runs([str(logs)])
    assert sorted((r.algo, r.env) for r in runs) == sorted([("qmp", ENV)] * 2 + [("separated", ENV)] * 2)
    assert all(r.timesteps.tolist() == [80, 160] and r.success.shape == (2, 4) for r in runs)
    run_dir = logs / "qmp" / f"{ENV}_1"
    from_zip = load_selection_counts(str(run_dir / f"{ENV}.zip"))
    from_npz = load_selection_counts(str(run_dir / "evaluations_per_task.npz"))
    assert from_zip.shape == (4, 4) and np.array_equal(from_zip, from_npz)
    assert from_zip.sum() > 0


def test_aggregate_and_matrix_math() -> None:
    steps = np.array([0, 10, 20])
    a = Run("qmp", ENV, "a", steps, success=np.array([[0.0, 0.0], [0.5, 1.0], [1.0, 1.0]]), returns=np.zeros((3, 2)))
    b = Run("qmp", ENV, "b", np.array([0, 20]), success=np.array([[0.0, 0.0], [0.0, 1.0]]), returns=np.zeros((2, 2)))
    grid, mean, std = aggregate([a, b])
    assert grid.tolist() == [0, 10, 20]
    assert np.allclose(mean[1], [0.25, 0.75]) and np.allclose(std[2], [0.5, 0.0])  # b interpolated at step 10
    matrix = selection_matrix(np.array([[2, 2], [0, 0]]))
    assert matrix.tolist() == [[0.0, 0.5], [0.0, 0.0]]  # row-normalised, diagonal zeroed, empty row stays 0


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main([str(tmp_path / "missing")])
    with pytest.raises(FileNotFoundError, match=r"No evaluations_per_task\.npz"):
        main([str(tmp_path)])
    with pytest.raises(SystemExit):
        main([])
