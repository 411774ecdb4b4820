"""Speed of the gradient updates with denormal floats kept vs flushed to zero, on a trained model.

Over a long run, Adam's moments of weights whose gradient is zero decay into denormal floats, which
x86 CPUs compute on far more slowly (see :mod:`sb3_qmp.common.denormal`). This benchmark takes a
saved model *with its optimizer state* (the end of a real run), fills a replay buffer on its env, and
runs the same gradient steps from the same state twice per repeat, ``flush_denormal=False`` and
``True`` alternately, in one process. It reports the time per gradient step of each, how many of the
optimizer moments are denormal, and whether the two runs end with bit-identical weights.

    python benchmarks/denormals.py --algo qmp --env MultistageReacher-v1 \\
        --model logs/paper_reacher_v1/seed_0/qmp/MultistageReacher-v1_1/MultistageReacher-v1.zip \\
        --output benchmarks/results/denormals_reacher_v1.json
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch as th
from report import report  # benchmarks/report.py (the script's folder is on sys.path)
from stable_baselines3.common.logger import Logger

import sb3_qmp  # noqa: F401  (registers the env ids)
from sb3_qmp import make_multitask_vec_env
from sb3_qmp.mtsac.mtsac import MultiTaskSAC
from sb3_qmp.registry import ALGO_PATHS, get_algo

TINY = th.finfo(th.float32).tiny


def moment_counts(model: MultiTaskSAC) -> dict[str, Any]:
    """Per optimizer: number of Adam moment entries and the fraction that are denormal."""
    counts: dict[str, Any] = {}
    optimizers = {"actor": model.actor.optimizer, "critic": model.critic.optimizer}
    for name, optimizer in optimizers.items():
        total = denormal = 0
        for state in optimizer.state.values():
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    magnitude = state[key].abs()
                    total += magnitude.numel()
                    denormal += int(((magnitude > 0) & (magnitude < TINY)).sum())
        counts[name] = {"entries": total, "denormal_fraction": denormal / max(total, 1)}
    return counts


def load(args: argparse.Namespace) -> MultiTaskSAC:
    env = make_multitask_vec_env(args.env, seed=0)
    model = get_algo(args.algo).load(args.model, env=env, device="cpu")
    assert isinstance(model, MultiTaskSAC)
    return model


def run(args: argparse.Namespace) -> dict[str, Any]:
    th.set_num_threads(args.threads)
    model = load(args)
    before = moment_counts(model)
    steps_at_load = int(model.num_timesteps)
    # Fill a buffer once (uniform-random actions: learning_starts is pushed past the fill), reused by every run.
    model.learning_starts = model.num_timesteps + 10 * args.fill_steps
    model.learn(args.fill_steps, reset_num_timesteps=False)
    buffer_path = Path(tempfile.mkdtemp()) / "buffer.pkl"
    model.save_replay_buffer(buffer_path)

    times: dict[bool, list[float]] = {False: [], True: []}
    weights: dict[bool, list[th.Tensor]] = {}
    after: dict[bool, dict[str, Any]] = {}
    for _ in range(args.repeats):
        for flush in (False, True):
            trained = load(args)
            trained.load_replay_buffer(buffer_path)
            trained.flush_denormal = flush
            trained.set_logger(Logger(folder=None, output_formats=[]))
            trained.set_random_seed(args.seed)  # same minibatches and actor noise in both runs
            np.random.seed(args.seed)
            start = time.perf_counter()
            trained.train(gradient_steps=args.gradient_steps, batch_size=trained.batch_size)
            times[flush].append((time.perf_counter() - start) / args.gradient_steps)
            weights[flush] = [p.detach().clone() for p in trained.policy.parameters()]
            after[flush] = moment_counts(trained)
    identical = all(th.equal(a, b) for a, b in zip(weights[False], weights[True]))
    ms = {flush: 1e3 * float(np.median(t)) for flush, t in times.items()}
    return {
        "model": args.model,
        "algo": args.algo,
        "env": args.env,
        "num_timesteps_of_model": steps_at_load,
        "gradient_steps": args.gradient_steps,
        "batch_size": int(model.batch_size),
        "repeats": args.repeats,
        "ms_per_gradient_step": {"kept": ms[False], "flushed": ms[True]},
        "all_times_ms": {"kept": [1e3 * t for t in times[False]], "flushed": [1e3 * t for t in times[True]]},
        "speedup": ms[False] / ms[True],
        "weights_bit_identical": identical,
        "denormal_moments_at_load": before,
        "denormal_moments_after": {"kept": after[False], "flushed": after[True]},
        "threads": args.threads,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {th.__version__}",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved sb3_qmp model (.zip) with its optimizer state")
    parser.add_argument("--algo", required=True, choices=sorted(ALGO_PATHS), help="the model's algorithm")
    parser.add_argument("--env", required=True, help="the model's env id")
    parser.add_argument("--fill-steps", type=int, default=5000, help="env steps (all tasks) put in the buffer")
    parser.add_argument("--gradient-steps", type=int, default=400, help="gradient steps per timed run")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per setting (alternating)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--output", type=Path, default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    if not Path(args.model).is_file():
        parser.error(f"--model {args.model}: no such file (a model saved by a finished run, e.g. the grid's)")
    result = run(args)
    ms = result["ms_per_gradient_step"]
    table = "\n".join(
        [
            "| denormals | ms per gradient step | speed-up | weights bit-identical |",
            "|---|---|---|---|",
            f"| kept | {ms['kept']:.2f} | 1.00x | |",
            f"| flushed | {ms['flushed']:.2f} | {result['speedup']:.2f}x | {result['weights_bit_identical']} |",
        ]
    )
    fractions = ", ".join(
        f"{name} {c['denormal_fraction']:.0%} of {c['entries']}" for name, c in result["denormal_moments_at_load"].items()
    )
    steps = result["num_timesteps_of_model"]
    header = f"{args.algo} on {args.env}, model at {steps} env steps; denormal Adam moments: {fractions}"
    report(result, header, table, args.output)
    return result


if __name__ == "__main__":
    main()
