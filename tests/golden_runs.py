"""Short seeded training runs of every algorithm and their fingerprints (shared by the golden-run test and the
script that records them): the per-tensor statistics of the final policy weights and the selection counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from sb3_qmp import make_multitask_vec_env
from sb3_qmp.common.callbacks import PerTaskEvalCallback
from sb3_qmp.registry import ALGO_PATHS, get_algo

GOLDEN_KWARGS: dict[str, Any] = dict(
    learning_starts=64,
    batch_size=16,
    buffer_size=1000,
    policy_kwargs=dict(net_arch=[16, 16]),
    seed=0,
    train_freq=4,
    gradient_steps=2,
)
GOLDEN_EXTRA: dict[str, dict[str, Any]] = {
    "qmp_domain": dict(collector_kwargs=dict(matrix=np.full((4, 4), 0.25).tolist())),
    "dnc": dict(distill_period=200, distill_epochs=2, distill_batch_size=8),
    "qmp_commit": dict(collector_kwargs=dict(commit_steps=3, own_prob=0.2, switch_margin=0.1)),
    "qmp_adaptive": dict(collector_kwargs=dict(adaptive=True)),
}
GOLDEN_STEPS = 400
RUNS = {**{name: name for name in sorted(ALGO_PATHS)}, "qmp_commit": "qmp", "qmp_adaptive": "qmp"}
EVALUATED = ("qmp", "qmp_commit", "qmp_domain", "separated")  # also fingerprint an evaluation after training


def fingerprint(run: str) -> dict[str, Any]:
    """Train run ``run`` (an algorithm, or a QMP collector variant) and return its fingerprint."""
    th.set_num_threads(1)
    model = get_algo(RUNS[run])(
        make_multitask_vec_env("MultiGoalPoint-v0", seed=0), **GOLDEN_KWARGS, **GOLDEN_EXTRA.get(run, {})
    )
    model.learn(GOLDEN_STEPS)
    weights = {
        key: [float(v.double().mean()), float(v.double().std()) if v.numel() > 1 else 0.0, float(v.double().abs().sum())]
        for key, v in sorted(model.policy.state_dict().items())
    }
    counts = model.selection_counts.tolist() if model.selection_counts is not None else None
    result = {"weights": weights, "selection_counts": counts, "n_updates": int(model._n_updates)}
    if run in EVALUATED:
        result["evaluation"] = evaluation_fingerprint(model)
    return result


def evaluation_fingerprint(model: Any) -> dict[str, dict[str, list[list[float]]]]:
    """Every episode of one seeded per-task evaluation (both modes for a mixture), as the callback records it."""
    callback = PerTaskEvalCallback("MultiGoalPoint-v0", eval_freq=-1, n_eval_episodes=2, seed=0, verbose=0)
    callback.init_callback(model)
    return {mode: {m: v.tolist() for m, v in episodes.items()} for mode, episodes in callback.evaluate().items()}


def record(path: Path) -> None:
    """Re-record the fingerprints into ``path`` (only for a change meant to alter learning or evaluation)."""
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    runs = {run: fingerprint(run) for run in sorted(RUNS)}
    path.write_text(json.dumps({"recorded_with_commit": commit, "runs": runs}, indent=0) + "\n")


if __name__ == "__main__":
    record(Path(__file__).parent / "data" / "golden_runs.json")
