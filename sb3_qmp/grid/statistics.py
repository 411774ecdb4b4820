"""Aggregate scores over runs and tasks with the estimators of rliable (Agarwal et al., 2021).

Scores are ``(runs, tasks)`` matrices, one per method (e.g. each seed's final success on each task).

* **IQM**: the interquartile mean, the mean of the middle 50% of all run x task scores (robust to a few
  outlying runs, more efficient than the median);
* **mean** of all run x task scores;
* **probability of improvement** ``P(X > Y)``: averaged over tasks, the probability that a random run of
  method X scores higher on the task than a random run of Y (ties count one half; the Mann-Whitney U
  statistic over ``n x m`` pairs);
* 95% intervals from the **stratified bootstrap**: runs are resampled with replacement within each task,
  independently across tasks (and methods), the percentile interval of the statistic is reported.

The resampling is scipy's (``scipy.stats.bootstrap``, one sample per task). rliable itself is not a
dependency: it imports ``arch`` 7.2, which fails with pandas 3 (the pandas that rl-zoo3 users get by
default), and ``arch`` 8 breaks rliable's bootstrap call; pinning ``pandas<3`` for everyone to get the same
numbers was not worth it. The point estimates equal rliable's ``aggregate_iqm``, ``aggregate_mean`` and
``probability_of_improvement``; intervals agree up to the bootstrap's randomness.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 10_000


def _matrix(scores: Any) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"Scores must be a (runs, tasks) matrix with at least one run and task, got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError("Scores contain nan or inf: drop the runs or tasks without a score first.")
    return array


def iqm(scores: Any) -> float:
    """Interquartile mean of all entries (rliable's ``aggregate_iqm``: ``trim_mean(x, 0.25)``)."""
    return float(stats.trim_mean(np.asarray(scores, dtype=np.float64).ravel(), proportiontocut=0.25))


def mean(scores: Any) -> float:
    """Mean of all entries."""
    return float(np.mean(np.asarray(scores, dtype=np.float64)))


def _pair_probability(x: np.ndarray, y: np.ndarray) -> float:
    """P(x > y) + P(x == y) / 2 over all pairs of two samples (along the last axis)."""
    greater = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    equal = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return greater + 0.5 * equal


def probability_of_improvement(scores_x: Any, scores_y: Any) -> float:
    """``P(X > Y)`` averaged over tasks (rliable's ``probability_of_improvement``).

    :param scores_x: ``(runs_x, tasks)`` scores of method X.
    :param scores_y: ``(runs_y, tasks)`` scores of method Y (same tasks; the run counts may differ).
    """
    x, y = _matrix(scores_x), _matrix(scores_y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"Both methods need the same tasks: {x.shape[1]} vs {y.shape[1]} columns.")
    return float(np.mean([_pair_probability(x[:, t], y[:, t]) for t in range(x.shape[1])]))


def _interval(
    samples: Sequence[np.ndarray], statistic: Callable[..., Any], resamples: int, seed: int
) -> tuple[float, float] | None:
    """Percentile interval of ``statistic(*samples)`` under the stratified bootstrap (``None``: fewer than two
    runs per task, nothing to resample)."""
    if min(len(s) for s in samples) < 2:
        return None
    result = stats.bootstrap(
        tuple(samples),
        statistic,
        n_resamples=resamples,
        confidence_level=CONFIDENCE,
        method="percentile",
        vectorized=True,
        paired=False,
        rng=np.random.default_rng(seed),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    # A constant statistic has a degenerate bootstrap distribution: scipy returns nan, the interval is the point.
    value = float(statistic(*samples, axis=-1))
    return (value if np.isnan(low) else low, value if np.isnan(high) else high)


def aggregate(scores: Any, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """IQM and mean of a method's ``(runs, tasks)`` scores with stratified-bootstrap 95% intervals.

    :return: ``{"runs", "tasks", "iqm", "iqm_ci", "mean", "mean_ci"}`` (intervals ``None`` with one run).
    """
    matrix = _matrix(scores)
    columns = [matrix[:, t] for t in range(matrix.shape[1])]

    def stacked(*cols: np.ndarray) -> np.ndarray:  # (..., runs of every task) for 1-D and batched resamples
        return np.concatenate(cols, axis=-1)

    def iqm_stat(*cols: np.ndarray, axis: int = -1) -> np.ndarray:
        return stats.trim_mean(stacked(*cols), 0.25, axis=-1)

    def mean_stat(*cols: np.ndarray, axis: int = -1) -> np.ndarray:
        return stacked(*cols).mean(axis=-1)

    return {
        "runs": int(matrix.shape[0]),
        "tasks": int(matrix.shape[1]),
        "iqm": iqm(matrix),
        "iqm_ci": _interval(columns, iqm_stat, resamples, seed),
        "mean": mean(matrix),
        "mean_ci": _interval(columns, mean_stat, resamples, seed),
    }


def improvement(scores_x: Any, scores_y: Any, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """``P(X > Y)`` with its stratified-bootstrap 95% interval (both methods' runs resampled per task).

    :return: ``{"probability", "ci"}``.
    """
    x, y = _matrix(scores_x), _matrix(scores_y)
    probability = probability_of_improvement(x, y)
    tasks = x.shape[1]
    samples = [x[:, t] for t in range(tasks)] + [y[:, t] for t in range(tasks)]

    def statistic(*cols: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean([_pair_probability(cols[t], cols[tasks + t]) for t in range(tasks)], axis=0)

    return {"probability": probability, "ci": _interval(samples, statistic, resamples, seed)}


def compare(
    scores: Mapping[str, Any], reference: str | None = None, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """Aggregates of every method and the probability that ``reference`` improves on each other method.

    :param scores: ``{method: (runs, tasks) scores}``.
    :param reference: the method compared with the others (``None``: no comparison).
    :return: ``{"aggregates": {method: aggregate(...)}, "improvement": {other: improvement(ref, other)}}``.
    """
    if reference is not None and reference not in scores:
        raise ValueError(f"The reference method {reference!r} has no scores; methods: {sorted(scores)}.")
    result: dict[str, Any] = {
        "confidence": CONFIDENCE,
        "resamples": resamples,
        "aggregates": {name: aggregate(values, resamples, seed) for name, values in scores.items()},
        "reference": reference,
        "improvement": {},
    }
    if reference is not None:
        for name, values in scores.items():
            if name != reference:
                result["improvement"][name] = improvement(scores[reference], values, resamples, seed)
    return result


def format_interval(value: float, ci: Sequence[float] | None, digits: int = 2) -> str:
    """``0.83 [0.71, 0.92]`` (or the value alone without an interval)."""
    if ci is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def compare_markdown(comparison: dict[str, Any], title: str = "Aggregate over runs and tasks") -> str:
    """A markdown table of :func:`compare`'s result."""
    reference = comparison.get("reference")
    head = ["method", "runs", "IQM [95% CI]", "mean [95% CI]"]
    if reference is not None:
        head.append(f"P({reference} > method) [95% CI]")
    lines = [
        f"**{title}** (stratified bootstrap over runs within each task, {comparison['resamples']:,} resamples)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, agg in comparison["aggregates"].items():
        row = [
            name,
            str(agg["runs"]),
            format_interval(agg["iqm"], agg["iqm_ci"]),
            format_interval(agg["mean"], agg["mean_ci"]),
        ]
        if reference is not None:
            imp = comparison["improvement"].get(name)
            row.append("—" if imp is None else format_interval(imp["probability"], imp["ci"]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


__all__ = [
    "aggregate",
    "compare",
    "compare_markdown",
    "format_interval",
    "improvement",
    "iqm",
    "mean",
    "probability_of_improvement",
]
