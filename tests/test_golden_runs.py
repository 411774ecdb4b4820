"""Golden runs: short seeded training runs of every algorithm (and the Q-switch's commitment, own-probability
and adaptive options) must give the weights and selection counts recorded with commit 7727bb6, the code that
the published Reacher numbers and the running Maze / Meta-World campaign use (weights to 1e-6, counts exactly),
and for a few of them the per-task evaluation that follows (every episode's metrics in both modes, recorded with
commit 1608ba8, whose evaluation files are byte for byte those of 20d3488, before the evaluation's refactor).

Refactors and fixes that must not change learning keep these passing; a change that does change learning
re-records them (``python tests/golden_runs.py``-style, see docs/design.md) and says so in docs/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from golden_runs import EVALUATED, RUNS, fingerprint

RECORDED = json.loads((Path(__file__).parent / "data" / "golden_runs.json").read_text())["runs"]


@pytest.mark.parametrize("run", sorted(RUNS))
def test_training_is_unchanged(run: str) -> None:
    now, then = fingerprint(run), RECORDED[run]
    assert now["n_updates"] == then["n_updates"]
    assert now["selection_counts"] == then["selection_counts"]
    assert now["weights"].keys() == then["weights"].keys()
    for key, stats in then["weights"].items():
        np.testing.assert_allclose(now["weights"][key], stats, rtol=1e-6, atol=1e-6, err_msg=key)
    if run in EVALUATED:  # the evaluation after training: every episode's metrics, in every mode
        assert now["evaluation"].keys() == then["evaluation"].keys()
        for mode, metrics in then["evaluation"].items():
            assert now["evaluation"][mode].keys() == metrics.keys(), mode
            for metric, values in metrics.items():
                np.testing.assert_allclose(now["evaluation"][mode][metric], values, rtol=1e-6, err_msg=f"{mode} {metric}")
