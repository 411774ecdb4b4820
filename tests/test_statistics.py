"""rliable's estimators (sb3_qmp.grid.statistics): IQM, mean, probability of improvement, stratified bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from sb3_qmp.grid.statistics import aggregate, compare, compare_markdown, improvement, iqm, probability_of_improvement


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    scores = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 100.0]])  # 8 scores: middle four are 2..5
    assert iqm(scores) == pytest.approx(3.5)
    assert aggregate(scores)["mean"] == pytest.approx(121 / 8)


def test_probability_of_improvement_counts_ties_half_and_averages_tasks() -> None:
    x = np.array([[1.0, 0.0], [1.0, 0.0]])
    y = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    # Task 0: x=1 beats y=0 in 2 of 3 pairs, ties y=1 in 1 of 3 -> 2/3 + 1/6; task 1: x=0 ties y=0 in 1/3 -> 1/6.
    assert probability_of_improvement(x, y) == pytest.approx(((2 / 3 + 1 / 6) + 1 / 6) / 2)
    assert probability_of_improvement(x, y) + probability_of_improvement(y, x) == pytest.approx(1.0)


def test_bootstrap_resamples_runs_within_each_task() -> None:
    # Every task's runs agree; the tasks differ. Resampling within tasks cannot move the mean, resampling
    # across tasks (unstratified) would.
    scores = np.tile(np.array([0.0, 1.0, 0.5, 0.25]), (5, 1))
    stats = aggregate(scores, resamples=2000)
    assert stats["mean_ci"] == pytest.approx((0.4375, 0.4375))
    assert stats["iqm_ci"][0] == pytest.approx(stats["iqm_ci"][1])


def test_interval_contains_the_estimate_and_shrinks_with_more_runs() -> None:
    rng = np.random.default_rng(0)
    few, many = rng.random((3, 4)), rng.random((30, 4))
    for scores in (few, many):
        stats = aggregate(scores, resamples=2000)
        for key in ("iqm", "mean"):
            low, high = stats[f"{key}_ci"]
            assert low <= stats[key] <= high
    width = lambda s: s["mean_ci"][1] - s["mean_ci"][0]  # noqa: E731
    assert width(aggregate(many, resamples=2000)) < width(aggregate(few, resamples=2000))


def test_improvement_interval_and_one_run_has_none() -> None:
    better, worse = np.full((4, 3), 0.9), np.full((4, 3), 0.1)
    result = improvement(better, worse, resamples=500)
    assert result["probability"] == 1.0 and result["ci"] == pytest.approx((1.0, 1.0))
    assert aggregate(better[:1])["mean_ci"] is None


def test_bad_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="nan"):
        aggregate([[0.5, np.nan]])
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement(np.ones((2, 3)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="reference"):
        compare({"a": np.ones((2, 2))}, reference="qmp")


def test_compare_table() -> None:
    result = compare({"qmp": np.full((3, 2), 1.0), "separated": np.full((3, 2), 0.5)}, reference="qmp", resamples=200)
    assert set(result["improvement"]) == {"separated"}
    table = compare_markdown(result)
    assert "| qmp | 3 | 1.00 [1.00, 1.00] |" in table and "P(qmp > method)" in table
