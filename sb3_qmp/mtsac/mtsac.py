"""MultiTaskSAC: T SAC agents in one SB3 off-policy algorithm, with a pluggable behaviour policy."""

from __future__ import annotations

import io
import json
import pathlib
import warnings
import zipfile
from collections import deque
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, RolloutReturn, Schedule, TrainFreq
from stable_baselines3.common.utils import polyak_update, safe_mean
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from sb3_qmp.common.buffers import MultiTaskReplayBuffer
from sb3_qmp.common.checks import check_sac_hyperparameters
from sb3_qmp.common.collectors import COLLECTORS, Collector, make_collector
from sb3_qmp.common.denormal import flushing_denormals
from sb3_qmp.common.files import atomic_path
from sb3_qmp.common.finite import check_finite_update
from sb3_qmp.common.normalize import VecNormalizePerTask
from sb3_qmp.common.results import selection_matrix
from sb3_qmp.common.vec_env import (
    get_num_tasks,
    get_task_names,
    make_multitask_vec_env,
    tasks_without_env,
    unregistered_env_id_message,
)
from sb3_qmp.mtsac.mixture_policy import MixturePolicy, check_behaviour
from sb3_qmp.mtsac.policies import MlpPolicy, MultiTaskActor, MultiTaskCritic, MultiTaskSACPolicy

SelfMultiTaskSAC = TypeVar("SelfMultiTaskSAC", bound="MultiTaskSAC")


SELECTION_ENTRY = "selection_counts.json"  # plain-JSON copy of the selection counts inside a saved model zip
# Files saved before ``algorithm_class`` was stored: the classes that can have written them, from what they hold.
_POLICY_SAVERS = {"SharedSACPolicy": {"SharedSAC"}}
_COLLECTOR_SAVERS = {"own": "Separated", "qswitch": "QMP", "uniform": "QMPUniform", "fixed": "QMPDomain"}


def check_replay_buffer(model: Any, buffer: Any, path: str) -> None:
    """Check a loaded replay buffer against ``model`` (see :meth:`MultiTaskSAC.load_replay_buffer`)."""
    expected = model.replay_buffer_class or MultiTaskReplayBuffer
    if not isinstance(buffer, expected):
        raise ValueError(
            f"{path} holds a {type(buffer).__name__}, but this {type(model).__name__} uses {expected.__name__}: it was "
            "saved by another algorithm (plain SB3?)."
        )
    problems = []
    if getattr(buffer, "num_tasks", None) != model.num_tasks:
        problems.append(f"{getattr(buffer, 'num_tasks', None)} tasks (the model has {model.num_tasks})")
    if tuple(buffer.obs_shape) != tuple(model.observation_space.shape):
        problems.append(f"observations of shape {tuple(buffer.obs_shape)} (the model's: {model.observation_space.shape})")
    if buffer.action_dim != int(np.prod(model.action_space.shape)):
        problems.append(f"{buffer.action_dim} action dimensions (the model's: {int(np.prod(model.action_space.shape))})")
    names = getattr(buffer, "task_names", None)
    if names and model.task_names and list(names) != list(model.task_names):
        problems.append(f"tasks {list(names)} (the model's: {list(model.task_names)})")
    if problems:
        raise ValueError(f"The replay buffer {path} does not fit this model: it has {'; '.join(problems)}.")
    if not buffer.task_full.any():
        stored, steps = int(buffer.size()), int(model.num_timesteps)
        # SB3's CheckpointCallback saves before the last vec-env step is stored: up to n_envs fewer.
        if not steps - max(model.n_envs, 1) <= stored <= steps:
            warnings.warn(
                f"The replay buffer {path} holds {stored} transitions but the model has taken {steps} env steps: it "
                f"is {'older' if stored < steps else 'newer'} than the model (another checkpoint of the run, or another "
                "run). Pair a model with the buffer saved with it (same step count in the checkpoint name).",
                stacklevel=3,
            )


def check_task_names(trained: list[str] | None, env: GymEnv) -> None:
    """Refuse an env whose tasks are not the ones the model was trained on (same count, other tasks: the
    one-hot id would route every row to the wrong task's networks). Models of earlier versions stored no names."""
    if not trained:
        return
    names = get_task_names(env)
    if list(trained) != names:
        raise ValueError(
            f"The model was trained on tasks {list(trained)} but the env runs tasks {names}. Use an env of the task "
            "set the model learnt (same tasks in the same order)."
        )


def saved_algorithms(data: dict[str, Any]) -> set[str] | None:
    """The algorithm class names that can have saved a model's ``data`` (``None``: not a file of this package).

    Files store ``algorithm_class``; for files of earlier versions the class is inferred from the policy
    class, the collector and the algorithm's own settings.
    """
    if "algorithm_class" in data:
        return {str(data["algorithm_class"])}
    if "collector_name" not in data:
        return None
    policy = getattr(data.get("policy_class"), "__name__", "")
    if policy in _POLICY_SAVERS:
        return _POLICY_SAVERS[policy]
    if policy == "MultiHeadSACPolicy":
        return {"QMPMultiHead"} if data["collector_name"] == "qswitch" else {"MultiHeadSAC"}
    if "beta" in data and "kl_states" in data:
        return {"DnC", "DnCReg"}
    saver = _COLLECTOR_SAVERS.get(data["collector_name"])
    return {"MultiTaskSAC"} | ({saver} if saver else set())


