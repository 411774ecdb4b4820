"""Multi-task environment conventions.

A *multi-task env* in sb3-qmp is a gymnasium env whose observation ends with a one-hot task
suffix and whose ``info`` carries ``"task_id"``. The suffix is what lets ``model.predict(obs)``
route every row to its own task's policy, which is all that SB3/rl-zoo3 evaluation code calls.

:class:`MultiTaskWrapper` builds such an env from either

* one base env that knows its tasks (attribute ``num_tasks`` and method ``set_task(i)``,
  applied at the next ``reset``), or
* a list of T env factories, one per task (same spaces).

The task of a wrapper is either fixed (``task_id=i``, or ``set_task(i)``) or drawn uniformly
at every reset (``task_id=None``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

TASK_ID_KEY = "task_id"


def check_task_id(task_id: Any, num_tasks: int) -> int:
    """Validate a task index and return it as a plain ``int``."""
    if isinstance(task_id, (bool, np.bool_)) or not isinstance(task_id, (int, np.integer)):
        raise TypeError(f"task_id must be an int in [0, {num_tasks - 1}], got {task_id!r} ({type(task_id).__name__})")
    if not 0 <= int(task_id) < num_tasks:
        raise ValueError(f"task_id={task_id} is out of range: this env has {num_tasks} tasks (valid: 0..{num_tasks - 1})")
    return int(task_id)


def task_env_seed(seed: int, task_id: int) -> int:
    """The seed of task ``task_id``'s env inside a :class:`MultiTaskWrapper` reset with ``seed``.

    A stream of its own per ``(seed, task_id)`` pair (numpy ``SeedSequence``): sub-env ``e`` of a VecEnv
    gets ``seed + e``, and ``seed + task_id`` would give the pairs ``(e, t)`` and ``(e + 1, t - 1)``
    the same stream, i.e. the same start states.
    """
    return int(np.random.SeedSequence(seed, spawn_key=(task_id,)).generate_state(1)[0])


def _check_same_spaces(envs: Sequence[gym.Env], indices: Sequence[int] | None = None) -> None:
    """Raise unless every env has task 0's spaces (``indices``: the task index of each env, for the message)."""
    obs_space, act_space = envs[0].observation_space, envs[0].action_space
    tasks = list(indices) if indices is not None else list(range(len(envs)))
    for i, env in zip(tasks[1:], envs[1:]):
        if env.observation_space != obs_space:
            raise ValueError(
                f"All tasks must share one observation space: task 0 has {obs_space}, task {i} has "
                f"{env.observation_space}. Pad or crop the observations so every task sees the same space."
            )
        if env.action_space != act_space:
            raise ValueError(
                f"All tasks must share one action space: task 0 has {act_space}, task {i} has {env.action_space}."
            )


def task_one_hot_space(base: spaces.Space, num_tasks: int) -> spaces.Box:
    """The observation space of ``base`` with a one-hot suffix of length ``num_tasks`` appended."""
    if not isinstance(base, spaces.Box) or len(base.shape) != 1:
        raise ValueError(
            f"Multi-task envs need a flat Box observation space (1-D), got {base}. "
            "Flatten the observation first, e.g. with gymnasium.wrappers.FlattenObservation."
        )
    low = np.concatenate([base.low.astype(np.float32), np.zeros(num_tasks, dtype=np.float32)])
    high = np.concatenate([base.high.astype(np.float32), np.ones(num_tasks, dtype=np.float32)])
    return spaces.Box(low=low, high=high, dtype=np.float32)


