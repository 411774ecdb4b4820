"""sb3_qmp.plot: curves and selection matrices from real (tiny) runs and from fabricated evaluation files.

Fabricated files follow PerTaskEvalCallback's npz schema: the old one (own ``successes``/``returns``/
``lengths``) and the new one (``successes_any_step``, ``stages_completed``, ``eval_modes`` and the
``mixture_*`` series).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure

from sb3_qmp import make_multitask_vec_env
from sb3_qmp.common.callbacks import PerTaskEvalCallback
from sb3_qmp.common.results import (
    Run,
    counts_at,
    find_runs,
    parse_window,
    run_from_npz,
    selection_matrix,
    stack_seeds,
    window_counts,
)
from sb3_qmp.plot import load_selection_counts, main, mean_selection, runs_from_summary, series
from sb3_qmp.registry import get_algo

ENV = "MultiGoalPoint-v0"
TINY: dict[str, Any] = dict(
    learning_starts=64, batch_size=16, buffer_size=2_000, train_freq=4, policy_kwargs=dict(net_arch=[16])
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STEPS = [1000, 2000, 3000]


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


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, Figure]:
    """Every figure the plot module saves, by file name (to inspect what was drawn)."""
    saved: dict[str, Figure] = {}
    original = Figure.savefig

    def savefig(fig: Figure, fname: Any, *args: Any, **kwargs: Any) -> None:
        saved[Path(fname).name] = fig
        original(fig, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def write_npz(
    run_dir: Path,
    own: dict[str, list[list[float]]],
    mixture: dict[str, list[list[float]]] | None = None,
    counts: np.ndarray | None = None,
    steps: list[int] = STEPS,
) -> None:
    """A fake PerTaskEvalCallback file: per-task values (evaluations x tasks) repeated over 2 episodes.

    ``own``/``mixture`` map npz keys without prefix (``successes``, ``successes_any_step``, ...) to
    values; with ``mixture`` the file has the new schema's ``eval_modes``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    episodes = {key: np.repeat(np.array(v, dtype=float)[:, :, None], 2, axis=2) for key, v in own.items()}
    num_tasks = next(iter(episodes.values())).shape[1]
    arrays: dict[str, Any] = {"timesteps": np.array(steps), "task_names": np.array([f"t{i}" for i in range(num_tasks)])}
    arrays.update(episodes)
    arrays.setdefault("returns", np.zeros_like(episodes["successes"]))
    arrays.setdefault("lengths", np.full_like(episodes["successes"], 50))
    if mixture is not None or "successes_any_step" in own:
        arrays["eval_modes"] = np.array(["own", "mixture"] if mixture else ["own"])
    for key, v in (mixture or {}).items():
        arrays[f"mixture_{key}"] = np.repeat(np.array(v, dtype=float)[:, :, None], 2, axis=2)
    if mixture:
        arrays.setdefault("mixture_returns", arrays["returns"])
        arrays.setdefault("mixture_lengths", arrays["lengths"])
    if counts is not None:
        arrays["selection_counts"] = counts
    np.savez(run_dir / "evaluations_per_task.npz", **arrays)


# Cumulative selection counts of a 3-task run at the three evaluations (row = task collecting).
COUNTS = np.array(
    [
        [[10, 6, 0], [0, 8, 0], [0, 0, 4]],
        [[20, 8, 2], [4, 16, 0], [0, 2, 8]],
        [[30, 8, 10], [16, 24, 0], [0, 2, 12]],
    ]
)


@pytest.fixture
def fake_logs(tmp_path: Path) -> Path:
    """qmp (new schema, own + mixture, 2 seeds), separated (new schema, own only) and dnc (old schema)."""
    root = tmp_path / "logs"
    write_npz(
        root / "qmp" / f"{ENV}_1",
        own=dict(successes=[[0, 0, 0], [0, 0.5, 0], [1, 1, 0]], successes_any_step=[[0, 0.5, 0], [1, 1, 0], [1, 1, 1]]),
        mixture=dict(successes=[[0, 0, 0], [1, 1, 0], [1, 1, 1]], successes_any_step=[[1, 1, 0], [1, 1, 1], [1, 1, 1]]),
        counts=COUNTS,
    )
    write_npz(
        root / "qmp" / f"{ENV}_2",
        own=dict(successes=[[0, 0, 0], [0, 0, 0], [1, 0, 0]], successes_any_step=[[0, 0, 0], [0.5, 1, 0], [1, 1, 0]]),
        mixture=dict(successes=[[0, 0, 0], [0, 0, 0], [1, 1, 0]], successes_any_step=[[0, 0, 0], [1, 1, 0], [1, 1, 1]]),
        counts=2 * COUNTS,
    )
    write_npz(
        root / "separated" / f"{ENV}_1",
        own=dict(
            successes=[[0, 0, 0]] * 3, successes_any_step=[[0, 0, 0], [0, 1, 0], [0, 1, 0]], stages_completed=[[0, 1, 2]] * 3
        ),
    )
    write_npz(root / "dnc" / f"{ENV}_1", own=dict(successes=[[0, 0, 0], [0, 1, 0], [1, 1, 0]]))  # old schema
    return root


