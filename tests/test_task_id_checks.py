"""Inputs that name a task: observations whose suffix is not one-hot, env ids that are not registered."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SMALL_KWARGS

from sb3_qmp import QMP, MultiTaskSAC, SharedSAC, make_multitask_vec_env
from sb3_qmp.common.buffers import MultiTaskReplayBuffer
from sb3_qmp.envs import package_env_ids

NUM_TASKS = 4
BAD_SUFFIXES = {
    "all zeros": [0.0, 0.0, 0.0, 0.0],
    "two ones": [1.0, 0.0, 1.0, 0.0],
    "rescaled": [0.0, 0.5, 0.0, 0.0],
    "soft": [0.25, 0.25, 0.25, 0.25],
    "sums to one with a negative entry": [1.0, 1.0, -1.0, 0.0],
}


def _with_suffix(obs: np.ndarray, row: int, suffix: list[float]) -> np.ndarray:
    obs = obs.copy()
    obs[row, -NUM_TASKS:] = suffix
    return obs


@pytest.mark.parametrize("suffix", list(BAD_SUFFIXES.values()), ids=list(BAD_SUFFIXES))
@pytest.mark.parametrize("algo", [MultiTaskSAC, SharedSAC])
def test_predict_refuses_rows_without_a_one_hot_task_id(point_env, algo, suffix: list[float]) -> None:
    model = algo(point_env, **SMALL_KWARGS)
    obs = point_env.reset()
    model.predict(obs, deterministic=True)  # well-formed rows pass
    with pytest.raises(ValueError, match=r"row\(s\) \(e.g. \[2\]\) do not end with a one-hot task id"):
        model.predict(_with_suffix(obs, 2, suffix), deterministic=True)


@pytest.mark.parametrize("suffix", list(BAD_SUFFIXES.values()), ids=list(BAD_SUFFIXES))
def test_replay_buffer_refuses_rows_without_a_one_hot_task_id(point_env, suffix: list[float]) -> None:
    buffer = MultiTaskReplayBuffer(10, point_env.observation_space, point_env.action_space, n_envs=4, num_tasks=4)
    obs = point_env.reset()
    actions, zeros = np.zeros((4, 2), dtype=np.float32), np.zeros(4, dtype=np.float32)
    buffer.add(obs, obs, actions, zeros, zeros, [{}] * 4)
    with pytest.raises(ValueError, match="do not end with a one-hot task id"):
        buffer.add(_with_suffix(obs, 1, suffix), obs, actions, zeros, zeros, [{}] * 4)
    assert buffer.task_sizes().tolist() == [1, 1, 1, 1]  # nothing of the bad batch was stored


def test_collection_refuses_rows_without_a_one_hot_task_id(point_env) -> None:
    model = MultiTaskSAC(point_env, **{**SMALL_KWARGS, "learning_starts": 0})
    model.learn(8)
    model._last_obs = _with_suffix(model._last_obs, 0, BAD_SUFFIXES["all zeros"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="do not end with a one-hot task id"):
        model._sample_action(learning_starts=0, n_envs=4)


@pytest.mark.parametrize("algo", [QMP, SharedSAC])
def test_unregistered_env_id_is_named_with_the_package_ids(algo) -> None:
    for build in (lambda: algo("NoSuchEnv-v0"), lambda: algo("MlpPolicy", "NoSuchEnv-v0")):
        with pytest.raises(ValueError, match=r"'NoSuchEnv-v0' is not registered with gymnasium") as error:
            build()
        assert "MultiGoalPoint-v0" in str(error.value) and "MazeNavigation-v0" in str(error.value)
    with pytest.raises(ValueError, match=r"not registered.* Nor is 'MlpPolicyy' a policy of .*\(MlpPolicy\)"):
        algo("MlpPolicyy", "MultiGoalPoint-v0")
    with pytest.raises(ValueError, match="not registered"):
        make_multitask_vec_env("NoSuchEnv-v0")


def test_package_env_ids() -> None:
    ids = package_env_ids()
    assert {"MultiGoalPoint-v0", "MultistageReacher-v0", "MazeNavigation-v0", "MetaWorldDoorDrawer-v0"} <= set(ids)
    assert "Pendulum-v1" not in ids