class MultiTaskWrapper(gym.Env):
    """Turn T tasks into one env with a one-hot task suffix on the observation.

    :param env: a base env with ``num_tasks`` and ``set_task(i)``, or a sequence of T env
        factories (callables returning one env per task, all on the same spaces).
    :param task_id: the fixed task of this env; ``None`` draws a task uniformly at every reset.
        ``reset(options={"task_id": i})`` is ``set_task(i)`` before that reset: the task stays fixed
        for the following episodes too (``options={"task_id": None}`` returns to drawing).
    :param lazy: with env factories, build task ``i``'s env only when task ``i`` first runs (task 0's
        env is built at once for the spaces; the others are checked against it when built). A
        vectorized env whose sub-envs are fixed to one task each then holds about one env per
        sub-env instead of T. The default builds and checks every task's env at once.

    Attributes it does not have itself are looked up on the active task's env (:attr:`env`), as a
    ``gymnasium.Wrapper`` does; ``unwrapped`` stays this env (it is what ``gym.make`` registers for the
    package's ids), ``env.unwrapped`` is the active task's base env.
    """

    metadata: dict[str, Any] = {"render_modes": []}
    has_task_one_hot = True  # what tells a model that observations end with the task's one-hot

    def __init__(self, env: gym.Env | Sequence[Callable[[], gym.Env]], task_id: int | None = None, lazy: bool = False) -> None:
        super().__init__()
        self._factories: list[Callable[[], gym.Env]] = []
        self._task_seed: int | None = None
        if isinstance(env, gym.Env):
            num_tasks = getattr(env.unwrapped, "num_tasks", None)
            if num_tasks is None or not callable(getattr(env.unwrapped, "set_task", None)):
                raise TypeError(
                    f"{type(env.unwrapped).__name__} has no task information: a single base env must define "
                    "`num_tasks` and `set_task(task_id)`. Otherwise pass a list of one env factory per task."
                )
            self._task_envs: list[gym.Env | None] | None = None
            self._base: gym.Env = env
            self.num_tasks = int(num_tasks)
        elif isinstance(env, Sequence) and not isinstance(env, str):
            if len(env) < 1:
                raise ValueError("MultiTaskWrapper needs at least one task (got an empty list of env factories).")
            if not all(callable(f) for f in env):
                raise TypeError("Pass env factories (callables returning a gym.Env), e.g. `lambda: gym.make(...)`.")
            self._factories = list(env)
            if lazy:
                self._task_envs = [self._factories[0](), *([None] * (len(env) - 1))]
            else:
                built = [factory() for factory in env]
                _check_same_spaces(built)
                self._task_envs = list(built)
            self._base = self._task_envs[0]  # type: ignore[assignment]
            self.num_tasks = len(self._task_envs)
        else:
            raise TypeError(f"Expected a gym.Env or a sequence of env factories, got {type(env).__name__}.")
        if self.num_tasks < 1:
            raise ValueError(f"A multi-task env needs num_tasks >= 1, got {self.num_tasks}.")

        self.action_space = self._base.action_space
        if not isinstance(self.action_space, spaces.Box):
            raise ValueError(f"QMP and MultiTaskSAC need a continuous (Box) action space, got {self.action_space}.")
        self.base_observation_space = self._base.observation_space
        self.observation_space = task_one_hot_space(self.base_observation_space, self.num_tasks)
        self.render_mode = getattr(self._base, "render_mode", None)
        # Advertise exactly what the tasks' env can render (gymnasium's checker renders every listed mode).
        self.metadata = dict(getattr(self._base.unwrapped, "metadata", {}))
        self.task_names: list[str] = list(
            getattr(self._base.unwrapped, "task_names", [f"task_{i}" for i in range(self.num_tasks)])
        )

        self._fixed_task: int | None = None if task_id is None else check_task_id(task_id, self.num_tasks)
        self.task_id: int = self._fixed_task if self._fixed_task is not None else 0
        self._one_hot = np.eye(self.num_tasks, dtype=np.float32)

    @property
    def env(self) -> gym.Env:
        """The env that currently runs the active task."""
        if self._task_envs is None:
            return self._base
        task_env = self._task_envs[self.task_id]
        if task_env is None:  # lazy: first episode of this task
            task_env = self._factories[self.task_id]()
            _check_same_spaces([self._base, task_env], indices=[0, self.task_id])
            if self._task_seed is not None:
                task_env.reset(seed=task_env_seed(self._task_seed, self.task_id))
            self._task_envs[self.task_id] = task_env
        return task_env

    def __getattr__(self, name: str) -> Any:
        # As gymnasium.Wrapper does: what this env lacks is the active task's env's (so VecEnv get_attr,
        # has_attr and env_method reach e.g. the point env's step_size). Private names are never forwarded.
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return getattr(self.env, name)

    @property
    def fixed_task(self) -> int | None:
        """The task every episode runs (from the next ``reset`` on), or ``None`` when tasks are sampled."""
        return self._fixed_task

    def set_task(self, task_id: int | None) -> None:
        """Fix this env's task from the next ``reset`` on; ``None`` samples a task per episode."""
        self._fixed_task = None if task_id is None else check_task_id(task_id, self.num_tasks)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(obs, dtype=np.float32).ravel(), self._one_hot[self.task_id]])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = dict(options or {})
        if TASK_ID_KEY in options:
            self.set_task(options.pop(TASK_ID_KEY))
        if seed is not None and self._task_envs is not None:
            # Every per-task env gets its own stream derived from the one seed (lazy envs when built).
            self._task_seed = seed
            for i, task_env in enumerate(self._task_envs):
                if task_env is not None:
                    task_env.reset(seed=task_env_seed(seed, i))
        if self._fixed_task is not None:
            self.task_id = self._fixed_task
        else:
            self.task_id = int(self.np_random.integers(self.num_tasks))
        if self._task_envs is None:
            self._base.unwrapped.set_task(self.task_id)  # type: ignore[attr-defined]
            obs, info = self._base.reset(seed=seed, options=options or None)
        else:
            obs, info = self.env.reset(options=options or None)
        info[TASK_ID_KEY] = self.task_id
        return self._observe(obs), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info[TASK_ID_KEY] = self.task_id
        if "is_success" not in info and "success" in info:
            # SB3 reads `is_success`; Meta-World reports `success`.
            info["is_success"] = bool(info["success"])
        return self._observe(obs), float(reward), bool(terminated), bool(truncated), info

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        for env in self._task_envs or [self._base]:
            if env is not None:
                env.close()


