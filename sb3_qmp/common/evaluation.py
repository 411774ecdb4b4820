"""Per-task evaluation of a multi-task model's own policies."""

from __future__ import annotations

from typing import Any

import numpy as np

from sb3_qmp.common.vec_env import make_multitask_vec_env


def evaluate_per_task(
    model: Any,
    env_id: str,
    n_eval_episodes: int = 10,
    deterministic: bool = True,
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Run ``n_eval_episodes`` episodes of every task with ``model.predict`` (each row its own task's policy).

    :param model: a trained model whose ``predict`` routes rows by the one-hot task suffix.
    :param env_id: registered multi-task env id.
    :param n_eval_episodes: episodes per task (run in parallel, one sub-env each).
    :param deterministic: deterministic actions.
    :param seed: evaluation env seed.
    :param env_kwargs: keyword arguments for the env.
    :return: ``{"success": (T,), "return": (T,), "length": (T,)}`` per-task means.
    """
    if n_eval_episodes < 1:
        raise ValueError(f"n_eval_episodes must be >= 1, got {n_eval_episodes}.")
    env = make_multitask_vec_env(env_id, n_envs_per_task=n_eval_episodes, seed=seed, env_kwargs=env_kwargs)
    num_tasks = env.num_envs // n_eval_episodes
    returns = np.zeros(env.num_envs)
    lengths = np.zeros(env.num_envs)
    success = np.zeros(env.num_envs)
    finished = np.zeros(env.num_envs, dtype=bool)
    # A model trained on normalised observations (VecNormalizePerTask) acts on them normalised the same way.
    normalizer = model.get_vec_normalize_env() if hasattr(model, "get_vec_normalize_env") else None
    obs = env.reset()
    while not finished.all():
        actions, _ = model.predict(obs if normalizer is None else normalizer.normalize_obs(obs), deterministic=deterministic)
        obs, rewards, dones, infos = env.step(actions)
        active = ~finished
        returns += rewards * active
        lengths += active
        for row in np.flatnonzero(dones & active):
            info = infos[row]
            success[row] = float(info.get("is_success", info.get("success", False)))
        finished |= dones
    env.close()
    # Sub-env e runs task e % T.
    shape = (n_eval_episodes, num_tasks)
    return {
        "success": success.reshape(shape).mean(axis=0),
        "return": returns.reshape(shape).mean(axis=0),
        "length": lengths.reshape(shape).mean(axis=0),
    }
