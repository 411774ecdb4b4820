"""Vectorized multi-task envs: ``k`` sub-envs per task, each tagged with its own task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from sb3_qmp.common.multitask_env import MultiTaskWrapper


def _env_attr(env: VecEnv | gym.Env, name: str) -> Any:
    """An attribute of the (first sub-)env, looked up through every wrapper."""
    return env.get_attr(name, indices=[0])[0] if isinstance(env, VecEnv) else env.get_wrapper_attr(name)


def get_num_tasks(env: VecEnv | gym.Env) -> int:
    """Read the number of tasks of a (vectorized) multi-task env, with a helpful error if absent.

    The env must be a :class:`MultiTaskWrapper` (under any wrappers): a base env that merely has a
    ``num_tasks`` attribute has no one-hot task id in its observations, and the model would read
    its last observation entries as one.
    """
    try:
        num_tasks = _env_attr(env, "num_tasks")
    except AttributeError as e:
        raise ValueError(
            "This env carries no task information (no `num_tasks` attribute). Build it with "
            "sb3_qmp.make_multitask_vec_env(...), or wrap each env in sb3_qmp.MultiTaskWrapper, so that "
            "observations end with a one-hot task id."
        ) from e
    try:
        has_one_hot = bool(_env_attr(env, "has_task_one_hot"))
    except AttributeError:
        has_one_hot = False
    if not has_one_hot:
        raise ValueError(
            f"This env has num_tasks={num_tasks!r} but its observations carry no one-hot task id (it is not wrapped "
            "in sb3_qmp.MultiTaskWrapper). Wrap the base env, MultiTaskWrapper(env), or build the VecEnv with "
            "sb3_qmp.make_multitask_vec_env(...)."
        )
    if not isinstance(num_tasks, int) or num_tasks < 1:
        raise ValueError(f"`num_tasks` must be a positive int, got {num_tasks!r}.")
    if isinstance(env, VecEnv) and env.num_envs > 1:
        check_one_task_set(env)
    return num_tasks


def get_task_names(env: VecEnv | gym.Env) -> list[str]:
    """The task names of a multi-task env (``task_<i>`` where the env names none)."""
    num_tasks = get_num_tasks(env)
    try:
        names = _env_attr(env, "task_names")
    except AttributeError:
        names = None
    return [str(name) for name in names] if names else [f"task_{i}" for i in range(num_tasks)]


def check_one_task_set(venv: VecEnv) -> None:
    """Every sub-env of ``venv`` must run the same task set (same number and names of tasks): the one-hot
    suffix means task i only if task i is the same task in every sub-env."""
    try:
        sets = [tuple(names) for names in venv.get_attr("task_names")]
    except AttributeError:
        sets = [(str(n),) for n in venv.get_attr("num_tasks")]
    if len(set(sets)) > 1:
        groups: dict[tuple[str, ...], list[int]] = {}
        for index, names in enumerate(sets):
            groups.setdefault(names, []).append(index)
        described = "; ".join(f"sub-envs {indices}: {len(names)} tasks {list(names)}" for names, indices in groups.items())
        raise ValueError(
            f"The sub-envs of this VecEnv run different task sets ({described}). A model learns one task set: build "
            "every sub-env from the same multi-task env (make_multitask_vec_env(env_id, ...))."
        )


def tasks_without_env(venv: VecEnv) -> list[int]:
    """Tasks that no sub-env of ``venv`` will ever run: every sub-env is fixed to a task and no
    :class:`TaskAssignmentWrapper` cycles them. Empty when every task can be reached (or tasks are sampled)."""
    if any(wrapper.cycles for wrapper in task_assignment_wrappers(venv)):
        return []
    fixed = venv.get_attr("fixed_task")
    if any(task is None for task in fixed):
        return []
    return sorted(set(range(get_num_tasks(venv))) - {int(task) for task in fixed})


def assign_tasks(venv: VecEnv, num_tasks: int | None = None) -> list[int]:
    """Fix the task of every sub-env round-robin (sub-env ``e`` runs task ``e % T``).

    Takes effect at the next reset. Returns the task of each sub-env.
    """
    num_tasks = get_num_tasks(venv) if num_tasks is None else num_tasks
    tasks = [e % num_tasks for e in range(venv.num_envs)]
    for env_idx, task in enumerate(tasks):
        # `env_method` reaches the MultiTaskWrapper through any outer wrappers (`set_attr` would not).
        venv.env_method("set_task", task, indices=[env_idx])
    return tasks


class TaskAssignmentWrapper(VecEnvWrapper):
    """VecEnv wrapper that assigns tasks to the sub-envs of any VecEnv (rl-zoo3's ``vec_env_wrapper``).

    Sub-env ``e`` of ``n`` runs task ``(e + k * n) % T`` in its ``k``-th episode since the last ``reset()``:

    * ``n`` a multiple of ``T`` (training, ``n_envs: T`` in the YAML): every sub-env keeps one task,
      ``e % T``, as :func:`make_multitask_vec_env` does.
    * otherwise (the zoo's single evaluation env, the env it builds while preparing ``-optimize``,
      ``rl_zoo3.enjoy``): tasks are visited in turn, so ``k * T`` consecutive episodes of one sub-env
      cover every task ``k`` times. Use evaluation episode counts that are multiples of ``T``.

    rl-zoo3 gives every sub-env the same kwargs, so the assignment has to happen here. Tasks are set
    with ``env_method("set_task", i)`` (``VecEnv.set_attr`` would only set the outer wrapper) and take
    effect at the next reset; every ``reset()`` restarts the cycle, so successive evaluations see the
    same task order.

    Set ``assign = False`` to hand the task choice to someone else for a while (the per-task
    evaluation callback does, so that it can run every task in turn).

    :param venv: a VecEnv of multi-task envs (each with ``set_task``).
    """

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.assign = True
        self.num_tasks = get_num_tasks(venv)
        self.cycles = venv.num_envs % self.num_tasks != 0
        self._episodes = np.zeros(venv.num_envs, dtype=np.int64)
        self.tasks = self._task_of(np.arange(venv.num_envs), self._episodes)
        self._set_tasks(range(venv.num_envs), self.tasks)

    def _task_of(self, envs: np.ndarray, episodes: np.ndarray) -> np.ndarray:
        return (envs + episodes * self.num_envs) % self.num_tasks

    def _set_tasks(self, envs: Any, tasks: Any) -> None:
        for env_idx, task in zip(envs, tasks):
            self.venv.env_method("set_task", int(task), indices=[int(env_idx)])

    def reset(self) -> VecEnvObs:
        if not self.assign:
            return self.venv.reset()
        all_envs = np.arange(self.num_envs)
        self._episodes[:] = 0
        self.tasks = self._task_of(all_envs, self._episodes)
        self._set_tasks(all_envs, self.tasks)
        obs = self.venv.reset()
        if self.cycles:
            # set_task applies at the next reset: queue each sub-env's next task now.
            self._set_tasks(all_envs, self._task_of(all_envs, self._episodes + 1))
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        if self.assign and self.cycles and dones.any():
            done_envs = np.flatnonzero(dones)
            # The auto-reset has already started the queued episode; queue the one after it.
            self._episodes[done_envs] += 1
            self.tasks[done_envs] = self._task_of(done_envs, self._episodes[done_envs])
            self._set_tasks(done_envs, self._task_of(done_envs, self._episodes[done_envs] + 1))
        return obs, rewards, dones, infos


def task_assignment_wrappers(venv: VecEnv) -> list[TaskAssignmentWrapper]:
    """Every :class:`TaskAssignmentWrapper` in the wrapper chain of ``venv``, outermost first."""
    found: list[TaskAssignmentWrapper] = []
    layer: VecEnv = venv
    while isinstance(layer, VecEnvWrapper):
        if isinstance(layer, TaskAssignmentWrapper):
            found.append(layer)
        layer = layer.venv
    return found


def unregistered_env_id_message(env_id: str) -> str:
    """Why ``env_id`` cannot be built, with the ids this package registers."""
    from sb3_qmp.envs import package_env_ids

    return (
        f"The env id {env_id!r} is not registered with gymnasium. sb3-qmp registers {package_env_ids()}; an id of "
        "another package needs that package imported first (rl-zoo3: --gym-packages), or gymnasium.register."
    )


def check_env_id(env_id: str) -> None:
    """Raise a ``ValueError`` naming this package's ids unless ``env_id`` is registered with gymnasium."""
    if env_id not in gym.registry:
        raise ValueError(unregistered_env_id_message(env_id))


class _MakeRegisteredEnv:
    """Picklable env factory that registers this package's ids first (SubprocVecEnv workers
    start in fresh interpreters where ``import sb3_qmp`` has not run)."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any]) -> None:
        self.env_id = env_id
        self.env_kwargs = env_kwargs

    def __call__(self) -> gym.Env:
        import sb3_qmp.envs  # noqa: F401

        return gym.make(self.env_id, **self.env_kwargs)


def make_multitask_vec_env(
    env: str | Sequence[Callable[[], gym.Env]] | Callable[[], gym.Env],
    n_envs_per_task: int = 1,
    seed: int | None = None,
    vec_env_cls: type[DummyVecEnv] | type[SubprocVecEnv] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    monitor_dir: str | None = None,
    wrapper_class: Callable[[gym.Env], gym.Env] | None = None,
    vec_env_kwargs: dict[str, Any] | None = None,
    wrapper_kwargs: dict[str, Any] | None = None,
    monitor_kwargs: dict[str, Any] | None = None,
) -> VecEnv:
    """Build an SB3 VecEnv with ``n_envs_per_task`` sub-envs per task, sub-env ``e`` on task ``e % T``.

    :param env: a registered multi-task env id (e.g. ``"MultiGoalPoint-v0"``), a callable
        returning a multi-task env, or a list of T single-task env factories (one per task).
    :param n_envs_per_task: sub-envs per task (``n_envs = n_envs_per_task * T``).
    :param seed: base seed; sub-env ``e`` is seeded with ``seed + e`` (SB3's rule). Built from per-task
        factories, sub-env ``e`` seeds task ``t``'s env with
        :func:`~sb3_qmp.common.multitask_env.task_env_seed` ``(seed + e, t)``: every (sub-env, task)
        pair has a stream of its own.
    :param vec_env_cls: ``DummyVecEnv`` (default) or ``SubprocVecEnv`` (built as
        :class:`~sb3_qmp.common.subproc.MultiTaskSubprocVecEnv`: the ``forkserver`` start method by default, and a
        sub-env's exception is raised naming the env and the exception).
    :param env_kwargs: keyword arguments for ``gym.make`` (env ids only).
    :param monitor_dir: where SB3's ``Monitor`` writes its csv files (optional).
    :param wrapper_class: extra gymnasium wrapper applied to every sub-env (inside ``Monitor``).
    :param vec_env_kwargs: keyword arguments for the VecEnv class.
    :param wrapper_kwargs: keyword arguments for ``wrapper_class`` (as in SB3's ``make_vec_env``).
    :param monitor_kwargs: keyword arguments for SB3's ``Monitor`` (as in ``make_vec_env``).
    :return: the vectorized env.
    """
    if n_envs_per_task < 1:
        raise ValueError(f"n_envs_per_task must be >= 1, got {n_envs_per_task}.")
    if isinstance(env, str):
        check_env_id(env)
        env_factory: Callable[[], gym.Env] = _MakeRegisteredEnv(env, env_kwargs or {})
        probe = env_factory()
    elif callable(env):
        probe = env()
        env_factory = env
    elif isinstance(env, Sequence):
        if env_kwargs:
            raise ValueError("env_kwargs only applies to env ids; bind arguments inside your env factories instead.")
        factories: list[Callable[[], gym.Env]] = list(env)  # type: ignore[arg-type]
        probe = MultiTaskWrapper(factories)  # builds every task's env once: checks their spaces
        # Each sub-env is fixed to one task: it builds that task's env (and task 0's, for the spaces) only.
        env_factory = lambda: MultiTaskWrapper(factories, lazy=True)  # noqa: E731
    else:
        raise TypeError(f"Expected an env id, an env factory or a list of env factories, got {type(env).__name__}.")
    num_tasks = get_num_tasks(probe)
    probe.close()

    if vec_env_cls is SubprocVecEnv:
        # The same class, but a worker's exception is raised by name (SB3's hangs with fork, says EOFError otherwise).
        from sb3_qmp.common.subproc import MultiTaskSubprocVecEnv

        vec_env_cls = MultiTaskSubprocVecEnv
        vec_env_kwargs = {"label": env if isinstance(env, str) else "multi-task env", **(vec_env_kwargs or {})}
    venv = make_vec_env(
        env_factory,
        n_envs=n_envs_per_task * num_tasks,
        seed=seed,
        monitor_dir=monitor_dir,
        wrapper_class=wrapper_class,
        vec_env_cls=vec_env_cls,  # type: ignore[arg-type]
        vec_env_kwargs=vec_env_kwargs,
        wrapper_kwargs=wrapper_kwargs,
        monitor_kwargs=monitor_kwargs,
    )
    assign_tasks(venv, num_tasks)
    return venv