def one_hot_error(suffix: np.ndarray, valid: np.ndarray) -> ValueError:
    """The error for task suffixes ``(..., T)`` of which the rows where ``valid`` is False are not one-hot."""
    bad = np.argwhere(~np.asarray(valid))
    rows = [tuple(int(i) for i in index) if len(index) > 1 else int(index[0]) for index in bad[:5]]
    examples = [np.asarray(suffix)[tuple(index)].tolist() for index in bad[:3]]
    return ValueError(
        f"{len(bad)} observation row(s) (e.g. {rows}) do not end with a one-hot task id: their last "
        f"{np.shape(suffix)[-1]} entries are e.g. {examples}. A multi-task model reads every row's task from this "
        "suffix (exactly one 1, zeros elsewhere); any other suffix would silently be routed to a wrong task. Build the "
        "env with sb3_qmp.make_multitask_vec_env or sb3_qmp.MultiTaskWrapper and do not rescale the suffix "
        "(sb3_qmp.common.normalize.VecNormalizePerTask normalises the features only)."
    )


def task_ids_from_one_hot(suffix: np.ndarray) -> np.ndarray:
    """The task index of every row of one-hot task suffixes ``(..., T)``.

    :raises ValueError: if a row is not exactly one-hot (all zeros, several ones, rescaled, ...).
    """
    valid = ((suffix == 0) | (suffix == 1)).all(axis=-1) & (suffix.sum(axis=-1) == 1)
    if not valid.all():
        raise one_hot_error(suffix, valid)
    return np.argmax(suffix, axis=-1)
