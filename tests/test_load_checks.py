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
