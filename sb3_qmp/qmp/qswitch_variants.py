"""Variants of the Q-switch beyond the paper (see docs/commitment.md): a commitment that ends early when
another proposal becomes clearly better, and the adaptive switch that shares only on a confident advantage.

Both are options of the ``"qswitch"`` collector (``collector_kwargs=dict(switch_margin=...)`` or
``dict(adaptive=True, ...)``), which :func:`qswitch_variant` maps to the class that implements them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th

from sb3_qmp.common.collectors import Collector
from sb3_qmp.common.interfaces import MixtureNetworks, Proposals
from sb3_qmp.qmp.qswitch import QSwitchCollector, argmax_or_own, finite_proposals

ADAPTIVE_OPTIONS = ("uncertainty_scale", "uncertainty", "adaptive_keep")


class MarginQSwitchCollector(QSwitchCollector):
    """The Q-switch with commitment (``commit_steps > 1``) that drops a commitment early when another
    policy's proposal beats the committed one's by more than ``switch_margin`` under the row's critic.
    Committed rows are re-scored every step; windows that ``own_prob`` gave to the own policy are kept.

    :param num_tasks: number of tasks T.
    :param switch_margin: the Q-value margin (``>= 0``).
    :param kwargs: the options of :class:`~sb3_qmp.qmp.qswitch.QSwitchCollector` (``commit_steps > 1``).
    """

    scores_every_step = True

    def __init__(self, num_tasks: int, switch_margin: float, **kwargs: Any) -> None:
        super().__init__(num_tasks, **kwargs)
        if isinstance(switch_margin, bool) or not (isinstance(switch_margin, (int, float)) and switch_margin >= 0):
            # (nan fails this test too: a nan margin would never end a commitment)
            raise ValueError(f"switch_margin must be a number >= 0 (None in collector_kwargs: none), got {switch_margin!r}.")
        if self.commit_steps == 1:
            raise ValueError(
                f"switch_margin={switch_margin!r} has no effect with commit_steps=1 (every step decides anew): "
                "set commit_steps > 1, or leave switch_margin=None."
            )
        self.switch_margin = float(switch_margin)
        self._scores: th.Tensor | None = None  # this step's scores, shared by _switch_early and _decide

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_scores": None}  # a step's scores (perhaps on a GPU) are not saved

    def _switch_early(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> th.Tensor | None:
        self._scores = None
        if proposals is None:
            return None
        assert self._choice is not None
        self._scores = self.scores(policy, features, tasks, proposals)
        committed = self._scores.gather(1, self._choice.to(features.device).unsqueeze(1)).squeeze(1)
        # A commitment to a policy whose proposal stopped being finite ends at once.
        return (((self._scores.max(dim=1).values - committed) > self.switch_margin) | ~th.isfinite(committed)).cpu()

    def _decide(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> th.Tensor:
        if self._scores is None:
            return super()._decide(policy, features, tasks, proposals)
        return argmax_or_own(self._scores, tasks)


class AdaptiveQSwitchCollector(QSwitchCollector):
    """The adaptive Q-switch: share only when another proposal's advantage exceeds the critics' disagreement,
    and keep a shared behaviour while that advantage lasts.

    For a row of task ``i`` at state ``s``, with proposals ``a_j`` and the score ``Q_i`` set by ``critic_reduce``,
    the *advantage* of policy ``j`` is ``A_j = Q_i(s, a_j) - Q_i(s, a_i)``; its *uncertainty* ``U_j`` is the
    spread (max - min) of task ``i``'s C critics: with ``uncertainty="value"`` the larger of their spreads at
    ``a_i`` and at ``a_j``, with ``"advantage"`` their spread on ``A_j`` itself. ``j != i`` is *confident* when
    ``A_j > uncertainty_scale * U_j``. A deciding row acts with the best-scoring of its own policy and the
    confident ones (exact ties go to the own policy). With ``adaptive_keep`` a row acting with another policy
    keeps it, without deciding, while it stays confident. ``own_prob`` applies at decisions.

    ``uncertainty_scale=0, adaptive_keep=False`` is the plain per-step switch; a large scale tends to the
    own-policy collector wherever the critics disagree at all.

    :param num_tasks: number of tasks T.
    :param uncertainty_scale: ``kappa >= 0``, the advantage needed per unit of critic disagreement.
    :param uncertainty: ``"value"`` or ``"advantage"``.
    :param adaptive_keep: keep a shared behaviour while it stays confident.
    :param kwargs: ``score``, ``critic_reduce``, ``own_prob``, ``warmup_steps`` (no ``commit_steps``).
    """

    def __init__(
        self,
        num_tasks: int,
        uncertainty_scale: float | None = 1.0,
        uncertainty: str | None = "value",
        adaptive_keep: bool | None = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_tasks, **kwargs)
        if self.commit_steps != 1:
            raise ValueError(
                f"adaptive=True replaces commit_steps (got {self.commit_steps}): a shared behaviour is kept while its "
                "advantage lasts (adaptive_keep). Leave commit_steps=1."
            )
        scale = 1.0 if uncertainty_scale is None else uncertainty_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) or not 0 <= scale < np.inf:
            raise ValueError(
                "uncertainty_scale must be a finite number >= 0 (0 = share on any positive advantage), "
                f"got {uncertainty_scale!r}."
            )
        if uncertainty not in ("value", "advantage", None):
            raise ValueError(f"uncertainty must be 'value' or 'advantage', got {uncertainty!r}.")
        if not isinstance(adaptive_keep, (bool, np.bool_, type(None))):
            raise ValueError(f"adaptive_keep must be True or False, got {adaptive_keep!r}.")
        self.uncertainty_scale = float(scale)
        self.uncertainty = uncertainty or "value"
        self.adaptive_keep = True if adaptive_keep is None else bool(adaptive_keep)

    def confident_advantages(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals
    ) -> tuple[th.Tensor, th.Tensor]:
        """Scores ``(N, T)`` (``critic_reduce``) and which policies are *confident* ``(N, T)`` (never the own one).

        :param policy: the multi-task policy (its critic needs ``score_critics`` and ``n_critics >= 2``).
        :param features: network input ``(N, D)``.
        :param tasks: task of every row ``(N,)``.
        :param proposals: every policy's proposals, ``(T, N, A)`` each.
        """
        n_critics = getattr(policy.critic, "n_critics", 1)
        if n_critics < 2:
            raise ValueError(
                f"The adaptive Q-switch measures uncertainty as the disagreement of a task's critics, but this "
                f"policy has n_critics={n_critics}. Use n_critics >= 2 (the SAC default) or adaptive=False."
            )
        q = policy.critic.score_critics(features, self.candidates(proposals), tasks)  # (C, N, T)
        scores = q[0] if self.critic_reduce == "q1" else q.min(dim=0).values
        own = tasks.unsqueeze(1)  # (N, 1)
        advantage = scores - scores.gather(1, own)
        if self.uncertainty == "value":
            spread = q.max(dim=0).values - q.min(dim=0).values  # (N, T) critics' disagreement at each proposal
            uncertainty = th.maximum(spread, spread.gather(1, own))
        else:
            per_critic = q - q.gather(2, own.unsqueeze(0).expand(q.shape[0], -1, -1))  # (C, N, T) advantages
            uncertainty = per_critic.max(dim=0).values - per_critic.min(dim=0).values
        confident = (advantage > self.uncertainty_scale * uncertainty) & finite_proposals(proposals)
        return scores, confident.scatter_(1, own, False)

    def select(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, deterministic: bool = False
    ) -> tuple[th.Tensor, th.Tensor]:
        previous = self._rows(features.shape[0]).to(features.device)
        proposals = None
        decide = th.ones(features.shape[0], dtype=th.bool, device=features.device)
        if self.own_prob >= 1.0:  # every decision is the own policy: no proposals, no critic
            chosen, forced = tasks, th.ones_like(decide)
        else:
            proposals = self._propose(policy, features, deterministic)
            scores, confident = self.confident_advantages(policy, features, tasks, proposals)
            if self.adaptive_keep:
                # _steps_left > 0 marks a row holding another policy's behaviour (no fixed length here).
                holding = (self._steps_left > 0).to(features.device) & (previous != tasks)
                decide = ~(holding & confident.gather(1, previous.unsqueeze(1)).squeeze(1))
            allowed = confident.scatter(1, tasks.unsqueeze(1), True)  # the own policy is always allowed
            decision, forced = self._with_own_prob(scores.masked_fill(~allowed, -th.inf).argmax(dim=1), tasks)
            chosen = th.where(decide, decision, previous)
        holds = (chosen != tasks).long() if self.adaptive_keep else 0
        self._renew(decide.cpu(), chosen, forced, holds)
        self._advance(tasks)
        return self._act(policy, features, tasks, chosen, proposals, deterministic), chosen


def qswitch_variant(base: type[QSwitchCollector], options: dict[str, Any]) -> type[Collector]:
    """The Q-switch class that implements ``options`` (``collector_kwargs`` of ``"qswitch"``), which loses the
    options that only chose the class (``adaptive``, a ``switch_margin`` or adaptive option left at ``None``).
    A subclass given as the class (a variant, or one of your own) is taken as given.

    :param base: the Q-switch class asked for.
    :param options: the collector's options (modified in place).
    """
    if base is not QSwitchCollector:
        if "adaptive" in options:
            raise ValueError(
                f"adaptive= chooses a variant of collector='qswitch'; collector={base.__name__} is a class already: "
                "leave adaptive out (or pass collector='qswitch')."
            )
        for name in ("switch_margin", *ADAPTIVE_OPTIONS):  # None: the option is off (as a YAML may hold it)
            if name in options and options[name] is None:
                options.pop(name)
        return base
    adaptive = options.pop("adaptive", False)
    if not isinstance(adaptive, (bool, np.bool_)):
        raise ValueError(f"adaptive must be True or False, got {adaptive!r}.")
    if adaptive:
        margin = options.pop("switch_margin", None)
        if margin is not None and options.get("commit_steps", 1) == 1:
            raise ValueError("adaptive=True re-scores every step itself: leave switch_margin=None.")
        return AdaptiveQSwitchCollector  # (which refuses commit_steps > 1 by name)
    given = [name for name in ADAPTIVE_OPTIONS if options.get(name) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} only apply to the adaptive switch: add adaptive=True.")
    for name in ADAPTIVE_OPTIONS:
        options.pop(name, None)
    if options.get("switch_margin") is not None:
        return MarginQSwitchCollector
    options.pop("switch_margin", None)
    return base