def _lines(fig: Figure, ax: int = 0) -> dict[str, tuple[np.ndarray, str]]:
    """label -> (y data, linestyle) of the labelled curves of one axes."""
    return {
        line.get_label(): (np.asarray(line.get_ydata()), line.get_linestyle())
        for line in fig.axes[ax].get_lines()
        if not line.get_label().startswith("_")
    }


def test_plot_cli_from_zoo_logs(logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_zip = logs / "qmp" / f"{ENV}_1" / f"{ENV}.zip"
    paths = main([str(logs), "-o", str(tmp_path), "--heatmap", str(model_zip)])
    names = sorted(Path(p).name for p in paths)
    assert names == sorted(
        [
            f"{ENV}_success.png",
            f"{ENV}_per_task_success.png",
            f"{ENV}_qmp_selection.png",
            f"{ENV}_qmp_selection_early_late.png",
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
    assert all(r.timesteps.tolist() == [80, 160] and r.values("success").shape == (2, 4) for r in runs)
    run_dir = logs / "qmp" / f"{ENV}_1"
    from_zip = load_selection_counts(str(run_dir / f"{ENV}.zip"))
    from_npz = load_selection_counts(str(run_dir / "evaluations_per_task.npz"))
    assert from_zip.shape == (4, 4) and np.array_equal(from_zip, from_npz)
    assert from_zip.sum() > 0


def test_old_and_new_schema_are_read(fake_logs: Path) -> None:
    runs = {(r.algo, r.path.endswith("_2")): r for r in find_runs([str(fake_logs)])}
    qmp, old = runs[("qmp", False)], runs[("dnc", False)]
    assert qmp.modes == ["own", "mixture"] and old.modes == ["own"]
    assert sorted(qmp.curves["mixture"]) == ["length", "return", "success", "success_any_step"]
    np.testing.assert_allclose(qmp.values("success_any_step", "mixture")[0], [1, 1, 0])
    assert runs[("separated", False)].values("stages")[0].tolist() == [0, 1, 2]
    assert sorted(old.curves["own"]) == ["length", "return", "success"]  # old file: own strict only
    with pytest.raises(KeyError, match=r"no own success_any_step .*'successes_any_step'"):
        old.values("success_any_step")
    assert qmp.selection_counts is not None and qmp.selection_counts.shape == (3, 3, 3)


def test_curves_of_both_modes_and_metrics(
    fake_logs: Path, tmp_path: Path, figures: dict[str, Figure], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(fake_logs), "-o", str(tmp_path), "--no-heatmaps", "--metric"]
    paths = main([*argv, "success_any_step", "--mode", "mixture", "both", "--highlight-task", "2"])
    paths += main([*argv, "success", "stages"])
    capsys.readouterr()
    assert main([*argv, "stages", "--mode", "both"]) == []  # no mixture stages: it would repeat the own figure
    assert "No mixture stages recorded on MultiGoalPoint-v0: no both figure" in capsys.readouterr().err
    names = sorted(Path(p).name for p in paths)
    expected = [
        f"{ENV}_{kind}success_any_step{sfx}.png" for kind in ("", "per_task_", "task2_") for sfx in ("_mixture", "_both")
    ]
    assert names == sorted([*expected, *(f"{ENV}_{kind}{m}.png" for kind in ("", "per_task_") for m in ("success", "stages"))])
    for path in paths:
        _assert_png(path)

    both = _lines(figures[f"{ENV}_success_any_step_both.png"])
    # qmp: seed means over tasks [1/6, 2/3, 1] and [0, 1/2, 2/3] -> mean over seeds; mixture dashed, own solid.
    np.testing.assert_allclose(both["QMP (own, 2 seeds)"][0], [1 / 12, 7 / 12, 5 / 6])
    np.testing.assert_allclose(both["QMP (mixture, 2 seeds)"][0], [1 / 3, 5 / 6, 1])
    assert both["QMP (own, 2 seeds)"][1] == "-" and both["QMP (mixture, 2 seeds)"][1] == "--"
    np.testing.assert_allclose(both["Separated (own, 1 seed)"][0], [0, 1 / 3, 1 / 3])
    assert not any(label.startswith("DnC") for label in both)  # its old file has no any-step series
    # The mixture view draws methods without a mixture with their own policy, labelled so.
    assert set(_lines(figures[f"{ENV}_success_any_step_mixture.png"])) == {"QMP (mixture, 2 seeds)", "Separated (own, 1 seed)"}
    strict_own = _lines(figures[f"{ENV}_success.png"])
    assert set(strict_own) == {"QMP (own, 2 seeds)", "Separated (own, 1 seed)", "DnC (own, 1 seed)"}
    np.testing.assert_allclose(strict_own["DnC (own, 1 seed)"][0], [0, 1 / 3, 2 / 3])
    # Per-task figure: task 2's panel is the highlighted one; the single-task figure shows task 2 only.
    per_task = figures[f"{ENV}_per_task_success_any_step_both.png"]
    assert per_task.axes[2].get_title() == "task 2: t2 (highlighted)" and per_task.axes[2].spines["left"].get_linewidth() > 2
    assert per_task.axes[1].spines["left"].get_linewidth() < 2
    task2 = _lines(figures[f"{ENV}_task2_success_any_step_both.png"])
    np.testing.assert_allclose(task2["QMP (mixture, 2 seeds)"][0], [0, 0.5, 1])
    np.testing.assert_allclose(task2["QMP (own, 2 seeds)"][0], [0, 0, 0.5])


def test_std_over_seeds_band(fake_logs: Path, tmp_path: Path, figures: dict[str, Figure]) -> None:
    main([str(fake_logs), "-o", str(tmp_path), "--no-heatmaps", "--metric", "success_any_step", "--algos", "qmp"])
    band = figures[f"{ENV}_success_any_step.png"].axes[0].collections[0].get_paths()[0].vertices
    # Upper edge at the last step: mean 5/6 + std 1/6 (seeds 1 and 2/3; ddof 0).
    assert np.isclose(band[:, 1].max(), 1.0) and np.isclose(band[band[:, 0] == 3000, 1].min(), 2 / 3)


def test_metric_missing_everywhere_is_a_clear_error(fake_logs: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"No run of MultiGoalPoint-v0 recorded 'success_any_step'.*own return"):
        main([str(fake_logs), "-o", str(tmp_path), "--algos", "dnc", "--metric", "success_any_step"])
    with pytest.raises(ValueError, match=r"--highlight-task 3 is not a task of .* \(tasks 0..2\)"):
        main([str(fake_logs), "-o", str(tmp_path), "--highlight-task", "3"])


def test_selection_windows_are_count_differences_with_zeroed_diagonal(fake_logs: Path) -> None:
    run = run_from_npz(str(fake_logs / "qmp" / f"{ENV}_1" / "evaluations_per_task.npz"), "qmp", ENV)
    assert run is not None
    assert counts_at(run, 500)[0] == 0 and not counts_at(run, 500)[1].any()  # before the first evaluation
    snapped, late = window_counts(run, 2000, 3000)
    assert snapped == (2000, 3000) and late.tolist() == (COUNTS[2] - COUNTS[1]).tolist()
    snapped, mid = window_counts(run, 1500, 2999)  # bounds snap to the evaluation at or before them
    assert snapped == (1000, 2000) and mid.tolist() == (COUNTS[1] - COUNTS[0]).tolist()
    late_matrix = selection_matrix(late)
    np.testing.assert_allclose(late_matrix, [[0, 0, 8 / 18], [12 / 20, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="start < end"):
        window_counts(run, 3000, 1000)
    decreasing = Run("qmp", ENV, "x", np.array(STEPS), run.curves, selection_counts=COUNTS[::-1])
    with pytest.raises(ValueError, match="decrease"):
        window_counts(decreasing, 1000, 3000)
    assert parse_window("200k:1.5M") == (200_000, 1_500_000) and parse_window("0:2e5") == (0, 200_000)
    for bad in ("5:2", "a:b", "1:2:3"):
        with pytest.raises(ValueError, match="START"):
            parse_window(bad)


def test_early_late_heatmaps_drawn(fake_logs: Path, tmp_path: Path, figures: dict[str, Figure]) -> None:
    paths = main([str(fake_logs), "-o", str(tmp_path), "--algos", "qmp"])
    assert {Path(p).name for p in paths} >= {f"{ENV}_qmp_selection.png", f"{ENV}_qmp_selection_early_late.png"}
    # Default windows: first and last third of 3000 steps -> [0, 1000] and [2000, 3000] (seed 2 = 2 x seed 1).
    early, late = (ax.images[0].get_array() for ax in figures[f"{ENV}_qmp_selection_early_late.png"].axes if ax.images)
    np.testing.assert_allclose(early, selection_matrix(COUNTS[0]))
    np.testing.assert_allclose(late, selection_matrix(COUNTS[2] - COUNTS[1]))
    assert np.diag(late).sum() == 0 and late[0, 2] > 0
    whole = figures[f"{ENV}_qmp_selection.png"].axes[0].images[0].get_array()
    np.testing.assert_allclose(whole, selection_matrix(COUNTS[2]))
    assert "early: env steps 0-1k" in figures[f"{ENV}_qmp_selection_early_late.png"].axes[0].get_title()

    main([str(fake_logs), "-o", str(tmp_path), "--algos", "qmp", "--selection-windows", "0:2k", "1k:3k"])
    early, late = (ax.images[0].get_array() for ax in figures[f"{ENV}_qmp_selection_early_late.png"].axes if ax.images)
    np.testing.assert_allclose(early, selection_matrix(COUNTS[1]))
    np.testing.assert_allclose(late, selection_matrix(COUNTS[2] - COUNTS[0]))
    with pytest.raises(SystemExit):
        main([str(fake_logs), "--selection-windows", "2k:1k", "0:1k"])


def test_mean_selection_weighs_seeds_equally() -> None:
    a, b = np.array([[1, 1], [0, 2]]), np.array([[30, 10], [10, 10]])
    np.testing.assert_allclose(mean_selection([a, b]), [[0, (0.5 + 0.25) / 2], [(0 + 0.5) / 2, 0]])
    assert selection_matrix(np.array([[2, 2], [0, 0]])).tolist() == [[0.0, 0.5], [0.0, 0.0]]  # empty row stays 0


def test_stack_seeds_interpolates_onto_common_grid() -> None:
    a = Run("qmp", ENV, "a", np.array([0, 10, 20]), {"own": {"success": np.array([[0, 0], [0.5, 1], [1, 1]])}})
    b = Run("qmp", ENV, "b", np.array([0, 20, 30]), {"own": {"success": np.array([[0, 0], [0, 1], [1, 1]])}})
    grid, values = stack_seeds([a, b], "success")
    assert grid.tolist() == [0, 10, 20]  # up to the shortest run's last step
    np.testing.assert_allclose(values[1, 1], [0, 0.5])  # b interpolated at step 10


def test_redraw_from_summary_runs(fake_logs: Path, tmp_path: Path, figures: dict[str, Figure]) -> None:
    runs = find_runs([str(fake_logs)])
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"runs": [run.to_json() for run in runs]}))
    back = runs_from_summary(str(summary))
    for before, after in zip(runs, back):
        assert before.algo == after.algo and before.modes == after.modes
        for mode in before.modes:
            for metric, values in before.curves[mode].items():
                np.testing.assert_allclose(after.values(metric, mode), values)
        assert (before.selection_counts is None) == (after.selection_counts is None)
    options = ["--metric", "success_any_step", "--mode", "both", "--highlight-task", "2"]
    from_logs = main([str(fake_logs), "-o", str(tmp_path / "a"), *options])
    drawn = {name: _lines(fig) for name, fig in figures.items()}
    from_summary = main(["--from-summary", str(summary), *options])  # PNGs next to the summary
    assert sorted(Path(p).name for p in from_logs) == sorted(Path(p).name for p in from_summary)
    assert all(Path(p).parent == tmp_path for p in from_summary)
    for name, lines in drawn.items():
        redrawn = _lines(figures[name])
        assert redrawn.keys() == lines.keys()
        for label, (y, style) in lines.items():
            np.testing.assert_allclose(redrawn[label][0], y)
            assert redrawn[label][1] == style

    old = tmp_path / "old.json"
    old.write_text(json.dumps({"summary": {"qmp": {"mean_success": [0.0]}}}))
    with pytest.raises(ValueError, match="stores no per-run curves"):
        main(["--from-summary", str(old)])


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main([str(tmp_path / "missing")])
    with pytest.raises(FileNotFoundError, match=r"No evaluations_per_task\.npz"):
        main([str(tmp_path)])
    with pytest.raises(SystemExit):
        main([])
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--from-summary", "x.json"])
    with pytest.raises(ValueError, match="has shape"):
        Run("qmp", ENV, "x", np.array([1, 2]), {"own": {"success": np.zeros((3, 2))}})


def test_series_skips_runs_without_the_metric(fake_logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = find_runs([str(fake_logs)])
    runs.append(run_from_npz(str(fake_logs / "dnc" / f"{ENV}_1"), "qmp", ENV))  # type: ignore[arg-type]  # an old-file qmp seed
    drawn = {(algo, mode): len(group) for algo, mode, group in series(runs, "success_any_step", "both")}
    assert drawn == {("qmp", "own"): 2, ("qmp", "mixture"): 2, ("separated", "own"): 1}
    assert "qmp: 1 of 3 runs have no own success_any_step; left out." in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "empty", "not_npz"])
def test_unreadable_evaluation_file_is_named_and_skipped(fake_logs: Path, tmp_path: Path, damage: str) -> None:
    bad = fake_logs / "separated" / f"{ENV}_1" / "evaluations_per_task.npz"
    data = bad.read_bytes()
    bad.write_bytes({"truncated": data[: len(data) // 3], "empty": b"", "not_npz": b"timesteps,mode\n1,own\n"}[damage])
    with pytest.warns(UserWarning, match=rf"Skipping {bad}: cannot read it"):
        runs = find_runs([str(fake_logs)])
    assert sorted(run.algo for run in runs) == ["dnc", "qmp", "qmp"]  # the rest is still drawn
    with pytest.warns(UserWarning, match="Skipping"):
        main([str(fake_logs), "--output", str(tmp_path / "out"), "--no-heatmaps"])
    assert any((tmp_path / "out").glob("*.png"))


def test_nan_curve_values_are_flagged(fake_logs: Path, tmp_path: Path) -> None:
    write_npz(fake_logs / "separated" / f"{ENV}_2", own=dict(successes=[[0, 0, 0], [np.nan, 1, 0], [1, 1, 0]]))
    with pytest.warns(UserWarning, match=rf"separated/{ENV}_2: own success is nan/inf at env steps \[{STEPS[1]}\]"):
        main([str(fake_logs), "--output", str(tmp_path / "out"), "--no-heatmaps", "--metric", "success"])


def test_heatmap_reads_a_model_without_unpickling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stable_baselines3.common.save_util as save_util

    model = get_algo("qmp")(make_multitask_vec_env(ENV, seed=0), learning_starts=20, batch_size=8, seed=0)
    model.learn(60)
    model.save(tmp_path / "model")  # SB3 appends .zip
    monkeypatch.setattr(save_util, "load_from_zip_file", lambda *a, **k: pytest.fail("unpickled the model's data"))
    np.testing.assert_array_equal(load_selection_counts(str(tmp_path / "model.zip")), model.selection_counts)
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match=r"--heatmap .*notes.txt: not a saved model \(not a zip file\)"):
        load_selection_counts(str(tmp_path / "notes.txt"))


def test_title_note_is_the_second_title_line(fake_logs: Path, tmp_path: Path, figures: dict[str, Figure]) -> None:
    main(
        [
            str(fake_logs),
            "--output",
            str(tmp_path / "out"),
            "--no-heatmaps",
            "--metric",
            "success",
            "--title-note",
            "1/3 of the budget",
        ]
    )
    title = figures[f"{ENV}_success.png"].axes[0].get_title()
    assert title.endswith("\n1/3 of the budget")


def test_heatmap_reads_a_model_saved_to_a_stream(tmp_path: Path) -> None:
    """A model saved to a stream has no plain-JSON copy: the counts come from its collector (with a warning)."""
    import io

    model = get_algo("qmp")(make_multitask_vec_env(ENV, seed=0), learning_starts=20, batch_size=8, seed=0)
    model.learn(60)
    stream = io.BytesIO()
    model.save(stream)
    (tmp_path / "streamed.zip").write_bytes(stream.getvalue())
    with pytest.warns(UserWarning, match="no plain-JSON selection counts"):
        counts = load_selection_counts(str(tmp_path / "streamed.zip"))
    assert counts.sum() > 0
    np.testing.assert_array_equal(counts, model.selection_counts)
