"""Per-task evaluation of multi-task models: the one episode runner, its result type and its vocabulary.

Two **evaluation modes** (the authors' code logs both; the paper does not say which its figures plot):

* ``"own"``: each task's own policy, deterministic mean action (``model.predict``; what SB3's
  evaluation tools run). Every algorithm has it.
* ``"mixture"``: the algorithm's collector, deterministic (``model.mixture_policy()``): for QMP, task
  i's critic scores every policy's mean action and the winner's mean is executed, with the model's
  collector settings. This is the authors' *default* evaluation key. Only the algorithms that collect
  with a mixture have it (``model.has_mixture``: QMP, QMP multi-head, QMP-Uniform, QMP-Domain).

**Metrics**, per episode, from the ``info`` of its last step (:data:`METRICS`, with their npz keys):

* ``success``: strict, ``info["is_success"]`` (Reacher: all three stages done; Meta-World: success at
  the last step);
* ``success_any_step``: the env's success flag was set at *some* step of the episode, what the authors
  counted (the one comparable with the paper's success rates); envs that do not report it fall back to
  the strict one;
* ``return``, ``length``, and ``stages`` (``info["stages_completed"]``, where the env reports it).

:func:`run_episodes` runs them for :class:`~sb3_qmp.common.callbacks.PerTaskEvalCallback` (which schedules,
logs and writes) and :func:`evaluate_per_task` (a one-off evaluation of a model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sb3_qmp.common.vec_env import make_multitask_vec_env

EVAL_MODES: tuple[str, ...] = ("own", "mixture")
# Metric -> key of its per-episode array in evaluations_per_task.npz (the file format, kept so that every file
# written so far still reads); the mixture's keys carry the "mixture_" prefix.
METRICS: dict[str, str] = {
    "success": "successes",
    "success_any_step": "successes_any_step",
    "return": "returns",
    "length": "lengths",
    "stages": "stages_completed",
}
SUCCESS_METRICS: tuple[str, ...] = ("success_any_step", "success")
Episodes = dict[str, np.ndarray]  # metric -> (T, episodes per task); "stages" only where the env reports it


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; choose one of {list(METRICS)}.")


def check_mode(mode: str) -> None:
    if mode not in EVAL_MODES:
        raise ValueError(f"Unknown evaluation mode {mode!r}; choose one of {list(EVAL_MODES)}.")


def mode_prefix(mode: str) -> str:
    """The prefix of a mode's names (keys, results): none for the own policies, ``mixture_`` for the mixture."""
    check_mode(mode)
    return "" if mode == "own" else f"{mode}_"


def npz_key(metric: str, mode: str = "own") -> str:
    """The ``evaluations_per_task.npz`` key of ``metric`` in ``mode``."""
    check_metric(metric)
    return mode_prefix(mode) + METRICS[metric]


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


def empty_episodes(num_tasks: int, n_episodes: int) -> Episodes:
    """Results to be filled by :func:`run_episodes`: ``nan`` for every metric, ``(T, n_episodes)``."""
    return {metric: np.full((num_tasks, n_episodes), np.nan) for metric in METRICS}


def acting_policy(model: Any, mode: str, seed: int | None = None) -> Any:
    """What acts in ``mode``: the model (each task's own policy) or its mixture, on its own copy of the collector.

    :param model: the model.
    :param mode: ``"own"`` or ``"mixture"``.
    :param seed: seed of the mixture's random choices.
    """
    check_mode(mode)
    return model if mode == "own" else model.mixture_policy(seed=seed)


