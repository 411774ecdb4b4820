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
paper's per-step mixture.

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

    def _close_windows(self, rows: th.Tensor) -> None:
        lengths = self._window_len[rows]
        tasks = self._row_task[rows][lengths > 0].numpy()
        np.add.at(self.window_len_sum, tasks, lengths[lengths > 0].numpy())
        np.add.at(self.window_count, tasks, 1)
        self._window_len[rows] = 0

    def episode_done(self, dones: np.ndarray) -> None:
        """Rows whose episode ended re-decide at their next step."""
        if self._choice is None or not dones.any():
            return
        rows = th.as_tensor(np.flatnonzero(dones))
        self._close_windows(rows)
        self._steps_left[rows] = 0

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

    # -- decisions -----------------------------------------------------------------------------
    def _decide(self, policy: Any, features: th.Tensor, tasks: th.Tensor, proposals: Any) -> th.Tensor:
        """Return the policy index for every row (rows that keep a commitment ignore it)."""
        raise NotImplementedError

    def _switch_early(self, policy: Any, features: th.Tensor, tasks: th.Tensor, proposals: Any) -> th.Tensor | None:
        """Rows that should drop their commitment before it runs out (``None``: none)."""
        return None

    def select(
        self, policy: Any, features: th.Tensor, tasks: th.Tensor, deterministic: bool = False
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
            actions = proposals[1][chosen, th.arange(n, device=features.device)]
        else:
            actions = policy.actor.task_actions(features, chosen, deterministic)
        return actions, chosen

    @staticmethod
    def _propose(policy: Any, features: th.Tensor, deterministic: bool) -> tuple[th.Tensor, th.Tensor]:
        """Every policy's ``(mean, sampled)`` proposals; a deterministic policy's "sample" is its mean (no
        draw from torch's random stream)."""
        if deterministic:
            return policy.actor.propose(features, deterministic=True)
        return policy.actor.propose(features)

    def _decide_with_own_prob(
        self, policy: Any, features: th.Tensor, tasks: th.Tensor, proposals: Any
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
        self, policy: Any, features: th.Tensor, tasks: th.Tensor, deterministic: bool = False
    ) -> tuple[th.Tensor, th.Tensor]:
        return policy.actor.task_actions(features, tasks, deterministic), tasks

    def _decide(self, policy: Any, features: th.Tensor, tasks: th.Tensor, proposals: Any) -> th.Tensor:
        return tasks


class QSwitchCollector(Collector):
    """QMP's Q-switch: every policy proposes, the row's task critic scores, the best proposal acts.

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
    ) -> None:
        super().__init__(num_tasks, commit_steps, own_prob, warmup_steps)
        if score not in ("mean", "sample"):
            raise ValueError(f"score must be 'mean' or 'sample', got {score!r}.")
        if critic_reduce not in ("q1", "min"):
            raise ValueError(f"critic_reduce must be 'q1' or 'min', got {critic_reduce!r}.")
        if switch_margin is not None and switch_margin < 0:
            raise ValueError(f"switch_margin must be >= 0 (or None to disable), got {switch_margin!r}.")
        self.score = score
        self.critic_reduce = critic_reduce
        self.switch_margin = switch_margin
        self.scores_every_step = switch_margin is not None
        self._scores: th.Tensor | None = None

    def _score(self, policy: Any, features: th.Tensor, tasks: th.Tensor, proposals: Any) -> th.Tensor:
        candidates = proposals[0] if self.score == "mean" else proposals[1]  # (T, N, A)
        return policy.critic.score(features, candidates.transpose(0, 1), tasks, self.critic_reduce)  # (N, T)

    def _switch_early(self, policy: Any, features: th.Tensor, tasks: th.Tensor, proposals: Any) -> th.Tensor | None:
        self._scores = None
        if self.switch_margin is None or self.commit_steps == 1 or proposals is None:
            return None
        assert self._choice is not None
        self._scores = self._score(policy, features, tasks, proposals)
        committed = self._scores.gather(1, self._choice.to(features.device).unsqueeze(1)).squeeze(1)
        return ((self._scores.max(dim=1).values - committed) > self.switch_margin).cpu()

    def _decide(self, policy: Any, features: th.Tensor, tasks: th.Tensor, proposals: Any) -> th.Tensor:
        scores = self._scores if self._scores is not None else self._score(policy, features, tasks, proposals)
        # torch.argmax returns the first maximum: ties go to the lowest policy index.
        return scores.argmax(dim=1)


class UniformCollector(Collector):
    """QMP-Uniform: the acting policy is drawn uniformly from all T policies."""

    name = "uniform"

    def _decide(self, policy: Any, features: th.Tensor, tasks: th.Tensor, proposals: Any) -> th.Tensor:
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

    def _decide(self, policy: Any, features: th.Tensor, tasks: th.Tensor, proposals: Any) -> th.Tensor:
        probs = self._probs.to(tasks.device)[tasks]
        generator = self._generator(tasks.device)
        return th.multinomial(probs, 1, generator=generator).squeeze(1)


COLLECTORS: dict[str, type[Collector]] = {
    cls.name: cls for cls in (OwnPolicyCollector, QSwitchCollector, UniformCollector, FixedMixtureCollector)
}


def make_collector(name: str, num_tasks: int, **kwargs: Any) -> Collector:
    """Build a collector by name (``own``, ``qswitch``, ``uniform``, ``fixed``)."""
    if name not in COLLECTORS:
        raise ValueError(f"Unknown collector {name!r}; choose one of {sorted(COLLECTORS)}.")
    try:
        return COLLECTORS[name](num_tasks, **kwargs)
    except TypeError as e:
        raise TypeError(f"Bad collector_kwargs for collector {name!r}: {e}") from e
