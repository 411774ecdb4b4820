"""Data-collection (behaviour) policies for multi-task SAC.

A collector decides, for every env row collecting data for task ``i``, which task's policy
``j`` acts. Whatever it picks, the transition is stored in task ``i``'s buffer with task
``i``'s reward; only the behaviour changes.

===========  ==================  =========================================================
name         paper name          choice of ``j`` for a row of task ``i``
===========  ==================  =========================================================
``own``      Separated           ``j = i``
``qswitch``  QMP                 ``argmax_j Q_i(s, a_j)`` over every policy's proposal
``uniform``  QMP-Uniform         uniform over the T policies
``fixed``    QMP-Domain          drawn from row ``i`` of a fixed probability matrix
===========  ==================  =========================================================

Every mixture collector also supports *temporal commitment* (``commit_steps=k``: a choice is
kept for k steps, or until the episode ends), an *own-policy probability* (``own_prob``:
each decision picks the row's own policy with that probability) and a *mixture warm-up*
(``warmup_steps``: every row acts with its own policy until the model has taken that many env
steps; the paper's "mixture warmup period"). ``k=1, own_prob=0, warmup_steps=0`` is the
paper's per-step mixture. The Q-switch also has an *adaptive* mode (``adaptive=True``): it shares
only when another proposal's advantage under the row's critic exceeds the critics' own disagreement,
and keeps a shared behaviour while that advantage lasts (see :class:`QSwitchCollector`).

Every mixture collector counts, per task, the steps on which another task's policy acted
(:meth:`Collector.share_fraction`) and the length of every *shared behaviour*: a maximal run of
consecutive steps of one episode on which the same other policy acted (:meth:`Collector.mean_shared_length`).

``select(..., deterministic=True)`` is the collector's *deterministic* behaviour, used to evaluate
the mixture as the authors did: every policy acts with its mean action (so the Q-switch scores the
policies' means whatever ``score`` says, and the winner's mean is executed), while the choice itself
follows the collector's rules (Q-switch argmax, commitment, switch margin, own-policy probability;
Uniform and Domain still draw the policy). Evaluation runs on :meth:`Collector.evaluation_copy`, a
copy with its own commitment state, statistics and random generator, so it never disturbs collection.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import torch as th

from sb3_qmp.common.interfaces import MixtureNetworks, Proposals
from sb3_qmp.common.presets import MIXTURE_PRESETS


class Collector:
    """Base class: holds the per-env-row commitment state and the decision protocol.

    :param num_tasks: number of tasks T.
    :param commit_steps: how many steps a decision is kept (``1`` re-decides every step).
    :param own_prob: probability that a decision picks the row's own task policy.
    :param warmup_steps: env steps (all tasks together, counted like ``learning_starts``, from the
        start of training) during which every row acts with its own policy before the mixture starts.
    """

    name: ClassVar[str] = "base"
    needs_proposals: ClassVar[bool] = False
    # Per-task statistics of who acted for whom (saved and restored with the model).
    STATISTICS: ClassVar[tuple[str, ...]] = (
        "window_len_sum",
        "window_count",
        "step_count",
        "shared_step_count",
        "shared_len_sum",
        "shared_count",
    )
    scores_every_step: bool = False  # True when committed rows are re-scored every step (switch_margin)

    def __init__(self, num_tasks: int, commit_steps: int = 1, own_prob: float = 0.0, warmup_steps: int = 0) -> None:
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}.")
        if not isinstance(commit_steps, (int, np.integer)) or commit_steps < 1:
            raise ValueError(f"commit_steps must be an int >= 1 (1 = re-decide every step), got {commit_steps!r}.")
        if not 0.0 <= own_prob <= 1.0:
            raise ValueError(f"own_prob is a probability and must lie in [0, 1], got {own_prob!r}.")
        if not isinstance(warmup_steps, (int, np.integer)) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0 (0 = mix from the first step), got {warmup_steps!r}.")
        self.num_tasks = num_tasks
        self.commit_steps = int(commit_steps)
        self.own_prob = float(own_prob)
        self.warmup_steps = int(warmup_steps)
        self._choice: th.Tensor | None = None
        self._forced_own = th.zeros(0, dtype=th.bool)  # rows whose current window own_prob forced
        self._steps_left = th.zeros(0, dtype=th.long)
        self._window_len = th.zeros(0, dtype=th.long)
        self._row_task = th.zeros(0, dtype=th.long)
        # Finished commitment windows: total length and count per task.
        self.window_len_sum = np.zeros(num_tasks, dtype=np.float64)
        self.window_count = np.zeros(num_tasks, dtype=np.int64)
        # Sharing: steps per task, steps on which another policy acted, and finished shared behaviours.
        self.step_count = np.zeros(num_tasks, dtype=np.int64)
        self.shared_step_count = np.zeros(num_tasks, dtype=np.int64)
        self.shared_len_sum = np.zeros(num_tasks, dtype=np.float64)
        self.shared_count = np.zeros(num_tasks, dtype=np.int64)
        self._run_policy = np.zeros(0, dtype=np.int64)  # the other policy of a row's open shared run (-1: none)
        self._run_len = np.zeros(0, dtype=np.int64)
        self._run_task = np.zeros(0, dtype=np.int64)
        # Random choices (own_prob, uniform/fixed draws) use torch's global RNG unless seeded (evaluation copies).
        self._seed: int | None = None
        self._generators: dict[str, th.Generator] = {}

    # -- state ---------------------------------------------------------------------------------
    def reset_state(self, n_envs: int) -> None:
        """Forget all commitments (e.g. when a new VecEnv is set)."""
        self._choice = th.zeros(n_envs, dtype=th.long)
        self._forced_own = th.zeros(n_envs, dtype=th.bool)
        self._steps_left = th.zeros(n_envs, dtype=th.long)
        self._window_len = th.zeros(n_envs, dtype=th.long)
        self._row_task = th.zeros(n_envs, dtype=th.long)
        self._run_policy = np.full(n_envs, -1, dtype=np.int64)
        self._run_len = np.zeros(n_envs, dtype=np.int64)
        self._run_task = np.zeros(n_envs, dtype=np.int64)

    def _close_windows(self, rows: th.Tensor) -> None:
        lengths = self._window_len[rows]
        tasks = self._row_task[rows][lengths > 0].numpy()
        np.add.at(self.window_len_sum, tasks, lengths[lengths > 0].numpy())
        np.add.at(self.window_count, tasks, 1)
        self._window_len[rows] = 0

    def _close_runs(self, ending: np.ndarray) -> None:
        """Record the open shared behaviours of the rows ``ending`` (boolean ``(N,)``) as finished."""
        ending = ending & (self._run_len > 0)
        if ending.any():
            np.add.at(self.shared_len_sum, self._run_task[ending], self._run_len[ending])
            np.add.at(self.shared_count, self._run_task[ending], 1)
            self._run_len[ending] = 0
            self._run_policy[ending] = -1

    def _track_sharing(self, chosen: th.Tensor, tasks: th.Tensor) -> None:
        """Update the sharing statistics with one step's choices (called by every ``select``)."""
        chosen_np, tasks_np = chosen.cpu().numpy(), tasks.cpu().numpy()
        shared = chosen_np != tasks_np
        # A shared behaviour continues while the same other policy acts for the same task.
        continues = shared & (chosen_np == self._run_policy) & (tasks_np == self._run_task)
        self._close_runs(~continues)
        self._run_len = np.where(continues, self._run_len + 1, shared.astype(np.int64))
        self._run_policy = np.where(shared, chosen_np, -1)
        self._run_task = tasks_np
        self.step_count += np.bincount(tasks_np, minlength=self.num_tasks)
        self.shared_step_count += np.bincount(tasks_np[shared], minlength=self.num_tasks)

    def episode_starts(self, starts: np.ndarray | None = None) -> None:
        """End the commitments of the rows whose episode starts (all rows if ``None``); a different number
        of rows than the collector holds state for starts afresh at the next :meth:`select` anyway.

        :param starts: boolean ``(N,)``, True for rows whose next observation starts an episode.
        """
        if self._choice is None:
            return  # nothing committed yet: the next step decides for every row
        if starts is None:
            self.reset_state(self._choice.shape[0])
            return
        starts = np.asarray(starts, dtype=bool).reshape(-1)
        if starts.shape[0] == self._choice.shape[0]:
            self.episode_done(starts)

    def episode_done(self, dones: np.ndarray) -> None:
        """Rows whose episode ended re-decide at their next step."""
        if self._choice is None or not dones.any():
            return
        rows = th.as_tensor(np.flatnonzero(dones))
        self._close_windows(rows)
        self._steps_left[rows] = 0
        self._close_runs(np.asarray(dones, dtype=bool))

    def evaluation_copy(self, seed: int | None = None) -> Collector:
        """A copy with the same settings for evaluating the mixture: fresh commitments and statistics, and
        its own random generator (seeded with ``seed``; ``None``: fresh entropy), so that using it changes
        neither this collector's state nor torch's global random stream.

        :param seed: seed of the copy's random choices.
        """
        clone = copy.deepcopy(self)  # __getstate__ drops the live commitments
        clone._choice = None
        clone.window_len_sum = np.zeros_like(self.window_len_sum)
        clone.window_count = np.zeros_like(self.window_count)
        for name in ("step_count", "shared_step_count", "shared_len_sum", "shared_count"):
            setattr(clone, name, np.zeros_like(getattr(self, name)))
        clone._seed = int(np.random.default_rng(seed).integers(2**62))
        clone._generators = {}
        return clone

    def _generator(self, device: th.device) -> th.Generator | None:
        """This collector's generator on ``device`` (evaluation copies), or ``None``: torch's global RNG
        (collection, as SB3's own sampling)."""
        if self._seed is None:
            return None
        generator = self._generators.get(str(device))
        if generator is None:
            generator = th.Generator(device=device)
            generator.manual_seed(self._seed)
            self._generators[str(device)] = generator
        return generator

    def mean_commitment(self) -> np.ndarray:
        """Mean length of finished commitment windows per task (``nan`` where none finished)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.window_len_sum / self.window_count

    def share_fraction(self) -> np.ndarray:
        """Fraction of each task's steps (through :meth:`select`) on which another task's policy acted
        (``nan`` where a task had no step)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.shared_step_count / self.step_count

    def mean_shared_length(self) -> np.ndarray:
        """Mean length of each task's finished shared behaviours: maximal runs of consecutive steps of one
        episode on which the same other policy acted (``nan`` where none finished)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.shared_len_sum / self.shared_count

    # -- decisions -----------------------------------------------------------------------------
    def _decide(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> th.Tensor:
        """Return the policy index for every row (rows that keep a commitment ignore it)."""
        raise NotImplementedError

    def _switch_early(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> th.Tensor | None:
        """Rows that should drop their commitment before it runs out (``None``: none)."""
        return None

    def select(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, deterministic: bool = False
    ) -> tuple[th.Tensor, th.Tensor]:
        """Actions in ``[-1, 1]`` ``(N, A)`` for every row and the index of the policy that produced each.

        :param policy: the multi-task policy (``policy.actor`` / ``policy.critic`` are used).
        :param features: network input ``(N, D)``.
        :param tasks: task of every row ``(N,)``.
        :param deterministic: every policy acts with its mean action: proposals are scored and executed
            as means (the authors' evaluation of the mixture); ``False`` executes the chosen policy's sample.
        """
        n = features.shape[0]
        if self._choice is None or self._choice.shape[0] != n:
            self.reset_state(n)
        assert self._choice is not None

        # own_prob=1 always picks the own policy: no proposals and no critic are needed at all.
        needs_proposals = self.needs_proposals and self.own_prob < 1.0
        if self.commit_steps == 1:
            proposals = self._propose(policy, features, deterministic) if needs_proposals else None
            # The paper's per-step mixture: every row decides every step (windows of length 1).
            chosen, _ = self._decide_with_own_prob(policy, features, tasks, proposals)
            per_task = np.bincount(tasks.cpu().numpy(), minlength=self.num_tasks)
            self.window_len_sum += per_task
            self.window_count += per_task
        else:
            decide = self._steps_left <= 0
            # Between decisions the committed policies just act: no proposals, no critic (k x cheaper).
            needed = needs_proposals and (self.scores_every_step or bool(decide.any()))
            proposals = self._propose(policy, features, deterministic) if needed else None
            early = self._switch_early(policy, features, tasks, proposals)
            if early is not None:
                # A window that own_prob gave to the own policy is kept: own_prob acts per decision.
                decide |= early & ~self._forced_own
            if bool(decide.any()):
                choice, forced = self._decide_with_own_prob(policy, features, tasks, proposals)
                self._close_windows(decide.nonzero().squeeze(1))
                self._choice = th.where(decide, choice.cpu(), self._choice)
                self._forced_own = th.where(decide, forced.cpu(), self._forced_own)
                self._steps_left = th.where(decide, self.commit_steps, self._steps_left)
            self._steps_left -= 1
            self._window_len += 1
            self._row_task = tasks.cpu()
            chosen = self._choice.to(features.device)
        if proposals is not None:
            actions = proposals.samples[chosen, th.arange(n, device=features.device)]
        else:
            actions = policy.actor.task_actions(features, chosen, deterministic)
        self._track_sharing(chosen, tasks)
        return actions, chosen

    @staticmethod
    def _propose(policy: MixtureNetworks, features: th.Tensor, deterministic: bool) -> Proposals:
        """Every policy's ``(mean, sampled)`` proposals; a deterministic policy's "sample" is its mean (no
        draw from torch's random stream)."""
        if deterministic:
            return policy.actor.propose(features, deterministic=True)
        return policy.actor.propose(features)

    def _decide_with_own_prob(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> tuple[th.Tensor, th.Tensor]:
        """The policy of every deciding row, and which rows ``own_prob`` forced to their own policy."""
        if self.own_prob >= 1.0:
            return tasks, th.ones_like(tasks, dtype=th.bool)
        choice = self._decide(policy, features, tasks, proposals)
        if self.own_prob == 0.0:
            return choice, th.zeros_like(tasks, dtype=th.bool)
        generator = self._generator(tasks.device)
        n = tasks.shape[0]
        draws = th.rand(n, device=tasks.device) if generator is None else th.rand(n, device=tasks.device, generator=generator)
        own = draws < self.own_prob
        return th.where(own, tasks, choice), own

    # -- (de)serialisation ---------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_choice"] = None  # per-row commitments are tied to the live env
        state["_generators"] = {}  # rebuilt from _seed when needed
        return state


class OwnPolicyCollector(Collector):
    """Each row acts with its own task's policy (the Separated baseline)."""

    name = "own"

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)

    def select(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, deterministic: bool = False
    ) -> tuple[th.Tensor, th.Tensor]:
        return policy.actor.task_actions(features, tasks, deterministic), tasks

    def _decide(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> th.Tensor:
        return tasks


class QSwitchCollector(Collector):
    """QMP's Q-switch: every policy proposes, the row's task critic scores, the best proposal acts.

    **Adaptive mode** (``adaptive=True``, beyond the paper; see ``docs/commitment.md``). For a row of
    task ``i`` at state ``s``, with proposals ``a_j`` and the score ``Q_i`` set by ``critic_reduce``:

    * the *advantage* of policy ``j`` is ``A_j = Q_i(s, a_j) - Q_i(s, a_i)``;
    * its *uncertainty* ``U_j`` is the spread (max - min) of the C critics of task ``i``: with
      ``uncertainty="value"`` the larger of their spreads at ``a_i`` and at ``a_j`` (``|Q1 - Q2|`` for
      twins), with ``uncertainty="advantage"`` their spread on ``A_j`` itself (``|A1_j - A2_j|``);
    * ``j != i`` is *confident* when ``A_j > uncertainty_scale * U_j``.

    At a decision the row acts with the best-scoring policy among the own one and the confident ones,
    so it keeps its own policy unless another proposal's advantage clears the critics' disagreement.
    With ``adaptive_keep=True`` a chosen other policy is *kept* (no decision) while it stays confident,
    re-scored every step; the step its advantage falls to the threshold, or the episode ends, the row
    decides afresh. Own-policy steps are decisions every step. ``own_prob`` applies at decisions.

    Limits: ``uncertainty_scale=0, adaptive_keep=False`` is the plain per-step switch (the argmax, with
    an exact tie between the own proposal and the best one going to the own policy instead of the lowest
    index). ``uncertainty_scale=0, adaptive_keep=True`` keeps a shared behaviour while ``Q_i`` ranks it
    strictly above the own proposal. A large ``uncertainty_scale`` tends to the own-policy collector
    (Separated) wherever the critics disagree at all.

    :param num_tasks: number of tasks T.
    :param score: which proposals the critic scores: ``"mean"`` (each policy's deterministic
        action, as the authors' code) or ``"sample"`` (a sampled action, as the paper's formula).
        The executed action is always the winner's *sampled* action, so exploration is SAC's.
    :param critic_reduce: ``"q1"`` (first critic, as the authors' code) or ``"min"`` (min of twins).
    :param commit_steps: keep a choice for this many steps (``1`` = the paper's switch).
    :param own_prob: probability that a decision picks the row's own policy.
    :param switch_margin: with ``commit_steps > 1``, drop a commitment early when another
        policy's proposal beats the committed one's by more than this Q-value margin (windows that
        ``own_prob`` gave to the own policy are kept).
    :param warmup_steps: env steps of own-policy collection before the switch starts (paper: 0).
    :param adaptive: the adaptive switch above (needs ``n_critics >= 2``; replaces ``commit_steps`` and
        ``switch_margin``, which must stay at their defaults).
    :param uncertainty_scale: ``kappa >= 0``, the advantage needed per unit of critic disagreement
        (adaptive only; default 1.0).
    :param uncertainty: ``"value"`` or ``"advantage"`` (adaptive only; default ``"value"``).
    :param adaptive_keep: keep a shared behaviour while it stays confident (adaptive only; default True).
    """

    name = "qswitch"
    needs_proposals = True

    def __init__(
        self,
        num_tasks: int,
        score: str = "mean",
        critic_reduce: str = "q1",
        commit_steps: int = 1,
        own_prob: float = 0.0,
        switch_margin: float | None = None,
        warmup_steps: int = 0,
        adaptive: bool = False,
        uncertainty_scale: float | None = None,
        uncertainty: str | None = None,
        adaptive_keep: bool | None = None,
    ) -> None:
        super().__init__(num_tasks, commit_steps, own_prob, warmup_steps)
        if score not in ("mean", "sample"):
            raise ValueError(f"score must be 'mean' or 'sample', got {score!r}.")
        if critic_reduce not in ("q1", "min"):
            raise ValueError(f"critic_reduce must be 'q1' or 'min', got {critic_reduce!r}.")
        if switch_margin is not None and not (isinstance(switch_margin, (int, float)) and switch_margin >= 0):
            # (nan fails this test too: a nan margin would never end a commitment)
            raise ValueError(f"switch_margin must be a number >= 0 (or None to disable), got {switch_margin!r}.")
        if switch_margin is not None and commit_steps == 1:
            raise ValueError(
                f"switch_margin={switch_margin!r} has no effect with commit_steps=1 (every step decides anew): "
                "set commit_steps > 1, or leave switch_margin=None."
            )
        self.score = score
        self.critic_reduce = critic_reduce
        self.switch_margin = switch_margin
        self.scores_every_step = switch_margin is not None
        self._scores: th.Tensor | None = None
        self._check_adaptive(adaptive, uncertainty_scale, uncertainty, adaptive_keep)
        self.adaptive = bool(adaptive)
        self.uncertainty_scale = 1.0 if uncertainty_scale is None else float(uncertainty_scale)
        self.uncertainty = "value" if uncertainty is None else uncertainty
        self.adaptive_keep = True if adaptive_keep is None else bool(adaptive_keep)
        if self.adaptive:
            self.scores_every_step = True

    def _check_adaptive(self, adaptive: Any, uncertainty_scale: Any, uncertainty: Any, adaptive_keep: Any) -> None:
        if not isinstance(adaptive, (bool, np.bool_)):
            raise ValueError(f"adaptive must be True or False, got {adaptive!r}.")
        if not adaptive:
            given = [
                name
                for name, value in (
                    ("uncertainty_scale", uncertainty_scale),
                    ("uncertainty", uncertainty),
                    ("adaptive_keep", adaptive_keep),
                )
                if value is not None
            ]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to the adaptive switch: add adaptive=True.")
            return
        if self.commit_steps != 1:
            raise ValueError(
                f"adaptive=True replaces commit_steps (got {self.commit_steps}): a shared behaviour is kept while its "
                "advantage lasts (adaptive_keep). Leave commit_steps=1."
            )
        if self.switch_margin is not None:
            raise ValueError("adaptive=True re-scores every step itself: leave switch_margin=None.")
        if uncertainty_scale is not None and (
            isinstance(uncertainty_scale, bool)
            or not isinstance(uncertainty_scale, (int, float, np.integer, np.floating))
            or not np.isfinite(uncertainty_scale)
            or uncertainty_scale < 0
        ):
            raise ValueError(
                "uncertainty_scale must be a finite number >= 0 (0 = share on any positive advantage), "
                f"got {uncertainty_scale!r}."
            )
        if uncertainty is not None and uncertainty not in ("value", "advantage"):
            raise ValueError(f"uncertainty must be 'value' or 'advantage', got {uncertainty!r}.")
        if adaptive_keep is not None and not isinstance(adaptive_keep, (bool, np.bool_)):
            raise ValueError(f"adaptive_keep must be True or False, got {adaptive_keep!r}.")

    def _score(self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals) -> th.Tensor:
        """Task critics' scores of every proposal ``(N, T)``; ``-inf`` where the proposal (mean or sample) or
        its score is not finite, so that one task's broken policy or critic never wins another's rows."""
        candidates = proposals.means if self.score == "mean" else proposals.samples  # (T, N, A)
        scores = policy.critic.score(features, candidates.transpose(0, 1), tasks, self.critic_reduce)  # (N, T)
        finite = th.isfinite(scores) & th.isfinite(proposals.means).all(dim=2).T & th.isfinite(proposals.samples).all(dim=2).T
        return scores.masked_fill(~finite, -th.inf)

    def _switch_early(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> th.Tensor | None:
        self._scores = None
        if self.switch_margin is None or self.commit_steps == 1 or proposals is None:
            return None
        assert self._choice is not None
        self._scores = self._score(policy, features, tasks, proposals)
        committed = self._scores.gather(1, self._choice.to(features.device).unsqueeze(1)).squeeze(1)
        # A commitment to a policy whose proposal stopped being finite ends at once.
        return (((self._scores.max(dim=1).values - committed) > self.switch_margin) | ~th.isfinite(committed)).cpu()

    def _decide(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> th.Tensor:
        scores = self._scores
        if scores is None:
            assert proposals is not None  # needs_proposals: select() passes them
            scores = self._score(policy, features, tasks, proposals)
        # torch.argmax returns the first maximum: ties go to the lowest policy index. A row with no finite
        # proposal acts with its own policy.
        return th.where(th.isfinite(scores).any(dim=1), scores.argmax(dim=1), tasks)

    # -- adaptive switch -----------------------------------------------------------------------
    def confident_advantages(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals
    ) -> tuple[th.Tensor, th.Tensor]:
        """The adaptive switch's view of every proposal: scores ``(N, T)`` (``critic_reduce``) and which
        policies are *confident* ``(N, T)``: ``A_j > uncertainty_scale * U_j`` (never the own policy).

        :param policy: the multi-task policy (its critic needs ``score_critics`` and ``n_critics >= 2``).
        :param features: network input ``(N, D)``.
        :param tasks: task of every row ``(N,)``.
        :param proposals: ``(means, samples)`` of every policy, ``(T, N, A)`` each.
        """
        n_critics = getattr(policy.critic, "n_critics", 1)
        if n_critics < 2:
            raise ValueError(
                f"The adaptive Q-switch measures uncertainty as the disagreement of a task's critics, but this "
                f"policy has n_critics={n_critics}. Use n_critics >= 2 (the SAC default) or adaptive=False."
            )
        candidates = proposals.means if self.score == "mean" else proposals.samples  # (T, N, A)
        q = policy.critic.score_critics(features, candidates.transpose(0, 1), tasks)  # (C, N, T)
        scores = q[0] if self.critic_reduce == "q1" else q.min(dim=0).values
        own = tasks.unsqueeze(1)  # (N, 1)
        advantage = scores - scores.gather(1, own)
        if self.uncertainty == "value":
            spread = q.max(dim=0).values - q.min(dim=0).values  # (N, T) critics' disagreement at each proposal
            uncertainty = th.maximum(spread, spread.gather(1, own))
        else:
            per_critic = q - q.gather(2, own.unsqueeze(0).expand(q.shape[0], -1, -1))  # (C, N, T) advantages
            uncertainty = per_critic.max(dim=0).values - per_critic.min(dim=0).values
        confident = advantage > self.uncertainty_scale * uncertainty
        confident &= th.isfinite(proposals.means).all(dim=2).T & th.isfinite(proposals.samples).all(dim=2).T
        confident.scatter_(1, own, False)
        return scores, confident

    def _select_adaptive(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, deterministic: bool
    ) -> tuple[th.Tensor, th.Tensor]:
        """:meth:`select` of the adaptive switch (every row re-scored every step, no per-row loop)."""
        n = features.shape[0]
        if self._choice is None or self._choice.shape[0] != n:
            self.reset_state(n)
        assert self._choice is not None
        if self.own_prob >= 1.0:  # every decision is the own policy: no proposals, no critic
            chosen = tasks
            actions = policy.actor.task_actions(features, tasks, deterministic)
            decide = th.ones(n, dtype=th.bool)
        else:
            proposals = self._propose(policy, features, deterministic)
            scores, confident = self.confident_advantages(policy, features, tasks, proposals)
            previous = self._choice.to(features.device)
            decide = th.ones(n, dtype=th.bool, device=features.device)
            if self.adaptive_keep:
                # _steps_left > 0 marks a row holding another policy's behaviour (no fixed length here).
                holding = (self._steps_left > 0).to(features.device) & (previous != tasks)
                decide = ~(holding & confident.gather(1, previous.unsqueeze(1)).squeeze(1))
            allowed = confident.scatter(1, tasks.unsqueeze(1), True)  # the own policy is always allowed
            # torch.argmax returns the first maximum: ties go to the lowest allowed index.
            decision = scores.masked_fill(~allowed, -th.inf).argmax(dim=1)
            if self.own_prob > 0.0:
                generator = self._generator(tasks.device)
                draws = (
                    th.rand(n, device=tasks.device)
                    if generator is None
                    else th.rand(n, device=tasks.device, generator=generator)
                )
                decision = th.where(draws < self.own_prob, tasks, decision)
            chosen = th.where(decide, decision, previous)
            actions = proposals.samples[chosen, th.arange(n, device=features.device)]
            decide = decide.cpu()
        chosen_cpu = chosen.cpu()
        self._close_windows(decide.nonzero().squeeze(1))
        self._choice = chosen_cpu
        self._steps_left = (chosen_cpu != tasks.cpu()).long() if self.adaptive_keep else th.zeros(n, dtype=th.long)
        self._window_len += 1
        self._row_task = tasks.cpu()
        self._track_sharing(chosen, tasks)
        return actions, chosen

    def select(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, deterministic: bool = False
    ) -> tuple[th.Tensor, th.Tensor]:
        if self.adaptive:
            return self._select_adaptive(policy, features, tasks, deterministic)
        return super().select(policy, features, tasks, deterministic)


class UniformCollector(Collector):
    """QMP-Uniform: the acting policy is drawn uniformly from all T policies."""

    name = "uniform"

    def _decide(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> th.Tensor:
        generator = self._generator(tasks.device)
        if generator is None:
            return th.randint(self.num_tasks, tasks.shape, device=tasks.device)
        return th.randint(self.num_tasks, tasks.shape, device=tasks.device, generator=generator)


def check_mixture_matrix(matrix: Any, num_tasks: int) -> np.ndarray:
    """Validate a T x T behaviour-mixture matrix whose rows are probability vectors."""
    if isinstance(matrix, str):
        if matrix not in MIXTURE_PRESETS:
            raise ValueError(f"Unknown mixture preset {matrix!r}; known presets: {sorted(MIXTURE_PRESETS)}.")
        matrix = MIXTURE_PRESETS[matrix]
    try:
        arr = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"The mixture matrix must be a {num_tasks} x {num_tasks} array of numbers (tasks x policies); got {matrix!r}."
        ) from e
    if arr.shape != (num_tasks, num_tasks):
        raise ValueError(f"The mixture matrix must be {num_tasks} x {num_tasks} (tasks x policies), got {arr.shape}.")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError("The mixture matrix must hold finite, non-negative probabilities.")
    bad = np.flatnonzero(~np.isclose(arr.sum(axis=1), 1.0, atol=1e-6))
    if bad.size:
        raise ValueError(
            f"Every row of the mixture matrix must sum to 1; rows {bad.tolist()} sum to {arr.sum(axis=1)[bad].tolist()}."
        )
    return arr


class FixedMixtureCollector(Collector):
    """QMP-Domain: the acting policy for task i is drawn from row i of a fixed matrix.

    :param num_tasks: number of tasks T.
    :param matrix: T x T row-stochastic matrix (entry ``[i, j]`` = probability that policy j acts
        for task i), or the name of a preset (see :data:`sb3_qmp.common.presets.MIXTURE_PRESETS`).
    :param commit_steps: keep a choice for this many steps.
    :param own_prob: probability that a decision picks the row's own policy.
    :param warmup_steps: env steps of own-policy collection before the mixture starts.
    """

    name = "fixed"

    def __init__(
        self, num_tasks: int, matrix: Any = None, commit_steps: int = 1, own_prob: float = 0.0, warmup_steps: int = 0
    ) -> None:
        super().__init__(num_tasks, commit_steps, own_prob, warmup_steps)
        if matrix is None:
            raise ValueError("The 'fixed' collector needs collector_kwargs=dict(matrix=...) (a T x T matrix or preset).")
        self.matrix = check_mixture_matrix(matrix, num_tasks)
        self._probs = th.as_tensor(self.matrix, dtype=th.float32)

    def _decide(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> th.Tensor:
        probs = self._probs.to(tasks.device)[tasks]
        generator = self._generator(tasks.device)
        return th.multinomial(probs, 1, generator=generator).squeeze(1)


COLLECTORS: dict[str, type[Collector]] = {
    cls.name: cls for cls in (OwnPolicyCollector, QSwitchCollector, UniformCollector, FixedMixtureCollector)
}


def make_collector(collector: str | type[Collector], num_tasks: int, **kwargs: Any) -> Collector:
    """Build a collector by name (``own``, ``qswitch``, ``uniform``, ``fixed``) or from a :class:`Collector`
    subclass (a collector of your own: no registration needed, see docs/algorithms.md)."""
    if isinstance(collector, type):
        if not issubclass(collector, Collector):
            raise TypeError(f"collector={collector.__name__} is not a subclass of sb3_qmp.common.collectors.Collector.")
        cls, name = collector, collector.__name__
    elif collector in COLLECTORS:
        cls, name = COLLECTORS[collector], collector
    else:
        raise ValueError(f"Unknown collector {collector!r}; choose one of {sorted(COLLECTORS)}, or pass a Collector subclass.")
    try:
        return cls(num_tasks, **kwargs)
    except TypeError as e:
        raise TypeError(f"Bad collector_kwargs for collector {name!r}: {e}") from e
