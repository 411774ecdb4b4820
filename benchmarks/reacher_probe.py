"""Learning probe of Multistage Reacher: plain SB3 SAC on single tasks, under v0 and v1 physics.

Question: does a plain SAC learner reach subgoals of ``MultistageReacher-v1`` (the authors' scene: full gravity
on their link masses) as it does on ``-v0`` (the first rebuild, gravity-compensated)? Every run is one task of one
version: SAC with the Reacher settings of the authors' code (batch 32, one gradient step per env step,
``learning_starts`` 10k, 2 x 256), evaluated every ``--eval-freq`` env steps on ``--eval-episodes`` deterministic
episodes (stages completed, the authors' any-step success, the strict success, return).

    nice -n 10 python benchmarks/reacher_probe.py --versions 0 1 --tasks 0 2 --steps 100000 --jobs 2

Resumable: every evaluation checkpoints the model, its replay buffer and the evaluation history under ``--work``;
a rerun continues unfinished runs from their last checkpoint and skips finished ones (the continuation is not
bit-identical to an uninterrupted run). Results: one JSON per run in ``--out``/per_run and ``summary.json`` /
``summary.md`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback

import sb3_qmp  # noqa: F401  (registers the env ids)


def evaluate(model: SAC, env: gym.Env, episodes: int, seed: int) -> dict[str, float]:
    """Deterministic episodes of ``model`` on ``env``; the means of the episode-end info and the return."""
    stages, any_step, strict, returns = [], [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            done = terminated or truncated
        stages.append(info["stages_completed"])
        any_step.append(info["success_any_step"])
        strict.append(info["is_success"])
        returns.append(total)
    return {
        "stages_completed": float(np.mean(stages)),
        "success_any_step": float(np.mean(any_step)),
        "is_success": float(np.mean(strict)),
        "return": float(np.mean(returns)),
    }


class ProbeCallback(BaseCallback):
    """Evaluate every ``eval_freq`` env steps, then checkpoint model, replay buffer and history to ``work``."""

    def __init__(
        self, eval_env: gym.Env, eval_freq: int, episodes: int, work: Path, history: list[dict], wall_offset: float
    ) -> None:
        super().__init__()
        self.eval_env, self.eval_freq, self.episodes = eval_env, eval_freq, episodes
        self.work, self.history = work, history
        self.wall_offset, self.start = wall_offset, time.perf_counter()  # wall time of earlier sessions of this run

    def _on_step(self) -> bool:
        if self.num_timesteps % self.eval_freq == 0:
            assert isinstance(self.model, SAC)
            result = evaluate(self.model, self.eval_env, self.episodes, seed=10_000)
            wall = self.wall_offset + time.perf_counter() - self.start
            self.history.append({"env_steps": self.num_timesteps, "wall_s": round(wall, 1), **result})
            self.model.save(self.work / "model.zip")
            self.model.save_replay_buffer(self.work / "buffer.pkl")
            (self.work / "history.json").write_text(json.dumps(self.history, indent=1))
        return True


def run_one(version: int, task: int, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) one run and return its result (also written to ``--out``/per_run)."""
    th.set_num_threads(1)
    name = f"v{version}_task{task}_seed{seed}"
    result_path = args.out / "per_run" / f"{name}.json"  # a folder named runs/ is git-ignored
    if result_path.exists():
        return json.loads(result_path.read_text())
    env_id = f"MultistageReacher-v{version}"
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    env, eval_env = gym.make(env_id, task_id=task), gym.make(env_id, task_id=task)
    history: list[dict] = []
    if (work / "model.zip").exists():
        model = SAC.load(work / "model.zip", env=env, device="cpu")
        model.load_replay_buffer(work / "buffer.pkl")
        history = json.loads((work / "history.json").read_text())
    else:
        model = SAC(
            "MlpPolicy",
            env,
            batch_size=32,
            learning_starts=args.learning_starts,
            train_freq=1,
            gradient_steps=1,
            buffer_size=args.steps,
            policy_kwargs=dict(net_arch=[256, 256]),
            seed=seed,
            device="cpu",
        )
    callback = ProbeCallback(
        eval_env, args.eval_freq, args.eval_episodes, work, history, history[-1]["wall_s"] if history else 0.0
    )
    remaining = args.steps - model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=callback, reset_num_timesteps=False)
    final = history[-1]  # --steps is a multiple of --eval-freq: the last evaluation is at the end
    wall = final["wall_s"]
    best = {key: max(h[key] for h in history) for key in ("stages_completed", "success_any_step", "is_success")}
    result = {
        "env_id": env_id,
        "task": task,
        "seed": seed,
        "env_steps": args.steps,
        "wall_s": round(wall, 1),
        "final": {k: final[k] for k in ("stages_completed", "success_any_step", "is_success", "return")},
        "best_during_training": best,
        "history": history,
    }
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=1))
    return result


def summarize(results: list[dict[str, Any]], out: Path) -> str:
    """Write ``summary.json`` and ``summary.md`` to ``out``; return the markdown table."""
    lines = [
        "| env | task | seed | env steps | final stages | final any-step | final strict | best stages | "
        "best any-step | best strict | final return | wall (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        f, b = r["final"], r["best_during_training"]
        lines.append(
            f"| {r['env_id']} | {r['task']} | {r['seed']} | {r['env_steps']} | {f['stages_completed']:.1f} | "
            f"{f['success_any_step']:.1f} | {f['is_success']:.1f} | {b['stages_completed']:.1f} | "
            f"{b['success_any_step']:.1f} | {b['is_success']:.1f} | {f['return']:.0f} | {r['wall_s']:.0f} |"
        )
    table = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(table + "\n")
    summary = [{k: v for k, v in r.items() if k != "history"} for r in results]
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return table


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--tasks", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per run")
    parser.add_argument("--learning-starts", type=int, default=10_000)
    parser.add_argument("--eval-freq", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (one torch thread each)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reacher_probe"))
    parser.add_argument("--work", type=Path, default=Path("logs/reacher_probe"), help="checkpoints (for resuming)")
    args = parser.parse_args(argv)
    if args.steps <= args.learning_starts or args.eval_freq < 1 or args.steps % args.eval_freq:
        parser.error("--steps must exceed --learning-starts and be a multiple of --eval-freq (>= 1)")
    jobs = [(v, t, s) for s in args.seeds for t in args.tasks for v in args.versions]  # versions side by side
    from sb3_qmp.grid.engine import map_script

    # Every run a Ray task (the package's grid engine), --jobs at a time.
    results = map_script(__file__, "run_one", [(v, t, s, args) for v, t, s in jobs], num_cpus=args.jobs)
    print(summarize(results, args.out))
    return results


if __name__ == "__main__":
    main()
