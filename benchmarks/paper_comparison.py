"""Learning curves against the paper: several algorithms x seeds on one task set, through rl-zoo3.

Every run is the literal zoo training command of this package (``python -m sb3_qmp.train``) with the
packaged YAML entry of the env (the paper's hyperparameters) and only the total budget changed; the
YAML's ``PerTaskEvalCallback`` evaluates every task's own policy (deterministic) along the way. Runs
go ``--jobs`` at a time; then the per-task evaluations are summarised (mean success over tasks, mean
+- std over seeds, first evaluation at which the mean success reaches a threshold, per-task final
success) and ``sb3_qmp.plot`` draws the curves and the selection heatmap.

    python benchmarks/paper_comparison.py --env MultistageReacher-v0 --algos qmp separated dnc_reg \\
        --seeds 0 1 2 -n 1000000 --jobs 2 --logs logs/paper_reacher --out benchmarks/results/paper_reacher

``--summarize-only`` re-reads an existing log folder without training; ``--final-info-key stages_completed``
also runs every run's final model for a few episodes per task and reports that ``info`` entry.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sb3_qmp.plot import Run, find_runs


def train_command(args: argparse.Namespace, algo: str, seed: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sb3_qmp.train",
        "--algo",
        algo,
        "--env",
        args.env,
        "-n",
        str(args.n_timesteps),
        "--seed",
        str(seed),
        "-f",
        str(args.logs),
        "--num-threads",
        "1",
        "--eval-freq",
        "-1",  # the zoo's single-env EvalCallback; the YAML's per-task evaluation stays on
        *(["-params", *args.params] if args.params else []),
    ]


def run_all(args: argparse.Namespace) -> dict[str, float]:
    """Train every (algo, seed), ``--jobs`` processes at a time; return the wall time of each run."""
    pending = [(algo, seed) for seed in args.seeds for algo in args.algos]
    running: dict[tuple[str, int], tuple[subprocess.Popen, float]] = {}
    seconds: dict[str, float] = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    args.logs.mkdir(parents=True, exist_ok=True)
    while pending or running:
        while pending and len(running) < args.jobs:
            algo, seed = pending.pop(0)
            # The child gets its own copy of the file handle: ours can close at once.
            with open(args.logs / f"{algo}_seed{seed}.out", "w") as log:
                proc = subprocess.Popen(train_command(args, algo, seed), stdout=log, stderr=subprocess.STDOUT, env=env)
            running[(algo, seed)] = (proc, time.perf_counter())
        time.sleep(1.0)
        for key, (proc, start) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[key]
            seconds[f"{key[0]} seed {key[1]}"] = time.perf_counter() - start
            status = "done" if proc.returncode == 0 else f"FAILED ({proc.returncode}), see {args.logs}"
            print(f"{key[0]} seed {key[1]}: {status} in {seconds[f'{key[0]} seed {key[1]}']:.0f} s", flush=True)
    return seconds


def first_reaching(timesteps: np.ndarray, curve: np.ndarray, threshold: float) -> float | None:
    """The first evaluation step at which ``curve`` reaches ``threshold`` (``None``: never)."""
    hits = np.flatnonzero(curve >= threshold - 1e-9)
    return float(timesteps[hits[0]]) if hits.size else None


def summarize(runs: list[Run], threshold: float) -> dict[str, Any]:
    """Per algorithm: the mean-over-tasks success curve (mean, std over seeds), final per-task success,
    and the first evaluation at which each seed's mean success reaches ``threshold``."""
    summary: dict[str, Any] = {}
    for algo in sorted({run.algo for run in runs}):
        mine = [run for run in runs if run.algo == algo]
        k = min(run.timesteps.size for run in mine)  # runs cut short are compared over the common part
        timesteps = mine[0].timesteps[:k]
        mean_success = np.stack([run.success[:k].mean(axis=1) for run in mine])  # (seeds, K)
        final_per_task = np.stack([run.success[k - 1] for run in mine])  # (seeds, T)
        final_returns = np.stack([run.returns[k - 1] for run in mine])  # (seeds, T)
        summary[algo] = {
            "seeds": len(mine),
            "timesteps": timesteps.tolist(),
            "mean_success": mean_success.mean(axis=0).tolist(),
            "std_success": mean_success.std(axis=0).tolist(),
            "final_mean_success": float(mean_success[:, -1].mean()),
            "final_std_success": float(mean_success[:, -1].std()),
            "final_per_task": final_per_task.mean(axis=0).tolist(),
            "final_per_task_return": final_returns.mean(axis=0).tolist(),
            "steps_to_threshold": [first_reaching(timesteps, curve, threshold) for curve in mean_success],
            "task_names": mine[0].task_names,
        }
    return summary