class MultiTaskSAC(OffPolicyAlgorithm):
    """Multi-task Soft Actor-Critic: one SAC agent per task, trained on its own task's data only.

    Every gradient step updates every task with ``batch_size`` samples from that task's replay
    buffer (one batched computation for all T tasks). Which policy *acts* while collecting data
    for a task is decided by the ``collector`` (``"own"`` = independent SAC agents, ``"qswitch"``
    = QMP, ``"uniform"``, ``"fixed"``); every transition is stored for the task of the env row
    that produced it, with that task's reward.

    The env must be a multi-task env (see :func:`sb3_qmp.make_multitask_vec_env`): observations
    end with a one-hot task id, which routes every row to its task.

    ``predict`` acts with each task's own policy (what SB3's evaluation calls). Models that collect
    with a mixture (``has_mixture``) can also act with it: ``predict(obs, behaviour="mixture")``, or
    ``mixture_policy()`` for a policy object that ``evaluate_policy`` takes.

    :param policy: the policy (``"MlpPolicy"`` or a :class:`MultiTaskSACPolicy` subclass). An env
        may be passed here directly (``QMP(env)``), meaning ``"MlpPolicy"``.
    :param env: the multi-task environment: a VecEnv (see :func:`sb3_qmp.make_multitask_vec_env`), a
        gym env, or a registered id (built with one sub-env per task).
    :param learning_rate: learning rate of actors, critics and entropy coefficients (or schedule).
    :param buffer_size: replay capacity **per task**.
    :param learning_starts: env steps (all tasks together) of uniform-random actions before learning.
    :param batch_size: minibatch size **per task** for every gradient step.
    :param tau: soft update coefficient of the target critics.
    :param gamma: discount factor.
    :param train_freq: update every ``train_freq`` vec-env steps, or ``(n, "episode")`` with a single-env VecEnv
        only (SB3's rule; a VecEnv of several sub-envs is refused at construction).
    :param gradient_steps: gradient steps after each rollout; every gradient step updates every task.
        ``-1``: one gradient step per env step *of each task*, what T separate SAC runs with
        ``gradient_steps=-1`` would take: the rollout's env steps (all sub-envs) divided by T, the
        remainder carried over to the next rollout. With ``k`` sub-envs per task that is exactly
        ``k`` per vec-env step; with unequal sub-env counts per task (or tasks drawn per episode) it is
        the mean over tasks, so the task updates add up to the env steps. (SB3's own rule, one per
        env step of every sub-env, would give each task T times the updates of an independent SAC.)
    :param action_noise: optional extra exploration noise (added after the collector's action).
    :param ent_coef: entropy coefficient, ``"auto"`` (learned per task, init 1) or ``"auto_0.1"``
        (learned, init 0.1) or a float (fixed for every task).
    :param target_update_interval: gradient steps between target-critic updates.
    :param target_entropy: target entropy of the automatic tuning (``"auto"`` = ``-|A|``).
    :param collector: behaviour policy for data collection: ``"own"``, ``"qswitch"``, ``"uniform"``
        or ``"fixed"`` (``None`` = the class default), or a :class:`~sb3_qmp.common.collectors.Collector`
        subclass of your own (``examples/custom_collector.py``).
    :param collector_kwargs: keyword arguments of the collector: ``commit_steps``, ``own_prob``, ``warmup_steps``
        of every mixture (:mod:`sb3_qmp.common.collectors`), the Q-switch's ``score``, ``critic_reduce``,
        ``switch_margin``, ``adaptive`` (:mod:`sb3_qmp.qmp.qswitch`), QMP-Domain's ``matrix``.
    :param replay_buffer_class: replay buffer class (a :class:`MultiTaskReplayBuffer` subclass).
    :param replay_buffer_kwargs: keyword arguments of the replay buffer.
    :param optimize_memory_usage: SB3's replay-buffer memory option; only ``False`` (the default) is supported.
    :param stats_window_size: window of the rollout statistics (per task too).
    :param tensorboard_log: tensorboard log directory.
    :param policy_kwargs: keyword arguments of the policy (``net_arch``, ``activation_fn``, ``n_critics``,
        ``task_id_input``, ...).
    :param verbose: 0 none, 1 info, 2 debug.
    :param seed: random seed.
    :param device: PyTorch device.
    :param flush_denormal: flush denormal floats to zero during the gradient updates (restored after each
        update). Adam moments of inactive units turn denormal over long runs and slow CPU updates several
        fold; flushing them leaves the weights bit for bit the same (see :mod:`sb3_qmp.common.denormal`).
    :param _init_setup_model: build the networks at construction.
    """

    # What a variant declares (networks, collector, replay buffer); the base class builds and checks the model from it.
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}  # every policy subclasses MlpPolicy
    default_collector: ClassVar[str] = "own"
    buffer_class: ClassVar[type[MultiTaskReplayBuffer]] = MultiTaskReplayBuffer  # default and base of replay_buffer_class
    single_agent: ClassVar[bool] = False  # one agent for all tasks: one entropy coefficient, no per-task train stats

    @classmethod
    def fixes_collector(cls) -> bool:
        """Whether the class is defined by its collector (every named algorithm: ``QMP``, ``Separated``, ...);
        only the generic ``MultiTaskSAC`` takes any ``collector``."""
        return cls is not MultiTaskSAC

    @classmethod
    def _is_default_collector(cls, collector: str | type[Collector]) -> bool:
        """Whether ``collector`` is the class's own (by name, or a subclass of it, e.g. a Q-switch variant)."""
        if isinstance(collector, str):
            return collector == cls.default_collector
        default = COLLECTORS.get(cls.default_collector)
        return default is not None and isinstance(collector, type) and issubclass(collector, default)

    policy: MultiTaskSACPolicy
    replay_buffer: MultiTaskReplayBuffer
    actor: MultiTaskActor
    critic: MultiTaskCritic
    critic_target: MultiTaskCritic
    collector: Collector

    def __init__(
        self,
        policy: str | type[MultiTaskSACPolicy] | GymEnv = "MlpPolicy",
        env: GymEnv | str | None = None,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        ent_coef: str | float = "auto",
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
        collector: str | type[Collector] | None = None,
        collector_kwargs: dict[str, Any] | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        flush_denormal: bool = True,
        _init_setup_model: bool = True,
    ) -> None:
        if isinstance(policy, (gym.Env, VecEnv)) or (
            isinstance(policy, str) and policy not in self.policy_aliases and policy in gym.registry
        ):
            if env is not None:
                raise TypeError("Got two envs: pass either `Algo(env)` or `Algo('MlpPolicy', env)`.")
            policy, env = "MlpPolicy", policy
        elif isinstance(policy, str) and policy not in self.policy_aliases:
            # SB3 would only say "Policy ... unknown" of what is most often an env id that is not registered.
            raise ValueError(
                f"{unregistered_env_id_message(policy)} Nor is {policy!r} a policy of {type(self).__name__} "
                f"({', '.join(self.policy_aliases)})."
            )
        networks = self.policy_aliases["MlpPolicy"]
        if isinstance(policy, type) and not issubclass(policy, networks):
            raise ValueError(f"{type(self).__name__} needs a {networks.__name__} (or a subclass), got {policy.__name__}.")
        if optimize_memory_usage:
            raise ValueError(
                "optimize_memory_usage=True is not supported: the per-task replay buffer stores next observations "
                "(SB3's memory trick relies on one ring of consecutive steps). Leave it False."
            )
        check_sac_hyperparameters(
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            gradient_steps=gradient_steps,
            target_update_interval=target_update_interval,
            ent_coef=ent_coef,
            learning_rate=learning_rate,
            policy_kwargs=policy_kwargs,
        )
        if isinstance(env, str):
            # An env id: one sub-env per task, each fixed to its task (SB3 would make a single env).
            env = make_multitask_vec_env(env, seed=seed)
        episodic = isinstance(train_freq, tuple) and len(train_freq) == 2 and str(train_freq[1]).startswith("episode")
        if episodic and isinstance(env, VecEnv) and env.num_envs > 1:
            raise ValueError(
                f"train_freq={train_freq!r} (episodes) needs a single env in SB3, but this VecEnv has {env.num_envs} "
                "sub-envs (an env id gives one per task). Count the update period in vec-env steps instead "
                "(train_freq=n), or use one sub-env that draws its task per episode: "
                "DummyVecEnv([lambda: sb3_qmp.MultiTaskWrapper(...)])."
            )
        action_space = getattr(env, "action_space", None)
        if action_space is not None and not isinstance(action_space, spaces.Box):
            raise ValueError(
                f"{type(self).__name__} needs a continuous (Box) action space, got {action_space}. "
                "Discrete-action tasks are not supported by SAC-based algorithms."
            )
        super().__init__(
            policy,  # type: ignore[arg-type]
            env,  # type: ignore[arg-type]
            learning_rate,
            buffer_size,
            learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            support_multi_env=True,
            supported_action_spaces=(spaces.Box,),
        )
        self.ent_coef = ent_coef
        self.target_update_interval = target_update_interval
        self.target_entropy = target_entropy
        self.ent_coef_optimizer: th.optim.Adam | None = None
        if type(self).fixes_collector() and collector is not None and not self._is_default_collector(collector):
            raise ValueError(
                f"{type(self).__name__} always collects with the {self.default_collector!r} collector (that is what "
                f"defines it), got collector={collector!r}. Use sb3_qmp.MultiTaskSAC(collector=...) to combine other "
                "collectors freely."
            )
        # A Collector subclass (a collector of your own) is kept as the class: saved and loaded with the model.
        self.collector_class = collector if isinstance(collector, type) else None
        if self.collector_class is not None and not issubclass(self.collector_class, Collector):
            name = self.collector_class.__name__
            raise TypeError(f"collector={name} is not a subclass of sb3_qmp.common.collectors.Collector.")
        self.collector_name = (
            self.collector_class.name if self.collector_class is not None else collector or self.default_collector
        )
        if collector_kwargs is not None and not isinstance(collector_kwargs, dict):
            raise ValueError(
                f"collector_kwargs must be a dict of collector options, e.g. dict(own_prob=0.5); got the "
                f"{type(collector_kwargs).__name__} {collector_kwargs!r}. In a zoo YAML write it as a mapping "
                '(own_prob: 0.5) or as the string "dict(own_prob=0.5)".'
            )
        self.collector_kwargs = dict(collector_kwargs or {})
        self.num_tasks = get_num_tasks(self.env) if self.env is not None else 0
        # Saved with the model: load / set_env refuse an env of other tasks.
        self.task_names = get_task_names(self.env) if self.env is not None else []
        self._env_steps_carry = 0  # env steps not yet turned into gradient steps (gradient_steps=-1)
        self.flush_denormal = bool(flush_denormal)
        # Saved with the model: load() refuses a file of another algorithm class (see saved_algorithms).
        self.algorithm_class = type(self).__name__

        if _init_setup_model:
            if self.env is None:
                raise ValueError(f"{type(self).__name__} needs a multi-task env to build its networks.")
            self._setup_model()

    # ------------------------------------------------------------------------------------------
    # Set-up
    # ------------------------------------------------------------------------------------------
    def _check_env_for_tasks(self, env: VecEnv) -> None:
        normalize = self._vec_normalize_env
        if normalize is None or isinstance(normalize, VecNormalizePerTask):
            return
        if normalize.norm_obs:
            raise ValueError(
                "VecNormalize(norm_obs=True) would rescale the one-hot task id that routes every observation to its "
                "task. Use sb3_qmp.common.normalize.VecNormalizePerTask: it normalises the features only."
            )
        if normalize.norm_reward:
            raise ValueError(
                "VecNormalize(norm_reward=True) keeps one return statistic for all sub-envs: a task with large rewards "
                "would rescale every other task's rewards. Use sb3_qmp.common.normalize.VecNormalizePerTask (one "
                "return statistic per task; rl-zoo3's `normalize:` builds it for sb3-qmp's algorithms)."
            )

    def _setup_model(self) -> None:
        if self.num_tasks < 1:
            raise ValueError("No task count: build the model with a multi-task env (sb3_qmp.make_multitask_vec_env).")
        if self.env is not None:
            self._check_env_for_tasks(self.env)
        if self.replay_buffer_class is None:
            self.replay_buffer_class = self.buffer_class
        elif not issubclass(self.replay_buffer_class, self.buffer_class):
            raise ValueError(
                f"{type(self).__name__} samples its batches from a {self.buffer_class.__name__}: replay_buffer_class "
                f"must subclass it, got {self.replay_buffer_class.__name__}."
            )
        # Copies: SB3 keeps the caller's dicts, which must not change (a YAML's, or reused for another model).
        self.replay_buffer_kwargs = {**self.replay_buffer_kwargs, "num_tasks": self.num_tasks}
        self.policy_kwargs = {**self.policy_kwargs, "num_tasks": self.num_tasks}
        super()._setup_model()
        self._create_aliases()
        if self.replay_buffer is not None:  # checked by load_replay_buffer
            self.replay_buffer.task_names = list(getattr(self, "task_names", []))  # type: ignore[attr-defined]

        self.target_entropy_value = (
            -float(np.prod(self.action_space.shape))  # type: ignore[arg-type]
            if self.target_entropy == "auto"
            else float(self.target_entropy)
        )
        n_coefs = 1 if self.single_agent else self.num_tasks
        if isinstance(self.ent_coef, str) and self.ent_coef.startswith("auto"):
            init_value = float(self.ent_coef.split("_")[1]) if "_" in self.ent_coef else 1.0
            if init_value <= 0.0:
                raise ValueError(f"The initial value of ent_coef must be > 0, got {init_value}.")
            self.log_ent_coef = th.full((n_coefs,), float(np.log(init_value)), device=self.device)
            self.log_ent_coef.requires_grad_(True)
            self.ent_coef_optimizer = th.optim.Adam([self.log_ent_coef], lr=self.lr_schedule(1))
        else:
            self.log_ent_coef = None  # type: ignore[assignment]  # as SB3's SAC: only a learnt coefficient has one
            self.ent_coef_tensor = th.full((n_coefs,), float(self.ent_coef), device=self.device)

        # `load` restores the saved attributes before calling this: statistics found here carry over.
        saved_collector = self.__dict__.get("collector")
        self.collector = make_collector(
            getattr(self, "collector_class", None) or self.collector_name, self.num_tasks, **self.collector_kwargs
        )
        if isinstance(saved_collector, Collector) and saved_collector.num_tasks == self.num_tasks:
            # Every statistic of who acted for whom carries over (files of earlier versions: those they have).
            for name in Collector.STATISTICS:
                if hasattr(saved_collector, name):
                    setattr(self.collector, name, getattr(saved_collector, name))
        legacy_counts = self.__dict__.pop("selection_counts", None)  # files saved before the collector held them
        if legacy_counts is not None and not hasattr(saved_collector, "selection_counts"):
            self.collector.selection_counts = np.asarray(legacy_counts, dtype=np.int64)
        if len(self.__dict__.get("task_success_buffer") or ()) != self.num_tasks:
            self._reset_task_stats()

    def _create_aliases(self) -> None:
        self.actor = self.policy.actor
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target

    def _reset_task_stats(self) -> None:
        self.task_ep_rew_buffer: list[deque[float]] = [deque(maxlen=self._stats_window_size) for _ in range(self.num_tasks)]
        # Strict success (info["is_success"] at the episode's end) and the paper's any-step success.
        self.task_success_buffer: list[deque[float]] = [deque(maxlen=self._stats_window_size) for _ in range(self.num_tasks)]
        self.task_success_any_step_buffer: list[deque[float]] = [
            deque(maxlen=self._stats_window_size) for _ in range(self.num_tasks)
        ]

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        env_tasks = get_num_tasks(env)
        if self.num_tasks and env_tasks != self.num_tasks:
            raise ValueError(
                f"This model has {self.num_tasks} tasks but the env has {env_tasks}. "
                "Use an env with the same task set as the one the model was trained on."
            )
        check_task_names(getattr(self, "task_names", None), env)
        super().set_env(env, force_reset)
        self._check_env_for_tasks(self.env)  # type: ignore[arg-type]
        self.collector.reset_state(self.n_envs)

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfMultiTaskSAC],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfMultiTaskSAC:
        if isinstance(path, (str, pathlib.Path)):
            candidates = [pathlib.Path(path), pathlib.Path(f"{path}.zip")]
            if not any(p.is_file() for p in candidates):
                raise FileNotFoundError(f"No saved model at {path!s} (nor {path!s}.zip). Check the path.")
        data, _, _ = load_from_zip_file(path, device=device, custom_objects=custom_objects, load_data=True)
        if isinstance(path, io.BufferedIOBase):
            path.seek(0)
        savers = saved_algorithms(data or {})
        if savers is not None and cls.__name__ not in savers:
            saved = " or ".join(sorted(savers))
            raise ValueError(
                f"{path!s} was saved by {saved}, not {cls.__name__}: {cls.__name__}.load would rebuild it with another "
                f"collector, loss or network layout. Load it with {sorted(savers)[0]}.load(...)."
            )
        if env is not None and data is not None and data.get("num_tasks") not in (None, get_num_tasks(env)):
            raise ValueError(
                f"The saved model was trained on {data['num_tasks']} tasks but the env has "
                f"{get_num_tasks(env)}. Load it with an env of the same task set."
            )
        if env is not None and data is not None:
            check_task_names(data.get("task_names"), env)
        return super().load(  # type: ignore[return-value]
            path,
            env=env,
            device=device,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )

    # ------------------------------------------------------------------------------------------
    # Collection
    # ------------------------------------------------------------------------------------------
    def _sample_action(
        self,
        learning_starts: int,
        action_noise: ActionNoise | None = None,
        n_envs: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.num_timesteps < learning_starts:
            scaled_action = self.policy.scale_action(np.array([self.action_space.sample() for _ in range(n_envs)]))
        else:
            assert self._last_obs is not None, "self._last_obs was not set"
            obs = th.as_tensor(self._last_obs, dtype=th.float32, device=self.device)
            with th.no_grad():
                features, tasks = self.policy.split_obs(obs)
                if self.num_timesteps < self.collector.warmup_steps:  # mixture warm-up: own policies act
                    actions, _ = self.collector.own_actions(self.policy, features, tasks)
                else:
                    actions, _ = self.collector.select(self.policy, features, tasks)
            scaled_action = actions.cpu().numpy()
        if action_noise is not None:
            scaled_action = np.clip(scaled_action + action_noise(), -1, 1)
        return self.policy.unscale_action(scaled_action), scaled_action

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        train_freq: TrainFreq,
        replay_buffer: ReplayBuffer,
        action_noise: ActionNoise | None = None,
        learning_starts: int = 0,
        log_interval: int | None = None,
    ) -> RolloutReturn:
        rollout = super().collect_rollouts(
            env, callback, train_freq, replay_buffer, action_noise, learning_starts, log_interval
        )
        if self.gradient_steps >= 0:
            return rollout
        # With gradient_steps=-1, SB3's learn() takes `rollout.episode_timesteps` gradient steps: one per env step
        # of every sub-env. Ours update every task at once, so count the env steps per task instead.
        steps, self._env_steps_carry = divmod(self._env_steps_carry + rollout.episode_timesteps, self.num_tasks)
        return rollout._replace(episode_timesteps=steps)

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        self.collector.episode_starts(dones)

    def _update_info_buffer(self, infos: list[dict[str, Any]], dones: np.ndarray | None = None) -> None:
        super()._update_info_buffer(infos, dones)
        if dones is None:
            return
        for info, done in zip(infos, dones):
            task = info.get("task_id")
            if not done or task is None:
                continue
            if "episode" in info:
                self.task_ep_rew_buffer[task].append(info["episode"]["r"])
            success = info.get("is_success", info.get("success"))
            if success is not None:
                self.task_success_buffer[task].append(float(success))
            # The authors' metric: the success flag was set at some step; envs without it: the strict one.
            any_step = info.get("success_any_step", success)
            if any_step is not None:
                self.task_success_any_step_buffer[task].append(float(any_step))

    # ------------------------------------------------------------------------------------------
    # Acting: own policies (predict) or the mixture
    # ------------------------------------------------------------------------------------------
    @property
    def has_mixture(self) -> bool:
        """Whether this model collects with a mixture of policies (QMP, QMP multi-head, QMP-Uniform,
        QMP-Domain, or MultiTaskSAC with such a collector), which ``behaviour="mixture"`` evaluates."""
        return self.collector_name != "own"

    def mixture_policy(self, seed: int | None = None) -> MixturePolicy:
        """The data-collection mixture as a policy with SB3's ``predict`` (for ``evaluate_policy``).

        It has its own commitment state and random generator: using it never changes collection. With
        ``deterministic=True`` every policy acts with its mean action (the authors' evaluation of QMP).
        See :class:`~sb3_qmp.mtsac.mixture_policy.MixturePolicy`.

        :param seed: seed of its random choices (``own_prob``, Uniform and Domain draws).
        :raises ValueError: if the model has no mixture (``has_mixture`` is False).
        """
        if not self.has_mixture:
            raise ValueError(
                f"{type(self).__name__} collects with each task's own policy: it has no mixture to evaluate "
                "(model.has_mixture is False). Use model.predict / behaviour='own'."
            )
        return MixturePolicy(self.policy, self.collector.evaluation_copy(seed))

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        behaviour: str = "own",
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Actions for observations with a one-hot task suffix, as SB3's ``predict``.

        :param observation: one observation or a batch (with the one-hot task suffix).
        :param state: unused (no recurrent state).
        :param episode_start: rows that start an episode (ends their mixture commitments).
        :param deterministic: mean actions (the paper's evaluation) instead of samples.
        :param behaviour: ``"own"`` (default): each row acts with its task's own policy; ``"mixture"``: the
            collection mixture (task i's critic picks among all policies' actions for QMP; see
            :meth:`mixture_policy`, whose state this method keeps between calls).
        :return: the actions and ``state``.
        """
        if check_behaviour(behaviour) == "own":
            return super().predict(observation, state, episode_start, deterministic)
        view: MixturePolicy | None = getattr(self, "_mixture_view", None)
        if view is None:
            view = self._mixture_view = self.mixture_policy(seed=self.seed)
        return view.predict(observation, state, episode_start, deterministic)

    @property
    def selection_counts(self) -> np.ndarray | None:
        """T x T counts: row i, column j = env steps of task i on which policy j acted (the collector's record,
        saved and restored with it; ``None`` before the model is set up)."""
        collector = self.__dict__.get("collector")
        return collector.selection_counts if isinstance(collector, Collector) else None

    def selection_matrix(self, normalize: bool = True) -> np.ndarray:
        """T x T matrix: row i, column j = how often policy j acted while collecting for task i
        (row-normalised by default; paper Figure 5b)."""
        assert self.selection_counts is not None
        counts = self.selection_counts
        return selection_matrix(counts, zero_diagonal=False) if normalize else counts.astype(np.float64)

    def dump_logs(self) -> None:
        for task in range(self.num_tasks):
            if self.task_ep_rew_buffer[task]:
                self.logger.record(f"rollout/task_{task}/ep_rew_mean", safe_mean(self.task_ep_rew_buffer[task]))
            if self.task_success_buffer[task]:
                self.logger.record(f"rollout/task_{task}/success_rate", safe_mean(self.task_success_buffer[task]))
            if self.task_success_any_step_buffer[task]:
                any_step = safe_mean(self.task_success_any_step_buffer[task])
                self.logger.record(f"rollout/task_{task}/success_any_step_rate", any_step)
        if self.selection_counts is not None and self.selection_counts.sum() > 0:
            matrix = self.selection_matrix()
            own = np.diag(matrix)
            self.logger.record("collect/own_policy_frac", float(own.mean()))
            for task in range(self.num_tasks):
                self.logger.record(f"collect/task_{task}/own_policy_frac", float(own[task]), exclude="stdout")
                for policy in range(self.num_tasks):  # the full matrix (paper Figure 5b), tensorboard/csv only
                    key = f"collect/task_{task}/policy_{policy}_frac"
                    self.logger.record(key, float(matrix[task, policy]), exclude=("stdout", "log", "json"))
            commitment = self.collector.mean_commitment()
            for task_idx in np.flatnonzero(np.isfinite(commitment)):
                self.logger.record(f"collect/task_{task_idx}/mean_commitment", float(commitment[task_idx]), exclude="stdout")
            # Shared behaviours (runs of one other policy acting; their share of steps is 1 - own_policy_frac).
            shared_length = self.collector.mean_shared_length()
            for task_idx in np.flatnonzero(np.isfinite(shared_length)):
                key = f"collect/task_{task_idx}/mean_shared_length"
                self.logger.record(key, float(shared_length[task_idx]), exclude="stdout")
        super().dump_logs()

    # ------------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------------
    def _entropy_coef(self, log_prob: th.Tensor) -> tuple[th.Tensor, th.Tensor | None]:
        """Per-task entropy coefficient ``(T,)`` and its loss (``None`` when fixed)."""
        if self.ent_coef_optimizer is None:
            return self.ent_coef_tensor, None
        ent_coef = th.exp(self.log_ent_coef.detach())
        ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy_value).detach().mean(dim=1)).sum()
        return ent_coef, ent_coef_loss

    def _step_entropy(self, ent_coef_loss: th.Tensor) -> th.Tensor:
        """One optimizer step of the entropy coefficients; returns the detached loss (for the logs)."""
        assert self.ent_coef_optimizer is not None
        self.ent_coef_optimizer.zero_grad()
        ent_coef_loss.backward()
        self.ent_coef_optimizer.step()
        return ent_coef_loss.detach()

    def _actor_loss(self, features: th.Tensor, ent_coef: th.Tensor, actions_pi: th.Tensor, log_prob: th.Tensor) -> th.Tensor:
        """Per-task SAC actor loss ``(T,)``; subclasses (e.g. DnC) add their terms here."""
        # The critic is frozen here: the actor loss must not spend time on critic weight gradients.
        self.critic.requires_grad_(False)
        q_pi = self.critic(features, actions_pi).min(dim=0).values  # (T, B)
        self.critic.requires_grad_(True)
        return (ent_coef[:, None] * log_prob - q_pi).mean(dim=1)

    @flushing_denormals
    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        if (self.replay_buffer.task_sizes() == 0).any():
            if not getattr(self, "_warned_empty_tasks", False):
                warnings.warn(
                    "Skipping gradient steps until every task has data "
                    f"(per-task transitions: {self.replay_buffer.task_sizes().tolist()}). "
                    "Raise learning_starts or give every task a sub-env.",
                    stacklevel=2,
                )
                self._warned_empty_tasks = True
            return
        self.policy.set_training_mode(True)
        optimizers: list[th.optim.Optimizer] = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers.append(self.ent_coef_optimizer)
        self._update_learning_rate(optimizers)

        stats: dict[str, list[th.Tensor]] = {"actor_loss": [], "critic_loss": [], "ent_coef": []}
        if self.ent_coef_optimizer is not None:
            stats["ent_coef_loss"] = []
        for gradient_step in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            features, _ = self.policy.split_obs(data.observations, check=False)  # checked when stored
            next_features, _ = self.policy.split_obs(data.next_observations, check=False)

            actions_pi, log_prob = self.actor.action_log_prob(features)
            ent_coef, ent_coef_loss = self._entropy_coef(log_prob)

            with th.no_grad():
                next_actions, next_log_prob = self.actor.action_log_prob(next_features)
                next_q = self.critic_target(next_features, next_actions).min(dim=0).values
                next_q = next_q - ent_coef[:, None] * next_log_prob
                target_q = data.rewards + (1.0 - data.dones) * self.gamma * next_q  # (T, B)

            current_q = self.critic(features, data.actions)  # (C, T, B)
            # Per task: 0.5 * sum over critics of the MSE, as SB3's SAC; summed over tasks,
            # whose parameters are disjoint, so each task gets exactly its own gradient.
            critic_loss = 0.5 * F.mse_loss(current_q, target_q.expand_as(current_q), reduction="none").mean(dim=2).sum(0)
            # Before any optimizer step: one task's nan must not reach its (or, through the entropy and critic
            # optimizers' shared steps, any other task's) weights. The entropy step moves here from before the
            # target (SB3's order): the target uses the coefficient from before that step either way.
            step = self._n_updates + gradient_step
            check_finite_update(
                {"critic loss": critic_loss, "log-prob": log_prob}, step, type(self).__name__, data, self.num_tasks
            )
            if ent_coef_loss is not None:
                stats["ent_coef_loss"].append(self._step_entropy(ent_coef_loss))
            self.critic.optimizer.zero_grad()
            critic_loss.sum().backward()
            self.critic.optimizer.step()

            actor_loss = self._actor_loss(features, ent_coef, actions_pi, log_prob)
            check_finite_update({"actor loss": actor_loss}, step, type(self).__name__, data, self.num_tasks)
            self.actor.optimizer.zero_grad()
            actor_loss.sum().backward()
            self.actor.optimizer.step()

            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)

            stats["actor_loss"].append(actor_loss.detach())
            stats["critic_loss"].append(critic_loss.detach())
            stats["ent_coef"].append(ent_coef)

        self._n_updates += gradient_steps
        self._on_train_end(gradient_steps)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for key, values in stats.items():
            per_task = th.stack(values).mean(dim=0).cpu().numpy()
            if per_task.ndim == 0:
                per_task = np.full(self.num_tasks, float(per_task))
            self.logger.record(f"train/{key}", float(per_task.mean()))
            if self.single_agent:
                continue  # its one pooled batch has no per-task rows
            for task, value in enumerate(per_task):
                self.logger.record(f"train/task_{task}/{key}", float(value), exclude="stdout")

    def _on_train_end(self, gradient_steps: int) -> None:
        """Hook after every ``train`` call (DnC distillation uses it)."""

    # ------------------------------------------------------------------------------------------
    # Save / load
    # ------------------------------------------------------------------------------------------
    def _excluded_save_params(self) -> list[str]:
        # The collector (its commitment statistics; per-row commitments are dropped when pickled) and the
        # per-task episode statistics are saved, so that `learn(reset_num_timesteps=False)` after `load`
        # continues them; the collector's settings are rebuilt from `collector_kwargs` (which `load` can override).
        return [*super()._excluded_save_params(), "actor", "critic", "critic_target", "_mixture_view"]

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """SB3's ``save``, written atomically (a temporary file renamed into place: a run killed while saving
        keeps the previous complete file), plus the selection counts as plain JSON (``selection_counts.json``
        in the zip), which ``python -m sb3_qmp.plot --heatmap`` reads without unpickling anything."""
        if not isinstance(path, (str, pathlib.Path)):
            super().save(path, exclude, include)
            return
        file = pathlib.Path(path)
        file = file if file.suffix else pathlib.Path(f"{file}.zip")  # where SB3 would write it
        with atomic_path(file) as tmp:
            super().save(tmp, exclude, include)
            if self.selection_counts is not None:
                with zipfile.ZipFile(tmp, "a") as archive:
                    archive.writestr(SELECTION_ENTRY, json.dumps(self.selection_counts.tolist()))

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """SB3's ``save_replay_buffer``, written atomically (a killed run never leaves a truncated buffer file)."""
        if not isinstance(path, (str, pathlib.Path)):
            super().save_replay_buffer(path)
            return
        file = pathlib.Path(path)
        file = file if file.suffix else pathlib.Path(f"{file}.pkl")
        with atomic_path(file) as tmp:
            super().save_replay_buffer(tmp)

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """Load a replay buffer saved by :meth:`save_replay_buffer`, checked against this model at once.

        :raises ValueError: if it is not a multi-task buffer of this model's class, number of tasks, task
            names, observation or action shape. A buffer whose number of transitions does not match the model's
            env steps (an older or newer checkpoint of the run, or another run) is reported with a warning.
        """
        previous = self.replay_buffer
        super().load_replay_buffer(path, truncate_last_traj)
        buffer = self.replay_buffer
        try:
            check_replay_buffer(self, buffer, str(path))
        except ValueError:
            self.replay_buffer = previous
            raise

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "actor.optimizer", "critic.optimizer"]
        if self.ent_coef_optimizer is not None:
            saved_pytorch_variables = ["log_ent_coef"]
            state_dicts.append("ent_coef_optimizer")
        else:
            saved_pytorch_variables = ["ent_coef_tensor"]
        return state_dicts, saved_pytorch_variables

    def learn(
        self: SelfMultiTaskSAC,
        total_timesteps: int,
        callback: Any = None,
        log_interval: int = 4,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfMultiTaskSAC:
        if self.env is not None:
            missing = tasks_without_env(self.env)
            if missing:
                raise ValueError(
                    f"Tasks {missing} have no sub-env: every sub-env of this VecEnv is fixed to another task, so these "
                    "tasks would never get data or a gradient step. Give every task a sub-env "
                    "(sb3_qmp.make_multitask_vec_env(..., n_envs_per_task=k) builds k per task), let the sub-envs "
                    "sample their task per episode (set_task(None)), or wrap the VecEnv in TaskAssignmentWrapper."
                )
        final_timesteps = total_timesteps + (0 if reset_num_timesteps else self.num_timesteps)
        if final_timesteps <= self.learning_starts:
            warnings.warn(
                f"This run ends at {final_timesteps} env steps, before learning_starts={self.learning_starts}: it only "
                "collects random actions and takes no gradient step. Raise total_timesteps or lower learning_starts.",
                stacklevel=2,
            )
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name or type(self).__name__,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
