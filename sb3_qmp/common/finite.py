"""Refusing non-finite updates: one task's nan or inf must not reach any network's weights."""

from __future__ import annotations

from typing import Any

import torch as th


class NonFiniteUpdateError(FloatingPointError):
    """A gradient step had a non-finite loss. Raised before the optimizers that would have spread it stepped;
    :attr:`tasks` are the tasks whose sampled data (or weights) hold the nan/inf."""

    def __init__(self, message: str, tasks: list[int], n_update: int) -> None:
        super().__init__(message)
        self.tasks = tasks
        self.n_update = n_update


def tasks_with_non_finite_data(data: Any, num_tasks: int) -> list[int]:
    """Tasks of the sampled transitions whose reward, observation or next observation is nan/inf (the task is
    read from the observation's one-hot suffix, which the package writes and checks when storing)."""
    obs, next_obs = data.observations, data.next_observations
    rewards = data.rewards.reshape(obs.shape[:-1])
    bad = ~th.isfinite(rewards) | ~th.isfinite(obs[..., :-num_tasks]).all(dim=-1) | ~th.isfinite(next_obs).all(dim=-1)
    if not bool(bad.any()):
        return []
    return sorted({int(t) for t in obs[bad][:, -num_tasks:].argmax(dim=-1).cpu()})


def check_finite_update(
    losses: dict[str, th.Tensor],
    n_update: int,
    algorithm: str,
    data: Any = None,
    num_tasks: int | None = None,
) -> None:
    """Raise :class:`NonFiniteUpdateError` if any loss is nan or inf (one reduction and one host sync).

    :param losses: the losses about to be back-propagated, by name (per task ``(T,)``, per row, or scalars).
    :param n_update: the gradient step's number (``model._n_updates`` plus its index in this ``train`` call).
    :param algorithm: the algorithm's name, for the message.
    :param data: the sampled batch (to name the tasks whose data is not finite).
    :param num_tasks: number of tasks (the length of the observations' one-hot suffix).
    """
    if bool(th.stack([th.isfinite(v.detach()).all() for v in losses.values()]).all()):
        return
    names = [name for name, v in losses.items() if not bool(th.isfinite(v.detach()).all())]
    tasks = tasks_with_non_finite_data(data, num_tasks) if data is not None and num_tasks else []
    if tasks:
        cause = (
            f"task(s) {tasks} sampled nan/inf rewards or observations from their replay buffer: look at those tasks' "
            "envs (SB3's VecCheckNan(env, raise_exception=True) stops at the step that produces one)"
        )
    else:
        per_task = [losses[name] for name in names if losses[name].dim() == 1 and losses[name].shape[0] == num_tasks]
        tasks = sorted({int(t) for v in per_task for t in (~th.isfinite(v.detach())).nonzero().flatten().cpu()})
        cause = (
            f"the sampled data is finite, so the weights of task(s) {tasks or 'unknown'} are not (were they loaded "
            "from a file, or set by hand?)"
        )
    raise NonFiniteUpdateError(
        f"{algorithm}: non-finite {' and '.join(names)} at gradient step {n_update}; {cause}. No optimizer has "
        "stepped on it: every task's weights are as they were before this gradient step's failing update.",
        tasks,
        n_update,
    )


__all__ = ["NonFiniteUpdateError", "check_finite_update", "tasks_with_non_finite_data"]
