"""The behaviour mixture of a multi-task model, as a policy that SB3's evaluation code can run.

``model.predict`` is each task's *own* policy (SB3's ``evaluate_policy``, ``EvalCallback`` and
rl-zoo3's ``enjoy`` call it). The algorithms that collect with a mixture (QMP, QMP multi-head,
QMP-Uniform, QMP-Domain) also have a second policy worth evaluating: the mixture itself. The
authors' code evaluates it by default (task i's critic scores every policy's mean action, the
winner's mean action is executed). :class:`MixturePolicy` exposes it with SB3's ``predict``
signature::

    from stable_baselines3.common.evaluation import evaluate_policy

    evaluate_policy(model.mixture_policy(), env, n_eval_episodes=10)  # the Q-switch mixture
    evaluate_policy(model, env, n_eval_episodes=10)                   # each task's own policy
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy

from sb3_qmp.common.collectors import Collector


class MixturePolicy:
    """A model's data-collection mixture as a policy: SB3's ``predict(observation, state, episode_start,
    deterministic)``, usable with ``evaluate_policy``.

    Each observation row is routed by its one-hot task suffix to its task's row of the mixture. It runs
    on a copy of the model's collector (:meth:`~sb3_qmp.common.collectors.Collector.evaluation_copy`):
    the same settings (``score``, ``critic_reduce``, ``commit_steps``, ``switch_margin``, ``own_prob``,
    a fixed matrix), but its own commitment state and random generator, so evaluating never changes
    what the model collects, its ``selection_counts`` or torch's random stream. It always reads the
    model's current networks. The mixture warm-up (``warmup_steps``) is a collection schedule and does
    not apply here.

    * ``deterministic=True`` (the authors' evaluation): every policy acts with its mean action; the
      Q-switch scores the means and executes the winner's mean. Uniform and Domain still draw the
      acting policy at random (from this view's generator) and execute its mean.
    * ``deterministic=False``: the collector's behaviour (the chosen policy's sampled action).

    Commitments (``commit_steps > 1``) are per observation row and end at episode starts: pass
    ``episode_start`` (``evaluate_policy`` does) or call :meth:`reset`.

    :param policy: the model's multi-task policy (its networks are read live: always the current weights).
    :param collector: the mixture's collector, its own copy (``model.collector.evaluation_copy(seed)``);
        ``model.mixture_policy(seed)`` builds both.
    """

    def __init__(self, policy: BasePolicy, collector: Collector) -> None:
        self.policy = policy
        self.collector = collector

    @property
    def observation_space(self) -> spaces.Space:
        """The policy's observation space (base observation + one-hot task suffix)."""
        return self.policy.observation_space

    @property
    def action_space(self) -> spaces.Space:
        """The policy's action space."""
        return self.policy.action_space

    def reset(self, episode_start: np.ndarray | None = None) -> None:
        """End the commitments of the rows whose episode starts (all rows if ``None``).

        :param episode_start: boolean ``(N,)``, True for rows whose observation starts an episode.
        """
        self.collector.episode_starts(episode_start)

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """The mixture's action for every observation row (SB3's ``predict`` signature).

        :param observation: one observation or a batch ``(N, D + T)`` (with the one-hot task suffix).
        :param state: unused (no recurrent state); returned unchanged.
        :param episode_start: rows whose observation starts an episode end their commitments first.
        :param deterministic: execute the chosen policy's mean action (see the class docstring).
        :return: the actions (in the env's action bounds) and ``state``.
        """
        policy: Any = self.policy
        policy.set_training_mode(False)
        obs_tensor, vectorized = policy.obs_to_tensor(observation)
        if episode_start is not None:
            rows = obs_tensor.shape[0]  # type: ignore[union-attr]
            if np.asarray(episode_start).reshape(-1).shape[0] != rows:
                raise ValueError(
                    f"episode_start has {np.asarray(episode_start).reshape(-1).shape[0]} entries for {rows} observation "
                    "rows: give one flag per row (SB3's evaluate_policy passes the VecEnv's dones)."
                )
            self.reset(episode_start)
        with th.no_grad():
            features, tasks = policy.split_obs(obs_tensor.float())  # type: ignore[union-attr]
            actions, _ = self.collector.select(policy, features, tasks, deterministic=deterministic)
        assert isinstance(self.action_space, spaces.Box)
        actions_np = policy.unscale_action(actions.cpu().numpy().reshape((-1, *self.action_space.shape)))
        if not vectorized:
            actions_np = actions_np.squeeze(axis=0)
        return actions_np, state

    def __repr__(self) -> str:
        return f"MixturePolicy({type(self.policy).__name__}, collector={self.collector.name!r})"


def check_behaviour(behaviour: Any) -> str:
    """Validate a ``behaviour`` argument (``"own"`` or ``"mixture"``)."""
    if behaviour not in ("own", "mixture"):
        raise ValueError(
            f"behaviour must be 'own' (each task's own policy) or 'mixture' (the collector's mixture), got {behaviour!r}."
        )
    return str(behaviour)