def run_episodes(
    policy: Any,
    env: Any,
    row_tasks: Sequence[int | None],
    episodes_per_row: int,
    into: Episodes,
    deterministic: bool = True,
    normalize_obs: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Episodes:
    """Run ``episodes_per_row`` episodes on every row of ``env`` whose task is set.

    Episode ``k`` of the ``r``-th row of task ``t`` fills column ``r * episodes_per_row + k`` of row ``t`` of
    every metric in ``into``; rows whose task is ``None`` run but are not recorded.

    :param policy: what acts (:func:`acting_policy`): ``predict(obs, episode_start=..., deterministic=...)``.
    :param env: a VecEnv whose rows already run ``row_tasks`` (and are reset by this function).
    :param row_tasks: the task of every row (``None``: not recorded).
    :param episodes_per_row: episodes recorded per row.
    :param into: the results to fill (:func:`empty_episodes`).
    :param deterministic: deterministic actions (the mixture executes the chosen policy's mean action).
    :param normalize_obs: applied to the env's observations before the model sees them (a model trained on
        normalised observations evaluated on a raw env).
    :return: ``into``.
    """
    n_rows = env.num_envs
    active = np.array([task is not None for task in row_tasks])
    # A row's rank among the recorded rows of its task orders their episodes.
    rank: list[int] = []
    rows_of: dict[int | None, int] = {}  # rows seen per task
    for task in row_tasks:
        rank.append(rows_of.get(task, 0))
        rows_of[task] = rank[-1] + 1
    if max((n for task, n in rows_of.items() if task is not None), default=0) * episodes_per_row > into["return"].shape[1]:
        raise ValueError(f"`into` holds {into['return'].shape[1]} episodes per task: too few for these rows.")
    done_count = np.zeros(n_rows, dtype=np.int64)
    ep_return, ep_len = np.zeros(n_rows), np.zeros(n_rows, dtype=np.int64)
    starts = np.ones(n_rows, dtype=bool)
    obs = env.reset()
    while (done_count[active] < episodes_per_row).any():
        model_obs = obs if normalize_obs is None else normalize_obs(obs)
        actions, _ = policy.predict(model_obs, episode_start=starts, deterministic=deterministic)
        obs, rewards, dones, infos = env.step(actions)
        starts = dones
        ep_return += rewards
        ep_len += 1
        for row in map(int, np.flatnonzero(dones)):
            task = row_tasks[row]
            if task is not None and done_count[row] < episodes_per_row:
                info = infos[row]
                if info.get("task_id", task) != task:
                    raise RuntimeError(
                        f"Sub-env {row} of the eval env ran task {info['task_id']} instead of task {task}: "
                        "something outside the evaluation reassigns its tasks. Pass an eval env (or env id) whose "
                        "tasks only the evaluation sets."
                    )
                column = rank[row] * episodes_per_row + done_count[row]
                episode = info.get("episode")  # Monitor's totals are the unnormalised ones, when available
                into["return"][task, column] = episode["r"] if episode is not None else ep_return[row]
                into["length"][task, column] = episode["l"] if episode is not None else ep_len[row]
                outcome = episode_outcome(info)
                into["success"][task, column], into["success_any_step"][task, column] = outcome[:2]
                into["stages"][task, column] = outcome[2]
                done_count[row] += 1
            ep_return[row], ep_len[row] = 0.0, 0
    return into


def reported(episodes: Episodes) -> Episodes:
    """``episodes`` as written to files: lengths as integers, no ``stages`` where the env reports none."""
    result = {metric: values for metric, values in episodes.items() if metric != "stages" or not np.isnan(values).all()}
    if np.isnan(result["length"]).any():
        raise ValueError("Some task's episodes were not run: every task needs its rows in run_episodes.")
    result["length"] = result["length"].astype(np.int64)
    return result


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
    :return: per-task means of every metric, each ``(T,)`` (``stages`` where the env reports it), for the own
        policies; the same names prefixed with ``mixture_`` for the mixture; and ``eval_modes`` (the modes run).
    """
    if n_eval_episodes < 1:
        raise ValueError(f"n_eval_episodes must be >= 1, got {n_eval_episodes}.")
    modes = resolve_eval_modes(model, eval_modes)
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31 - 1))
    # A model trained on normalised observations (VecNormalizePerTask) acts on them normalised the same way.
    normalizer = model.get_vec_normalize_env() if hasattr(model, "get_vec_normalize_env") else None
    results: dict[str, np.ndarray] = {"eval_modes": np.array(modes)}
    for mode in modes:
        env = make_multitask_vec_env(env_id, n_envs_per_task=n_eval_episodes, seed=seed, env_kwargs=env_kwargs)
        num_tasks = env.num_envs // n_eval_episodes
        try:
            episodes = run_episodes(
                acting_policy(model, mode, seed),
                env,
                [row % num_tasks for row in range(env.num_envs)],  # sub-env e runs task e % T
                1,
                empty_episodes(num_tasks, n_eval_episodes),
                deterministic,
                None if normalizer is None else normalizer.normalize_obs,
            )
        finally:
            env.close()
        results.update({mode_prefix(mode) + metric: values.mean(axis=1) for metric, values in reported(episodes).items()})
    return results
