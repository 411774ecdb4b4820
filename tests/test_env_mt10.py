"""Tests of the Meta-World MT10 task set (sb3_qmp.envs.mt10).

Building ``metaworld.MT10`` takes several seconds; it is cached per process, so the module-scoped
env and every ``gym.make`` here share one benchmark.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sb3_qmp  # noqa: F401  (registers the env ids)
from sb3_qmp.envs import mt10
from sb3_qmp.envs.mt10 import NUM_VARIATIONS, TASK_NAMES, MetaWorldMT10Env, make_env

NUM_TASKS = 10


@pytest.fixture(scope="module")
def base_env() -> Iterator[MetaWorldMT10Env]:
    env = MetaWorldMT10Env()
    yield env
    env.close()


def test_task_set(base_env: MetaWorldMT10Env) -> None:
    assert base_env.num_tasks == NUM_TASKS == len(base_env.task_names)
    assert base_env.task_names[0] == "reach-v3" and base_env.task_names[-1] == "window-close-v3"
    assert all(len(v) == NUM_VARIATIONS for v in base_env.variations)
    assert [v[0].env_name for v in base_env.variations] == TASK_NAMES
    space = base_env.observation_space
    assert isinstance(space, gym.spaces.Box)
    assert space.shape == (39,) and space.dtype == np.float32
    assert np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))
    assert base_env.action_space.shape == (4,)


@pytest.mark.parametrize("task_id", range(NUM_TASKS))
def test_check_env_every_task(base_env: MetaWorldMT10Env, task_id: int) -> None:
    base_env.set_task(task_id)
    gym_check_env(base_env, skip_render_check=True)
    obs, info = base_env.reset(seed=0)
    assert info["task_name"] == TASK_NAMES[task_id] and base_env.env is base_env.envs[task_id]
    for _ in range(5):
        obs, reward, terminated, truncated, info = base_env.step(base_env.action_space.sample())
        assert base_env.observation_space.contains(obs)
        assert isinstance(info["is_success"], bool) and info["is_success"] == bool(info["success"])
        assert np.isfinite(reward) and not terminated and not truncated


@pytest.mark.parametrize("task_id", range(NUM_TASKS))
def test_gym_make_and_sb3_check_env(task_id: int) -> None:
    env = gym.make("MetaWorldMT10-v0", task_id=task_id)
    assert env.spec is not None and env.spec.max_episode_steps == 500
    sb3_check_env(env.unwrapped, warn=True)
    obs, info = env.reset(seed=1)
    assert obs.shape == (39 + NUM_TASKS,) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[39:], np.eye(NUM_TASKS, dtype=np.float32)[task_id])
    assert info["task_id"] == task_id and info["task_name"] == TASK_NAMES[task_id]
    env.close()


def test_seeded_reset_is_reproducible(base_env: MetaWorldMT10Env) -> None:
    base_env.set_task(1)
    first = [base_env.reset(seed=7) for _ in range(1)] + [base_env.reset() for _ in range(4)]
    again = [base_env.reset(seed=7) for _ in range(1)] + [base_env.reset() for _ in range(4)]
    for (o1, i1), (o2, i2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(o1, o2)
        assert i1["variation"] == i2["variation"]
    # Variations are drawn per reset: the object/goal positions change between episodes.
    assert len({i["variation"] for _, i in first}) > 1
    assert not all(np.array_equal(first[0][0], o) for o, _ in first[1:])
    # A fixed variation gives a fixed start.
    o1, _ = base_env.reset(options={"variation": 5})
    o2, _ = base_env.reset(seed=123, options={"variation": 5})
    np.testing.assert_array_equal(o1, o2)


def test_task_switching_changes_env(base_env: MetaWorldMT10Env) -> None:
    starts = {}
    for task_id in (0, 3, 7):
        base_env.set_task(task_id)
        obs, info = base_env.reset(seed=0, options={"variation": 0})
        assert base_env.task_name == TASK_NAMES[task_id] == info["task_name"]
        starts[task_id] = obs
    assert not np.array_equal(starts[0], starts[3]) and not np.array_equal(starts[3], starts[7])
    # set_task takes effect at the next reset only.
    base_env.set_task(0)
    assert base_env.task_name == TASK_NAMES[7] and base_env.env is base_env.envs[7]
    base_env.reset()
    assert base_env.task_name == TASK_NAMES[0] and base_env.env is base_env.envs[0]


def test_success_any_step_outlives_a_lost_success() -> None:
    """drawer-open: the drawer is opened by hand mid-episode, then closed again. At the last step the
    strict success is False, the authors' any-step success True."""
    env = gym.make("MetaWorldMT10-v0", task_id=TASK_NAMES.index("drawer-open-v3"))
    base = env.unwrapped.env  # type: ignore[attr-defined]
    _, info = env.reset(seed=0)
    assert info["is_success"] is False and info["success_any_step"] is False

    def set_drawer(value: float) -> None:
        data = base.env.data
        data.joint("goal_slidey").qpos = value
        data.joint("goal_slidey").qvel = 0.0
        mujoco.mj_forward(base.env.model, data)

    zero = np.zeros(4, dtype=np.float32)
    history = []
    for t in range(500):
        if t == 50:
            set_drawer(-0.16)  # fully open: metaworld's success
        if t == 52:
            set_drawer(0.0)  # closed again
        *_, terminated, truncated, info = env.step(zero)
        history.append((info["is_success"], info["success_any_step"]))
    assert truncated and not terminated
    assert history[49] == (False, False) and history[50] == (True, True) and history[51] == (True, True)
    assert history[52] == (False, True) and history[-1] == (False, True)
    assert all(any_step for _, any_step in history[50:])
    _, info = env.reset()
    *_, info = env.step(zero)
    assert info["is_success"] is False and info["success_any_step"] is False
    env.close()


