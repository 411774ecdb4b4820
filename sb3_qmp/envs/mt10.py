"""Meta-World MT10 and MT50: the standard 10- and 50-task manipulation benchmarks (``metaworld.MT10`` /
``metaworld.MT50``, v3 envs; ``MetaWorldMT10-v0`` / ``MetaWorldMT50-v0``). MT10 is described here; MT50 has
the same conventions over its 50 tasks (:class:`MetaWorldMT50Env`).

Tasks, in this fixed order (``task_names``): reach, push, pick-place, door-open, drawer-open,
drawer-close, button-press-topdown, peg-insert-side, window-open, window-close (all ``-v3``).
Each task has the benchmark's 50 parametric variations (object and goal positions); every
``reset`` picks one with ``self.np_random`` (reproducible under ``reset(seed=...)``), or takes
``options={"variation": k}``.

* Observation (39, float32): hand xyz, gripper opening, up to two objects' xyz + quaternion
  (14 numbers, zero-padded), the same 18 numbers of the previous frame, goal xyz. Metaworld
  clips it to its own space, whose object entries are unbounded; here they are clipped to
  ``[-object_bound, object_bound]`` so that the space is finite (the union over the 10 tasks).
* Action (4): end-effector xyz displacement and gripper effort, in ``[-1, 1]``.
* Reward, ``info["success"]`` and the other ``info`` keys are metaworld's (reward version v2).
  Success, two ways: ``info["is_success"] = bool(info["success"])``, success at the current step (the
  strict metric: read at the last step, "success at the end of the episode"), and
  ``info["success_any_step"]``, True once metaworld's flag has been set at any step of the episode
  (the authors' metric, the one the paper's curves count). Episodes do not terminate on success by
  default; the 500-step limit comes from the registration of ``MetaWorldMT10-v0`` (metaworld's own
  500-step truncation, and its error when stepping past it, are disabled).
* Variation sets: ``variation_set="train"`` (default) uses ``metaworld.MT10(seed=benchmark_seed)``,
  ``"eval"`` uses ``metaworld.MT10(seed=benchmark_seed + 100)``, a separate set of object and goal
  positions, as the authors evaluated.

Building the benchmark (500 variations) takes a few seconds; it is cached per process and
benchmark seed, and so are the observation bounds. One metaworld env per task is kept, built at the
task's first reset (about 0.1 s each), so an env that always runs the same task builds only one.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_qmp.common.multitask_env import MultiTaskWrapper, check_task_id
from sb3_qmp.envs.variations import check_variation_set, variation_set_seed

TASK_NAMES = [
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
]
# MT50: metaworld's 50 tasks in the benchmark's own order (metaworld 3.1.1).
MT50_TASK_NAMES = [
    "assembly-v3",
    "basketball-v3",
    "bin-picking-v3",
    "box-close-v3",
    "button-press-topdown-v3",
    "button-press-topdown-wall-v3",
    "button-press-v3",
    "button-press-wall-v3",
    "coffee-button-v3",
    "coffee-pull-v3",
    "coffee-push-v3",
    "dial-turn-v3",
    "disassemble-v3",
    "door-close-v3",
    "door-lock-v3",
    "door-open-v3",
    "door-unlock-v3",
    "hand-insert-v3",
    "drawer-close-v3",
    "drawer-open-v3",
    "faucet-open-v3",
    "faucet-close-v3",
    "hammer-v3",
    "handle-press-side-v3",
    "handle-press-v3",
    "handle-pull-side-v3",
    "handle-pull-v3",
    "lever-pull-v3",
    "pick-place-wall-v3",
    "pick-out-of-hole-v3",
    "pick-place-v3",
    "plate-slide-v3",
    "plate-slide-side-v3",
    "plate-slide-back-v3",
    "plate-slide-back-side-v3",
    "peg-insert-side-v3",
    "peg-unplug-side-v3",
    "soccer-v3",
    "stick-push-v3",
    "stick-pull-v3",
    "push-v3",
    "push-wall-v3",
    "push-back-v3",
    "reach-v3",
    "reach-wall-v3",
    "shelf-place-v3",
    "sweep-into-v3",
    "sweep-v3",
    "window-open-v3",
    "window-close-v3",
]
TASK_SETS = {"MT10": TASK_NAMES, "MT50": MT50_TASK_NAMES}
NUM_VARIATIONS = 50


@functools.lru_cache(maxsize=4)
def metaworld_benchmark(name: str = "MT10", seed: int | None = 0) -> Any:
    """``metaworld.MT10(seed=seed)`` or ``metaworld.MT50(seed=seed)``, built once per process (it resets every
    task's env 50 times: a few seconds for MT10, ~25 s for MT50)."""
    import metaworld

    benchmark = getattr(metaworld, name)(seed=seed)
    names = list(benchmark.train_classes)
    if sorted(names) != sorted(TASK_SETS[name]):
        raise RuntimeError(f"Unexpected {name} task set in this metaworld version: {names}")
    return benchmark


def _make_task_env(benchmark: Any, name: str, kwargs: dict[str, Any]) -> Any:
    env = benchmark.train_classes[name](**kwargs)
    env.set_task(next(t for t in benchmark.train_tasks if t.env_name == name))  # goal becomes observable
    # The registered TimeLimit truncates; metaworld's own 500-step cap would raise past it.
    env.max_path_length = sys.maxsize
    return env


@functools.lru_cache(maxsize=4)
def _observation_bounds(name: str, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Union over the benchmark's tasks of the spaces metaworld clips observations to (float64)."""
    benchmark = metaworld_benchmark(name, seed)
    lows, highs = [], []
    for task_name in TASK_SETS[name]:
        env = _make_task_env(benchmark, task_name, {})
        # `env.observation_space` is not updated by set_task; metaworld clips to this one.
        space = env.sawyer_observation_space
        lows.append(space.low)
        highs.append(space.high)
        env.close()
    return np.min(lows, axis=0).astype(np.float64), np.max(highs, axis=0).astype(np.float64)


class MetaWorldMT10Env(gym.Env):
    """The 10 MT10 tasks behind one env with ``set_task`` (see module docstring).

    :param task_id: initial task (changed with :meth:`set_task`, applied at the next reset).
    :param benchmark_seed: seed of ``metaworld.MT10`` (which 50 variations each task has);
        keep it fixed so that every env of a run sees the same variations (the run's seed, to do as
        the authors did). ``None`` lets metaworld draw the variations at random.
    :param variation_set: ``"train"`` (``MT10(seed=benchmark_seed)``) or ``"eval"``
        (``MT10(seed=benchmark_seed + 100)``: the authors' separate evaluation set). Give the
        evaluation env the training env's ``benchmark_seed`` and ``variation_set="eval"``.
    :param terminate_on_success: end the episode at the first success step.
    :param object_bound: finite bound of the object entries of the observation.
    :param render_mode: ``"rgb_array"`` to render with metaworld's MuJoCo renderer.
    :param camera_name: a camera of the model (``topview``, ``corner``, ...); ``None`` is an upright
        overview of the table (metaworld's ``corner`` cameras render upside down).
    :param width: rendered image width.
    :param height: rendered image height.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 80}
    benchmark_name = "MT10"
    num_tasks = len(TASK_NAMES)
    task_names = TASK_NAMES

    def __init__(
        self,
        task_id: int = 0,
        benchmark_seed: int | None = 0,
        variation_set: str = "train",
        terminate_on_success: bool = False,
        object_bound: float = 10.0,
        render_mode: str | None = None,
        camera_name: str | None = None,
        width: int = 480,
        height: int = 480,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if object_bound <= 0:
            raise ValueError(f"object_bound must be > 0, got {object_bound}")
        self.task_id = check_task_id(task_id, self.num_tasks)
        self.current_task = self.task_id  # the task of the running episode (task_id applies at reset)
        self.terminate_on_success = bool(terminate_on_success)
        self.render_mode = render_mode
        self.benchmark_seed = benchmark_seed
        self.variation_set = check_variation_set(variation_set)
        if benchmark_seed is None and variation_set == "eval":
            raise ValueError("variation_set='eval' is drawn from benchmark_seed + 100: give benchmark_seed (the run's seed).")
        #: The seed of ``metaworld.MT10`` this env's variations come from.
        self.variation_list_seed = None if benchmark_seed is None else variation_set_seed(benchmark_seed, variation_set)

        self._benchmark = metaworld_benchmark(self.benchmark_name, self.variation_list_seed)
        self.variations: list[list[Any]] = [
            [task for task in self._benchmark.train_tasks if task.env_name == name] for name in self.task_names
        ]
        for name, tasks in zip(self.task_names, self.variations, strict=True):
            if len(tasks) != NUM_VARIATIONS:
                raise RuntimeError(f"{name}: expected {NUM_VARIATIONS} variations, got {len(tasks)}")
        self._env_kwargs = {"render_mode": render_mode, "camera_name": camera_name, "width": width, "height": height}
        # One metaworld env per task, built at its first use (an env fixed to one task builds one).
        self.envs: list[Any | None] = [None] * self.num_tasks
        low, high = _observation_bounds(self.benchmark_name, self.variation_list_seed)
        low, high = np.clip(low, -object_bound, object_bound), np.clip(high, -object_bound, object_bound)
        self._low, self._high = low, high
        self.observation_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.variation = 0
        self._success_any_step = False

    @property
    def env(self) -> Any:
        """The metaworld env of the running episode's task (built on first use)."""
        env = self.envs[self.current_task]
        if env is None:
            env = _make_task_env(self._benchmark, self.task_names[self.current_task], self._env_kwargs)
            self.envs[self.current_task] = env
        return env

    @property
    def task_name(self) -> str:
        """Name of the running episode's task."""
        return self.task_names[self.current_task]

    def set_task(self, task_id: int) -> None:
        self.task_id = check_task_id(task_id, self.num_tasks)

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        # Clip in float64, then cast: rounding is monotonic, so the result stays inside the float32 box.
        return np.clip(obs, self._low, self._high).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = dict(options or {})
        variation = options.pop("variation", None)
        if options:
            raise ValueError(
                f"MetaWorldMT10Env.reset got unknown options {sorted(options)}: only 'variation' "
                f"(0..{NUM_VARIATIONS - 1}) is accepted; choose the task with set_task()."
            )
        if variation is None:
            variation = int(self.np_random.integers(NUM_VARIATIONS))
        elif isinstance(variation, (bool, np.bool_)) or not isinstance(variation, (int, np.integer)):
            raise TypeError(f"variation must be an int in [0, {NUM_VARIATIONS - 1}], got {variation!r}")
        elif not 0 <= variation < NUM_VARIATIONS:
            raise ValueError(f"variation={variation} is out of range (valid: 0..{NUM_VARIATIONS - 1})")
        self.variation = int(variation)
        self.current_task = self.task_id
        env = self.env
        env.set_task(self.variations[self.current_task][self.variation])
        obs, info = env.reset()
        info = dict(info)
        self._success_any_step = False  # metaworld evaluates success at steps only
        info.update(is_success=False, success_any_step=False, task_name=self.task_name, variation=self.variation)
        return self._obs(obs), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (4,):
            raise ValueError(f"action must have shape (4,), got {action.shape}")
        obs, reward, _, _, info = self.env.step(np.clip(action, -1.0, 1.0))
        success = bool(info["success"])
        self._success_any_step = self._success_any_step or success
        info["is_success"] = success  # strict: success at this step (read at the last step of an episode)
        info["success_any_step"] = self._success_any_step  # the authors' metric: success at any step so far
        return self._obs(obs), float(reward), success and self.terminate_on_success, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self.env.render()  # type: ignore[no-any-return]

    def close(self) -> None:
        for env in self.envs:
            if env is not None:
                env.close()


class MetaWorldMT50Env(MetaWorldMT10Env):
    """Meta-World MT50: the 50 tasks of ``metaworld.MT50`` (in :data:`MT50_TASK_NAMES`' order), with the
    conventions of :class:`MetaWorldMT10Env` (same arguments, observation, action, success keys, variation
    sets). Building the benchmark takes ~25 s per process and benchmark seed (then cached)."""

    benchmark_name = "MT50"
    num_tasks = len(MT50_TASK_NAMES)
    task_names = MT50_TASK_NAMES


def make_env(task_id: int | None = None, **kwargs: Any) -> MultiTaskWrapper:
    """Entry point of ``MetaWorldMT10-v0``: :class:`MetaWorldMT10Env` with the one-hot task suffix."""
    return MultiTaskWrapper(MetaWorldMT10Env(**kwargs), task_id=task_id)


def make_mt50_env(task_id: int | None = None, **kwargs: Any) -> MultiTaskWrapper:
    """Entry point of ``MetaWorldMT50-v0``: :class:`MetaWorldMT50Env` with the one-hot task suffix."""
    return MultiTaskWrapper(MetaWorldMT50Env(**kwargs), task_id=task_id)
