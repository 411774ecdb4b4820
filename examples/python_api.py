"""Python API: train QMP with per-task evaluation, save, load, evaluate each task, show the mixture.

    python examples/python_api.py --steps 3000 --logdir logs_api

Writes the rl-zoo3 layout (``<logdir>/qmp/MultiGoalPoint-v0_1/``) so that
``python -m sb3_qmp.plot <logdir>`` can plot it.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch as th

from sb3_qmp import QMP, make_multitask_vec_env
from sb3_qmp.common.callbacks import PerTaskEvalCallback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="env steps, all tasks together")
    parser.add_argument("--logdir", default="logs_api")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these tiny nets)")
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    env_id = "MultiGoalPoint-v0"
    run_dir = os.path.join(args.logdir, "qmp", f"{env_id}_{args.seed + 1}")
    env = make_multitask_vec_env(env_id, n_envs_per_task=1, seed=args.seed)  # sub-env e runs task e
    model = QMP(
        "MlpPolicy",
        env,
        learning_starts=400,
        batch_size=64,
        train_freq=8,
        gradient_steps=8,
        learning_rate=1e-3,
        policy_kwargs=dict(net_arch=[64, 64]),
        collector_kwargs=dict(score="mean", critic_reduce="q1", commit_steps=1, own_prob=0.0),
        seed=args.seed,
        verbose=0,
    )
    callback = PerTaskEvalCallback(eval_freq=max(args.steps // 5, 1), n_eval_episodes=3, log_path=run_dir)
    model.learn(args.steps, callback=callback)
    model.save(os.path.join(run_dir, env_id))

    loaded = QMP.load(os.path.join(run_dir, env_id))  # no env needed to predict
    final = PerTaskEvalCallback(env_id, eval_freq=-1, n_eval_episodes=5, verbose=0)
    final.init_callback(loaded)
    result = final.evaluate()
    print("per-task success of the loaded model:", np.round(result["own"]["success"].mean(axis=1), 2).tolist())
    print("mixture selection (row = task collecting, column = policy acting):")
    print(np.round(loaded.selection_matrix(), 2))


if __name__ == "__main__":
    main()