def final_info_stat(runs: list[Run], env_id: str, key: str, episodes: int) -> dict[str, list[list[float]]]:
    """Per algorithm, per seed, per task: the mean of ``info[key]`` at the end of ``episodes`` episodes of
    each task's own deterministic policy, from the run's final saved model (e.g. Reacher's
    ``stages_completed``, which shows progress that all-or-nothing success hides)."""
    import gymnasium as gym

    import sb3_qmp  # noqa: F401  (registers the env ids)
    from sb3_qmp.registry import get_algo

    stats: dict[str, list[list[float]]] = {}
    for run in runs:
        model = get_algo(run.algo).load(os.path.join(run.path, f"{env_id}.zip"), device="cpu")
        per_task = []
        for task in range(model.num_tasks):
            env = gym.make(env_id, task_id=task)
            values = []
            for episode in range(episodes):
                obs, _ = env.reset(seed=10_000 + episode)
                done = False
                while not done:
                    action, _ = model.predict(obs[None], deterministic=True)
                    obs, _, terminated, truncated, info = env.step(action[0])
                    done = terminated or truncated
                values.append(float(info[key]))
            env.close()
            per_task.append(float(np.mean(values)))
        stats.setdefault(run.algo, []).append(per_task)
    return stats


def to_markdown(summary: dict[str, Any], threshold: float) -> str:
    algos = list(summary)
    lines = [
        f"| algorithm | seeds | final mean success | per-task final success | per-task final return "
        f"| env steps to reach {threshold:.0%} (per seed) |",
        "|---|---:|---|---|---|---|",
    ]
    for algo in algos:
        s = summary[algo]
        per_task = " / ".join(f"{v:.2f}" for v in s["final_per_task"])
        returns = " / ".join(f"{v:.0f}" for v in s["final_per_task_return"])
        reach = ", ".join("never" if v is None else f"{v / 1e3:.0f}k" for v in s["steps_to_threshold"])
        lines.append(
            f"| {algo} | {s['seeds']} | {s['final_mean_success']:.2f} ± {s['final_std_success']:.2f} | {per_task} "
            f"| {returns} | {reach} |"
        )
    info_key = next((s.get("final_info_key") for s in summary.values() if s.get("final_info_key")), None)
    if info_key:
        lines += ["", f"`{info_key}` at the end of the final models' episodes (mean per task; per seed in brackets):", ""]
        lines += [f"| algorithm | {info_key} per task |", "|---|---|"]
        for algo in algos:
            per_seed = np.array(summary[algo]["final_info"])
            cells = " / ".join(f"{column.mean():.2f} [{', '.join(f'{v:.1f}' for v in column)}]" for column in per_seed.T)
            lines.append(f"| {algo} | {cells} |")
    lines += ["", "Mean success over tasks (mean ± std over seeds) at each evaluation:", ""]
    steps = summary[algos[0]]["timesteps"]
    lines.append("| env steps | " + " | ".join(algos) + " |")
    lines.append("|---:|" + "---|" * len(algos))
    for i, step in enumerate(steps):
        cells = []
        for algo in algos:
            s = summary[algo]
            cells.append(f"{s['mean_success'][i]:.2f} ± {s['std_success'][i]:.2f}" if i < len(s["timesteps"]) else "")
        lines.append(f"| {step / 1e3:.0f}k | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MultistageReacher-v0")
    parser.add_argument("--algos", nargs="+", default=["qmp", "separated", "dnc_reg"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("-n", "--n-timesteps", type=int, default=1_000_000, help="env steps per run (all tasks)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--params", nargs="+", default=None, help="extra -params for every run (key:value)")
    parser.add_argument("--threshold", type=float, default=1.0, help="success level for 'steps to reach'")
    parser.add_argument("--logs", type=Path, default=Path("logs/paper_comparison"), help="rl-zoo3 log folder")
    parser.add_argument("--out", type=Path, default=None, help="write summary JSON, markdown and PNGs here")
    parser.add_argument("--summarize-only", action="store_true", help="do not train; read --logs")
    parser.add_argument("--final-info-key", default=None, help="also report this info key of the final models' episodes")
    parser.add_argument("--final-episodes", type=int, default=5, help="episodes per task for --final-info-key")
    args = parser.parse_args(argv)

    seconds = {} if args.summarize_only else run_all(args)
    runs = find_runs([str(args.logs)], algos=args.algos, envs=[args.env])
    if not runs:
        raise SystemExit(f"No per-task evaluations of {args.algos} on {args.env} under {args.logs}.")
    summary = summarize(runs, args.threshold)
    if args.final_info_key:
        for algo, per_seed in final_info_stat(runs, args.env, args.final_info_key, args.final_episodes).items():
            summary[algo].update(final_info_key=args.final_info_key, final_info=per_seed)
    table = to_markdown(summary, args.threshold)
    print(table)
    previous = args.out / "summary.json" if args.out is not None else None
    if args.summarize_only and previous is not None and previous.is_file():
        seconds = json.loads(previous.read_text()).get("seconds", {})  # keep the training runs' wall times
    result = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "seconds": seconds}
    result["summary"] = summary
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(json.dumps(result, indent=2))
        (args.out / "summary.md").write_text(table + "\n")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "sb3_qmp.plot",
                str(args.logs),
                "--envs",
                args.env,
                "--algos",
                *args.algos,
                "-o",
                str(args.out),
            ],
            check=True,
        )
    return result


if __name__ == "__main__":
    main()