def test_eval_variation_set_is_benchmark_seed_plus_100(monkeypatch: pytest.MonkeyPatch) -> None:
    """variation_set="eval" builds metaworld.MT10(seed=benchmark_seed + 100) (recorded, not built: slow)."""
    asked: list[int | None] = []
    real_benchmark, real_bounds = mt10.metaworld_benchmark, mt10._observation_bounds

    def benchmark(name: str = "MT10", seed: int | None = 0) -> object:
        asked.append(seed)
        return real_benchmark(name, 0)

    monkeypatch.setattr(mt10, "metaworld_benchmark", benchmark)
    monkeypatch.setattr(mt10, "_observation_bounds", lambda name, seed: real_bounds(name, 0))
    assert MetaWorldMT10Env(benchmark_seed=5).variation_list_seed == 5
    assert MetaWorldMT10Env(benchmark_seed=5, variation_set="eval").variation_list_seed == 105
    env = gym.make("MetaWorldMT10-v0", benchmark_seed=5, variation_set="eval")
    assert [seed for seed in asked if seed != 0] == [5, 105, 105]  # (0: the real bounds, computed once)
    assert env.spec is not None and env.spec.kwargs["variation_set"] == "eval"
    env.close()
    with pytest.raises(ValueError, match="variation_set must be one of"):
        MetaWorldMT10Env(variation_set="validation")
    with pytest.raises(ValueError, match="give benchmark_seed"):
        MetaWorldMT10Env(benchmark_seed=None, variation_set="eval")


def test_envs_are_built_lazily() -> None:
    env = MetaWorldMT10Env(task_id=4)
    assert env.envs == [None] * NUM_TASKS
    env.reset(seed=0)
    assert [e is not None for e in env.envs] == [i == 4 for i in range(NUM_TASKS)]
    env.close()


def test_no_own_truncation_past_500_steps(base_env: MetaWorldMT10Env) -> None:
    base_env.set_task(0)
    base_env.reset(seed=0)
    zero = np.zeros(4, dtype=np.float32)
    for _ in range(505):  # metaworld alone would raise past max_path_length=500
        _, _, terminated, truncated, _ = base_env.step(zero)
        assert not terminated and not truncated


def test_bad_inputs(base_env: MetaWorldMT10Env) -> None:
    with pytest.raises(ValueError, match="out of range"):
        base_env.set_task(10)
    with pytest.raises(TypeError, match="task_id must be an int"):
        base_env.set_task(1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown options"):
        base_env.reset(options={"goal": 1})
    with pytest.raises(ValueError, match="out of range"):
        base_env.reset(options={"variation": NUM_VARIATIONS})
    with pytest.raises(TypeError, match="variation must be an int"):
        base_env.reset(options={"variation": "3"})
    with pytest.raises(ValueError, match="shape"):
        base_env.reset(seed=0)
        base_env.step(np.zeros(3))
    with pytest.raises(ValueError, match="render_mode"):
        MetaWorldMT10Env(render_mode="human")
    env = make_env()
    with pytest.raises(ValueError, match="out of range"):
        env.reset(options={"task_id": -1})
    env.close()


def test_random_task_per_episode_and_render() -> None:
    env = make_env(render_mode="rgb_array", width=64, height=64)
    seen = {env.reset(seed=s)[1]["task_id"] for s in range(30)}
    assert len(seen) >= 7
    img = env.render()
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and img.std() > 0
    env.close()


def test_mt50_is_registered_with_mt10s_conventions() -> None:
    """MetaWorldMT50-v0: 50 tasks, one-hot suffix of 50, the same observation, action and success keys."""
    from sb3_qmp.envs.mt10 import MT50_TASK_NAMES, TASK_NAMES

    assert len(MT50_TASK_NAMES) == len(set(MT50_TASK_NAMES)) == 50 and set(TASK_NAMES) <= set(MT50_TASK_NAMES)
    env = gym.make("MetaWorldMT50-v0", task_id=MT50_TASK_NAMES.index("door-open-v3"))
    assert env.spec.max_episode_steps == 500
    obs, info = env.reset(seed=0)
    assert obs.shape == (39 + 50,) and obs[39 + MT50_TASK_NAMES.index("door-open-v3")] == 1.0
    assert env.unwrapped.task_names == MT50_TASK_NAMES and info["task_name"] == "door-open-v3"
    obs, _, _, _, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and {"is_success", "success_any_step"} <= set(info)
    env.close()
