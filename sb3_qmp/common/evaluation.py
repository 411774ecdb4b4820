"""Per-task evaluation of multi-task models: evaluation modes and success metrics.

Two **evaluation modes** (the authors' code logs both; the paper does not say which its figures plot):

* ``"own"``: each task's own policy, deterministic mean action (``model.predict``; what SB3's
  evaluation tools run). Every algorithm has it.
* ``"mixture"``: the algorithm's collector, deterministic (``model.mixture_policy()``): for QMP, task
  i's critic scores every policy's mean action and the winner's mean is executed, with the model's
  ``critic_reduce`` and commitment settings. This is the authors' *default* evaluation key. Only the
  algorithms that collect with a mixture have it (``model.has_mixture``: QMP, QMP multi-head,
  QMP-Uniform, QMP-Domain).

Two **success metrics**, read from the ``info`` of an episode's last step:

* strict: ``info["is_success"]`` (Reacher: all three stages done; Meta-World: success at the last step);
* any-step: ``info["success_any_step"]``, the env's success flag was set at *some* step of the episode.
  This is what the authors counted (and so the one comparable with the paper's success rates); envs
  that do not report it fall back to the strict one.

``info["stages_completed"]`` is recorded too where the env reports it (Multistage Reacher).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sb3_qmp.common.vec_env import make_multitask_vec_env

EVAL_MODES: tuple[str, ...] = ("own", "mixture")
# Prefix of each mode's result names: the own-policy names are the historical, unprefixed ones.
MODE_PREFIX: dict[str, str] = {"own": "", "mixture": "mixture_"}


def check_eval_modes(eval_modes: str | Sequence[str]) -> str | tuple[str, ...]:
    """Validate an ``eval_modes`` argument without a model: ``"auto"`` or distinct modes including ``"own"``.

    :param eval_modes: ``"auto"``, one mode name or a sequence of modes.
    :return: ``"auto"`` or the modes, in the order of :data:`EVAL_MODES`.
    """
    if isinstance(eval_modes, str) and eval_modes == "auto":
        return "auto"
    modes = (eval_modes,) if isinstance(eval_modes, str) else tuple(eval_modes)
    if any(mode not in EVAL_MODES for mode in modes) or len(set(modes)) != len(modes) or "own" not in modes:
        raise ValueError(
            f"eval_modes must be 'auto' or distinct modes out of {EVAL_MODES} including 'own' (the own-policy "
            f"numbers are the main keys of the logs and files), e.g. ('own', 'mixture'); got {eval_modes!r}."
        )
    return tuple(mode for mode in EVAL_MODES if mode in modes)


def resolve_eval_modes(model: Any, eval_modes: str | Sequence[str] = "auto") -> tuple[str, ...]:
    """The evaluation modes to run for ``model``.

    :param model: the model (``model.has_mixture`` says whether it has a mixture).
    :param eval_modes: ``"auto"`` (``("own", "mixture")`` for models with a mixture, ``("own",)`` for the
        rest) or modes that include ``"own"`` (see :func:`check_eval_modes`).
    :return: the modes, own first.
    """
    modes = check_eval_modes(eval_modes)
    has_mixture = bool(getattr(model, "has_mixture", False))
    if modes == "auto":
        return EVAL_MODES if has_mixture else ("own",)
    if "mixture" in modes and not has_mixture:
        raise ValueError(
            f"eval_modes asks for the mixture evaluation but {type(model).__name__} has no mixture: it collects "
            "with each task's own policy (model.has_mixture is False). Use eval_modes='auto' or ('own',)."
        )
    return tuple(modes)


def episode_outcome(info: dict[str, Any]) -> tuple[float, float, float]:
    """Strict success, any-step success and stages completed (``nan`` if unreported) of a finished
    episode, from its last step's ``info``.

    :param info: the ``info`` of the episode's last step.
    """
    strict = float(bool(info.get("is_success", info.get("success", False))))
    any_step = float(bool(info.get("success_any_step", strict)))
    stages = float(info["stages_completed"]) if info.get("stages_completed") is not None else float("nan")
    return strict, any_step, stages


def evaluate_per_task(
    model: Any,
    env_id: str,
    n_eval_episodes: int = 10,
    deterministic: bool = True,
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    eval_modes: str | Sequence[str] = "auto",
) -> dict[str, np.ndarray]:
    """Run ``n_eval_episodes`` episodes of every task in every evaluation mode; per-task means.

    Each mode runs on a fresh env built with the same seed, so the own policies and the mixture start
    from the same states.

    :param model: a trained model whose ``predict`` routes rows by the one-hot task suffix.
    :param env_id: registered multi-task env id.
    :param n_eval_episodes: episodes per task (run in parallel, one sub-env each).
    :param deterministic: deterministic actions (mean actions; the paper's evaluation).
    :param seed: evaluation env seed (``None``: one drawn at random, shared by the modes).
    :param env_kwargs: keyword arguments for the env.
    :param eval_modes: ``"auto"`` (own, plus the mixture for models that have one) or e.g. ``("own",)``.
    :return: per-task means, each ``(T,)``: ``success`` (strict), ``success_any_step`` (the paper's),
        ``return``, ``length`` and, where the env reports it, ``stages_completed``, for the own policies;
        the same names prefixed with ``mixture_`` for the mixture; and ``eval_modes`` (the modes run).
    """
    if n_eval_episodes < 1:
        raise ValueError(f"n_eval_episodes must be >= 1, got {n_eval_episodes}.")
    modes = resolve_eval_modes(model, eval_modes)
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31 - 1))
    results: dict[str, np.ndarray] = {"eval_modes": np.array(modes)}
    for mode in modes:
        env = make_multitask_vec_env(env_id, n_envs_per_task=n_eval_episodes, seed=seed, env_kwargs=env_kwargs)
        try:
            means = _run_one_episode_per_row(model, env, mode, n_eval_episodes, deterministic, seed)
        finally:
            env.close()
        results.update({MODE_PREFIX[mode] + key: value for key, value in means.items()})
    return results


def _run_one_episode_per_row(
    model: Any, env: Any, mode: str, n_eval_episodes: int, deterministic: bool, seed: int
) -> dict[str, np.ndarray]:
    """One episode on every row of ``env`` (row e runs task e % T) in ``mode``; per-task means."""
    n_rows = env.num_envs
    num_tasks = n_rows // n_eval_episodes
    view = model.mixture_policy(seed=seed) if mode == "mixture" else None
    returns, lengths = np.zeros(n_rows), np.zeros(n_rows)
    outcomes = np.full((n_rows, 3), np.nan)
    finished = np.zeros(n_rows, dtype=bool)
    starts = np.ones(n_rows, dtype=bool)
    # A model trained on normalised observations (VecNormalizePerTask) acts on them normalised the same way.
    normalizer = model.get_vec_normalize_env() if hasattr(model, "get_vec_normalize_env") else None
    obs = env.reset()
    while not finished.all():
        model_obs = obs if normalizer is None else normalizer.normalize_obs(obs)
        if view is None:
            actions, _ = model.predict(model_obs, deterministic=deterministic)
        else:
            actions, _ = view.predict(model_obs, episode_start=starts, deterministic=deterministic)
        obs, rewards, dones, infos = env.step(actions)
        active = ~finished
        returns += rewards * active
        lengths += active
        for row in np.flatnonzero(dones & active):
            outcomes[row] = episode_outcome(infos[row])
        finished |= dones
        starts = dones
    shape = (n_eval_episodes, num_tasks)  # sub-env e runs task e % T
    means = {
        "success": outcomes[:, 0].reshape(shape).mean(axis=0),
        "success_any_step": outcomes[:, 1].reshape(shape).mean(axis=0),
        "return": returns.reshape(shape).mean(axis=0),
        "length": lengths.reshape(shape).mean(axis=0),
    }
    if not np.isnan(outcomes[:, 2]).all():
        means["stages_completed"] = outcomes[:, 2].reshape(shape).mean(axis=0)
    return means
