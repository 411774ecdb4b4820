"""A grid's results in numbers: each finished run's final success per task, and aggregates over runs and
tasks per (env, method) with :mod:`sb3_qmp.grid.statistics` (IQM, mean, stratified-bootstrap intervals,
probability of improvement of a reference method over each other)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sb3_qmp.common.callbacks import EVAL_FILE
from sb3_qmp.common.results import run_from_npz
from sb3_qmp.grid.runs import RunSpec, run_state
from sb3_qmp.grid.statistics import compare, compare_markdown

# The paper's metric (success at any step of the episode) in each evaluation mode.
SCORE_KEYS = {"own": "success_any_step", "mixture": "success_any_step"}


def method_name(spec: RunSpec) -> str:
    return spec.variant or spec.algo


def final_scores(spec: RunSpec, logs: str | Path, mode: str = "own", archive: str | Path | None = None) -> np.ndarray | None:
    """Per-task any-step success at the finished run's last evaluation (``None``: not finished, or no
    evaluation in that mode)."""
    state = run_state(spec, logs, archive=archive)
    if state.state != "finished" or state.path is None or not (state.path / EVAL_FILE).is_file():
        return None
    run = run_from_npz(str(state.path / EVAL_FILE), spec.algo, spec.env, spec.seed)
    if run is None or not run.has(SCORE_KEYS[mode], mode):
        return None
    return np.asarray(run.values(SCORE_KEYS[mode], mode)[-1], dtype=np.float64)


def summarize_grid(
    specs: Sequence[RunSpec], logs: str | Path, reference: str | None = "qmp", archive: str | Path | None = None
) -> dict[str, Any]:
    """Per env and evaluation mode: every finished run's final per-task success and the aggregates.

    :param reference: the method whose probability of improving on each other method is reported
        (skipped where it has no finished run).
    :param archive: where finished runs are also looked for (see :func:`~sb3_qmp.grid.runs.archive_run`).
    """
    result: dict[str, Any] = {"reference": reference, "envs": {}}
    for env in dict.fromkeys(spec.env for spec in specs):
        env_specs = [spec for spec in specs if spec.env == env]
        entry: dict[str, Any] = {"runs": [], "modes": {}}
        for mode in SCORE_KEYS:
            scores: dict[str, list[np.ndarray]] = {}
            for spec in env_specs:
                final = final_scores(spec, logs, mode, archive)
                if final is None:
                    continue
                scores.setdefault(method_name(spec), []).append(final)
                entry["runs"].append({"method": method_name(spec), "seed": spec.seed, "mode": mode, "final": final.tolist()})
            if scores:
                ref = reference if reference in scores else None
                entry["modes"][mode] = compare({m: np.stack(v) for m, v in scores.items()}, ref)
        missing = [spec.name for spec in env_specs if run_state(spec, logs, archive=archive).state != "finished"]
        entry["missing"] = missing
        result["envs"][env] = entry
    return result


def summary_markdown(summary: dict[str, Any]) -> str:
    """Markdown tables of :func:`summarize_grid` (final any-step success)."""
    parts = []
    for env, entry in summary["envs"].items():
        parts.append(f"## {env}\n")
        for mode, comparison in entry["modes"].items():
            title = f"Final any-step success, {'own policies' if mode == 'own' else 'the mixture'}"
            parts.append(compare_markdown(comparison, title))
        if entry["missing"]:
            parts.append("Not finished: " + ", ".join(entry["missing"]) + "\n")
    return "\n".join(parts)


__all__ = ["final_scores", "summarize_grid", "summary_markdown"]
