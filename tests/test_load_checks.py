"""Loading the wrong thing: a file of another algorithm class is a clear error (files of earlier versions too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sb3_qmp import make_multitask_vec_env
from sb3_qmp.mtsac.mtsac import saved_algorithms
from sb3_qmp.registry import ALGO_PATHS, get_algo

DATA = Path(__file__).parent / "data"
ALGOS = sorted(ALGO_PATHS)
SMALL = dict(learning_starts=16, batch_size=8, buffer_size=64, policy_kwargs=dict(net_arch=[8]), seed=0)
EXTRA = {"qmp_domain": dict(collector_kwargs=dict(matrix=np.full((4, 4), 0.25)))}
# DnC and DnC-reg files of earlier versions hold the same settings: either class loads them.
FAMILY = {"dnc": {"dnc", "dnc_reg"}, "dnc_reg": {"dnc", "dnc_reg"}}


@pytest.fixture(scope="module")
def env():
    venv = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    yield venv
    venv.close()


@pytest.fixture(scope="module")
def saved_now(tmp_path_factory: pytest.TempPathFactory, env) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for algo in ALGOS:
        paths[algo] = folder / f"{algo}.zip"
        get_algo(algo)(env, **SMALL, **EXTRA.get(algo, {})).save(paths[algo])
    return paths


@pytest.mark.parametrize("saver", ALGOS)
def test_a_file_loads_only_with_the_class_that_saved_it(saver: str, saved_now: dict[str, Path], env) -> None:
    for loader in ALGOS:
        cls = get_algo(loader)
        if loader == saver:
            assert type(cls.load(saved_now[saver], env=env)) is cls
            continue
        saver_name = get_algo(saver).__name__
        with pytest.raises(ValueError, match=rf"saved by {saver_name}, not {cls.__name__}.*{saver_name}\.load"):
            cls.load(saved_now[saver], env=env)


@pytest.mark.parametrize("saver", ALGOS)
def test_files_of_earlier_versions_load_and_are_checked(saver: str, env) -> None:
    """Fixtures saved by commit 7727bb6 (before the class was stored): inferred from what they hold."""
    path = DATA / f"model_7727bb6_{saver}.zip"
    model = get_algo(saver).load(path, env=env)
    assert model.num_timesteps == 64
    assert model.selection_counts.sum() == 48  # the model held them then; the collector holds them now
    actions, _ = model.predict(env.reset(), deterministic=True)
    assert actions.shape == (4, 2)
    for loader in ALGOS:
        if loader in FAMILY.get(saver, {saver}):
            continue
        with pytest.raises(ValueError, match="was saved by"):
            get_algo(loader).load(path, env=env)


def test_saved_algorithms_of_foreign_data() -> None:
    assert saved_algorithms({"policy_class": object}) is None  # not a file of this package: SB3 decides
    assert saved_algorithms({"algorithm_class": "QMP", "collector_name": "own"}) == {"QMP"}


# -- replay buffers -------------------------------------------------------------------------------
def test_replay_buffer_is_checked_when_loaded(tmp_path: Path, env) -> None:
    import warnings

    from sb3_qmp import QMP

    model = QMP(env, **SMALL)
    model.learn(64)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    # Another task set (12 tasks): refused at load, the model keeps its own buffer.
    many = QMP(make_multitask_vec_env("ManyGoalPoint-v0", seed=0), **SMALL)
    many.learn(48)
    many.save_replay_buffer(tmp_path / "many.pkl")
    before = model.replay_buffer
    with pytest.raises(ValueError, match=r"does not fit this model: it has 12 tasks \(the model has 4\)"):
        model.load_replay_buffer(tmp_path / "many.pkl")
    assert model.replay_buffer is before
    # Plain SB3's buffer class.
    from stable_baselines3 import SAC

    sac = SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, learning_starts=10)
    sac.save_replay_buffer(tmp_path / "sac.pkl")
    with pytest.raises(ValueError, match=r"holds a ReplayBuffer.*uses MultiTaskReplayBuffer"):
        model.load_replay_buffer(tmp_path / "sac.pkl")
    # Same tasks, other names (a renamed task set of the same size).
    other = QMP(make_multitask_vec_env("ConflictPoint-v0", seed=0), **SMALL)
    other.learn(64)
    other.save_replay_buffer(tmp_path / "conflict.pkl")
    with pytest.raises(ValueError, match=r"it has tasks \[.*\] \(the model's: "):
        model.load_replay_buffer(tmp_path / "conflict.pkl")
    # A buffer older than the model it is paired with is reported.
    model.learn(64, reset_num_timesteps=False)
    model.save_replay_buffer(tmp_path / "now.pkl")
    with pytest.warns(UserWarning, match="holds 64 transitions but the model has taken 128 env steps: it is older"):
        model.load_replay_buffer(tmp_path / "buffer.pkl")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.load_replay_buffer(tmp_path / "now.pkl")


# -- task sets ------------------------------------------------------------------------------------
def test_vec_env_mixing_task_sets_is_refused() -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sb3_qmp import QMP
    from sb3_qmp.common.vec_env import get_num_tasks

    first = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    second = make_multitask_vec_env("ConflictPoint-v0", seed=0)
    mixed = DummyVecEnv([lambda e=e: e for e in first.envs[:2] + second.envs[:2]])
    with pytest.raises(ValueError, match=r"different task sets \(sub-envs \[0, 1\]: 4 tasks"):
        get_num_tasks(mixed)
    many = make_multitask_vec_env("ManyGoalPoint-v0", seed=0)
    with pytest.raises(ValueError, match="different task sets"):
        QMP(DummyVecEnv([lambda e=e: e for e in first.envs[:1] + many.envs[:1]]))


def test_model_refuses_an_env_of_other_tasks(tmp_path: Path) -> None:
    from sb3_qmp import QMP

    model = QMP(make_multitask_vec_env("MultiGoalPoint-v0", seed=0), **SMALL)
    model.save(tmp_path / "model.zip")
    other = make_multitask_vec_env("ConflictPoint-v0", seed=0)  # also 4 tasks
    with pytest.raises(ValueError, match=r"trained on tasks \[.*\] but the env runs tasks"):
        model.set_env(other)
    with pytest.raises(ValueError, match="but the env runs tasks"):
        QMP.load(tmp_path / "model.zip", env=other)
    QMP.load(tmp_path / "model.zip", env=make_multitask_vec_env("MultiGoalPoint-v0", seed=1))
