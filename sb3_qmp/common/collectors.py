"""Collectors: which task's policy acts while data is collected for each task.

For every env row collecting data for task ``i`` a collector picks the policy ``j`` that acts; the
transition is stored for task ``i`` with task ``i``'s reward whatever it picks, so only the behaviour changes.

=================  ===========  ==============================================  ==========================
name               paper name   choice of ``j`` for a row of task ``i``         class (module)
=================  ===========  ==============================================  ==========================
``own``            Separated    ``j = i``                                       :class:`OwnPolicyCollector`
``qswitch``        QMP          ``argmax_j Q_i(s, a_j)`` over all proposals     ``sb3_qmp.qmp.qswitch``
``uniform``        QMP-Uniform  uniform over the T policies                     ``sb3_qmp.qmp.mixtures``
``fixed``          QMP-Domain   drawn from row ``i`` of a fixed matrix          ``sb3_qmp.qmp.mixtures``
=================  ===========  ==============================================  ==========================

This base class holds what every mixture shares, so that a rule only implements :meth:`Collector._decide`:

* *temporal commitment* (``commit_steps=k``): a decision is kept for k steps or until the episode ends;
* the *own-policy probability* (``own_prob``): each decision picks the row's own policy with that probability;
* the *mixture warm-up* (``warmup_steps``): own policies act until the model has taken that many env steps;
* the one record of who acted for whom: :attr:`Collector.selection_counts` (``[i, j]``: steps of task ``i``
  on which policy ``j`` acted) and the lengths of *shared behaviours* (maximal runs of one episode's steps on
  which the same other policy acted), saved and restored with the model.

``select(..., deterministic=True)`` evaluates the mixture as the authors did: every policy proposes its mean
action and the winner's mean is executed, while the choice follows the collector's rules. Evaluation runs on
:meth:`Collector.evaluation_copy`, which has its own commitments, statistics and random generator.

A new collector is a subclass passed as ``collector=MyCollector`` (see docs/algorithms.md); decorating it with
:func:`register_collector` also makes it available by its ``name``.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th

from sb3_qmp.common.interfaces import MixtureNetworks, Proposals


class Collector:
    """Base class: per-row commitments, the own-policy probability and the record of who acted for whom.

    :param num_tasks: number of tasks T.
    :param commit_steps: how many steps a decision is kept (``1`` re-decides every step).
    :param own_prob: probability that a decision picks the row's own task policy.
    :param warmup_steps: env steps (all tasks together, counted like ``learning_starts``, from the
        start of training) during which every row acts with its own policy before the mixture starts.
    """

    name: ClassVar[str] = "base"
    needs_proposals: ClassVar[bool] = False  # select() passes every policy's proposals to _decide
    scores_every_step: ClassVar[bool] = False  # committed rows are re-scored every step (see _switch_early)
    # Per-task statistics of who acted for whom (saved and restored with the model).
    STATISTICS: ClassVar[tuple[str, ...]] = (
        "selection_counts",
        "window_len_sum",
        "window_count",
        "shared_len_sum",
        "shared_count",
    )

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
        self.reset_state(0)
        self._choice: th.Tensor | None = None  # nothing committed yet: the first step decides for every row
        self.selection_counts = np.zeros((num_tasks, num_tasks), dtype=np.int64)
        self.window_len_sum = np.zeros(num_tasks, dtype=np.float64)  # finished commitment windows per task
        self.window_count = np.zeros(num_tasks, dtype=np.int64)
        self.shared_len_sum = np.zeros(num_tasks, dtype=np.float64)  # finished shared behaviours per task
        self.shared_count = np.zeros(num_tasks, dtype=np.int64)
        # Random choices (own_prob, uniform/fixed draws) use torch's global RNG unless seeded (evaluation copies).
        self._seed: int | None = None
        self._generators: dict[str, th.Generator] = {}

    @classmethod
    def variant_for(cls, options: dict[str, Any]) -> type[Collector]:
        """The class that implements ``options`` (a family of collectors may pick a subclass by option and
        remove the options it consumed); the base class is its own variant."""
        return cls

    # -- per-row state -------------------------------------------------------------------------
    def reset_state(self, n_envs: int) -> None:
        """Forget all commitments (e.g. when a new VecEnv is set)."""
        self._choice = th.zeros(n_envs, dtype=th.long)
        self._forced_own = th.zeros(n_envs, dtype=th.bool)  # rows whose current window own_prob forced
        self._steps_left = th.zeros(n_envs, dtype=th.long)
        self._window_len = th.zeros(n_envs, dtype=th.long)
        self._row_task = th.zeros(n_envs, dtype=th.long)
        self._run_policy = np.full(n_envs, -1, dtype=np.int64)  # the other policy of a row's open shared run
        self._run_len = np.zeros(n_envs, dtype=np.int64)
        self._run_task = np.zeros(n_envs, dtype=np.int64)

    def _rows(self, n: int) -> th.Tensor:
        """The commitments of ``n`` rows (fresh ones when the number of rows changed)."""
        if self._choice is None or self._choice.shape[0] != n:
            self.reset_state(n)
        assert self._choice is not None
        return self._choice

    def _close_windows(self, rows: th.Tensor) -> None:
        lengths = self._window_len[rows]
        tasks = self._row_task[rows][lengths > 0].numpy()
        np.add.at(self.window_len_sum, tasks, lengths[lengths > 0].numpy())
        np.add.at(self.window_count, tasks, 1)
        self._window_len[rows] = 0

    def _renew(self, decide: th.Tensor, choice: th.Tensor, forced: th.Tensor, steps: th.Tensor | int) -> None:
        """The rows ``decide`` close their windows and commit to ``choice`` for ``steps`` steps."""
        assert self._choice is not None
        self._close_windows(decide.nonzero().squeeze(1))
        self._choice = th.where(decide, choice.cpu(), self._choice)
        self._forced_own = th.where(decide, forced.cpu(), self._forced_own)
        self._steps_left = th.where(decide, steps if isinstance(steps, int) else steps.cpu(), self._steps_left)

    def _close_runs(self, ending: np.ndarray) -> None:
        """Record the open shared behaviours of the rows ``ending`` (boolean ``(N,)``) as finished."""
        ending = ending & (self._run_len > 0)
        if ending.any():
            np.add.at(self.shared_len_sum, self._run_task[ending], self._run_len[ending])
            np.add.at(self.shared_count, self._run_task[ending], 1)
            self._run_len[ending] = 0
            self._run_policy[ending] = -1

    def record(self, chosen: th.Tensor, tasks: th.Tensor) -> None:
        """Count one step's choices: policy ``chosen[n]`` acted for task ``tasks[n]``. The only place that
        counts (``selection_counts``) and follows shared behaviours: every ``select`` calls it once per step."""
        chosen_np, tasks_np = chosen.cpu().numpy(), tasks.cpu().numpy()
        self._rows(chosen_np.shape[0])
        pairs = tasks_np * self.num_tasks + chosen_np
        self.selection_counts += np.bincount(pairs, minlength=self.num_tasks**2).reshape(self.num_tasks, -1)
        shared = chosen_np != tasks_np
        # A shared behaviour continues while the same other policy acts for the same task.
        continues = shared & (chosen_np == self._run_policy) & (tasks_np == self._run_task)
        self._close_runs(~continues)
        self._run_len = np.where(continues, self._run_len + 1, shared.astype(np.int64))
        self._run_policy = np.where(shared, chosen_np, -1)
        self._run_task = tasks_np

    def episode_starts(self, starts: np.ndarray | None = None) -> None:
        """The rows whose episode starts (the previous one ended) end their commitments and shared behaviours
        and decide at their next step (all rows if ``None``); a different number of rows than the collector
        holds state for starts afresh at the next :meth:`select` anyway.

        :param starts: boolean ``(N,)``, True for rows whose next observation starts an episode (``dones``).
        """
        if self._choice is None:
            return  # nothing committed yet: the next step decides for every row
        if starts is None:
            self.reset_state(self._choice.shape[0])
            return
        starts = np.asarray(starts, dtype=bool).reshape(-1)
        if starts.shape[0] == self._choice.shape[0] and starts.any():
            rows = th.as_tensor(np.flatnonzero(starts))
            self._close_windows(rows)
            self._steps_left[rows] = 0
            self._close_runs(starts)

    def evaluation_copy(self, seed: int | None = None) -> Collector:
        """A copy with the same settings for evaluating the mixture: fresh commitments and statistics, and
        its own random generator (seeded with ``seed``; ``None``: fresh entropy), so that using it changes
        neither this collector's state nor torch's global random stream.

        :param seed: seed of the copy's random choices.
        """
        clone = copy.deepcopy(self)  # __getstate__ drops the live commitments
        for name in self.STATISTICS:
            setattr(clone, name, np.zeros_like(getattr(self, name)))
        clone._seed = int(np.random.default_rng(seed).integers(2**62))
        clone._generators = {}
        return clone

    def _generator(self, device: th.device) -> th.Generator | None:
        """This collector's generator on ``device`` (evaluation copies), or ``None``: torch's global RNG
        (collection, as SB3's own sampling)."""
        if self._seed is None:
            return None
        if str(device) not in self._generators:
            self._generators[str(device)] = th.Generator(device=device).manual_seed(self._seed)
        return self._generators[str(device)]

    # -- statistics ----------------------------------------------------------------------------
    def mean_commitment(self) -> np.ndarray:
        """Mean length of finished commitment windows per task (``nan`` where none finished)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.window_len_sum / self.window_count

    def share_fraction(self) -> np.ndarray:
        """Fraction of each task's steps on which another task's policy acted (``nan`` where a task had none)."""
        steps = self.selection_counts.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1.0 - np.diag(self.selection_counts) / steps

    def mean_shared_length(self) -> np.ndarray:
        """Mean length of each task's finished shared behaviours (``nan`` where none finished)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.shared_len_sum / self.shared_count

    # -- decisions -----------------------------------------------------------------------------
    def _decide(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> th.Tensor:
        """The policy index for every row (rows that keep a commitment ignore it)."""
        raise NotImplementedError

    def _switch_early(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> th.Tensor | None:
        """Rows that should drop their commitment before it runs out (``None``: none)."""
        return None

    def own_actions(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, deterministic: bool = False
    ) -> tuple[th.Tensor, th.Tensor]:
        """Every row acts with its own policy (the mixture warm-up, the own-policy collector); recorded like any step."""
        self.record(tasks, tasks)
        return policy.actor.task_actions(features, tasks, deterministic), tasks

    def select(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, deterministic: bool = False
    ) -> tuple[th.Tensor, th.Tensor]:
        """Actions in ``[-1, 1]`` ``(N, A)`` for every row and the index of the policy that produced each.

        :param policy: the multi-task policy (``policy.actor`` / ``policy.critic`` are used).
        :param features: network input ``(N, D)``.
        :param tasks: task of every row ``(N,)``.
        :param deterministic: every policy acts with its mean action: proposals are scored and executed
            as means (the authors' evaluation of the mixture); ``False`` executes the chosen policy's sample.

        A subclass that overrides ``select`` calls :meth:`record` with the step's choices (or the model's
        ``selection_counts`` and the sharing statistics never see its steps).
        """
        self._rows(features.shape[0])
        # own_prob=1 always picks the own policy: no proposals and no critic are needed at all.
        needs_proposals = self.needs_proposals and self.own_prob < 1.0
        if self.commit_steps == 1:
            # The paper's per-step mixture: every row decides every step (windows of length 1).
            proposals = self._propose(policy, features, deterministic) if needs_proposals else None
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
                self._renew(decide, *self._decide_with_own_prob(policy, features, tasks, proposals), self.commit_steps)
            self._steps_left -= 1
            chosen = self._advance(tasks).to(features.device)
        return self._act(policy, features, tasks, chosen, proposals, deterministic), chosen

    def _advance(self, tasks: th.Tensor) -> th.Tensor:
        """One step of every row's window; the committed choices."""
        assert self._choice is not None
        self._window_len += 1
        self._row_task = tasks.cpu()
        return self._choice

    def _act(
        self,
        policy: MixtureNetworks,
        features: th.Tensor,
        tasks: th.Tensor,
        chosen: th.Tensor,
        proposals: Proposals | None,
        deterministic: bool,
    ) -> th.Tensor:
        """The chosen policies' actions (from the proposals when there are some), recorded."""
        self.record(chosen, tasks)
        if proposals is not None:
            return proposals.samples[chosen, th.arange(chosen.shape[0], device=chosen.device)]
        return policy.actor.task_actions(features, chosen, deterministic)

    @staticmethod
    def _propose(policy: MixtureNetworks, features: th.Tensor, deterministic: bool) -> Proposals:
        """Every policy's ``(mean, sampled)`` proposals; a deterministic policy's "sample" is its mean (no
        draw from torch's random stream)."""
        return policy.actor.propose(features, deterministic=deterministic)

    def _with_own_prob(self, choice: th.Tensor, tasks: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``choice`` with each row replaced by its own policy with probability ``own_prob``; which rows were."""
        if self.own_prob == 0.0:
            return choice, th.zeros_like(tasks, dtype=th.bool)
        own = th.rand(tasks.shape[0], device=tasks.device, generator=self._generator(tasks.device)) < self.own_prob
        return th.where(own, tasks, choice), own

    def _decide_with_own_prob(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, proposals: Proposals | None
    ) -> tuple[th.Tensor, th.Tensor]:
        """The policy of every deciding row, and which rows ``own_prob`` forced to their own policy."""
        if self.own_prob >= 1.0:
            return tasks, th.ones_like(tasks, dtype=th.bool)
        return self._with_own_prob(self._decide(policy, features, tasks, proposals), tasks)

    # -- (de)serialisation ---------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # Per-row state belongs to the live env (and may sit on a GPU): settings and statistics only.
        state = {name: value for name, value in self.__dict__.items() if name not in _PER_ROW}
        state["_generators"] = {}  # rebuilt from _seed when needed
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({name: value for name, value in state.items() if name not in _PER_ROW})
        self.reset_state(0)
        self._choice = None  # nothing committed: the next step decides for every row


# What reset_state sets: the live rows' commitments and open shared behaviours (never saved).
_PER_ROW = ("_choice", "_forced_own", "_steps_left", "_window_len", "_row_task", "_run_policy", "_run_len", "_run_task")
CollectorType = TypeVar("CollectorType", bound=type[Collector])
COLLECTORS: dict[str, type[Collector]] = {}


def register_collector(cls: CollectorType) -> CollectorType:
    """Class decorator: make a collector available by its ``name`` (``collector="name"``)."""
    if cls.name in COLLECTORS and COLLECTORS[cls.name] is not cls:
        raise ValueError(f"A collector named {cls.name!r} is registered already ({COLLECTORS[cls.name].__name__}).")
    COLLECTORS[cls.name] = cls
    return cls


@register_collector
class OwnPolicyCollector(Collector):
    """Each row acts with its own task's policy (the Separated baseline).

    :param num_tasks: number of tasks T.
    """

    name = "own"

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)

    def select(
        self, policy: MixtureNetworks, features: th.Tensor, tasks: th.Tensor, deterministic: bool = False
    ) -> tuple[th.Tensor, th.Tensor]:
        return self.own_actions(policy, features, tasks, deterministic)


def make_collector(collector: str | type[Collector], num_tasks: int, **kwargs: Any) -> Collector:
    """Build a collector by name (``own``, ``qswitch``, ``uniform``, ``fixed``, or a registered one of your own)
    or from a :class:`Collector` subclass (no registration needed, see docs/algorithms.md).

    :param collector: the collector's name or class.
    :param num_tasks: number of tasks T.
    :param kwargs: the collector's options (``collector_kwargs``).
    """
    if isinstance(collector, type):
        if not issubclass(collector, Collector):
            raise TypeError(f"collector={collector.__name__} is not a subclass of sb3_qmp.common.collectors.Collector.")
        cls, name = collector, collector.__name__
    elif collector in COLLECTORS:
        cls, name = COLLECTORS[collector], collector
    else:
        raise ValueError(f"Unknown collector {collector!r}; choose one of {sorted(COLLECTORS)}, or pass a Collector subclass.")
    options = dict(kwargs)
    cls = cls.variant_for(options)
    try:
        return cls(num_tasks, **options)
    except TypeError as e:
        raise TypeError(f"Bad collector_kwargs for collector {name!r}: {e}") from e


# Files saved before the mixtures moved to sb3_qmp.qmp pickle them under this module's name.
_MOVED = {
    "QSwitchCollector": "sb3_qmp.qmp.qswitch",
    "UniformCollector": "sb3_qmp.qmp.mixtures",
    "FixedMixtureCollector": "sb3_qmp.qmp.mixtures",
    "check_mixture_matrix": "sb3_qmp.qmp.mixtures",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
