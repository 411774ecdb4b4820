"""Contracts with rl-zoo3: what each ``ExperimentManager`` patch of :data:`sb3_qmp.zoo.PATCHES` relies on.

Every test here checks rl-zoo3's *own* method (the one the patch wraps, ``__wrapped__``), so that a new
rl-zoo3 release that changes a signature or a step of the flow fails here, naming the patch to adapt,
rather than somewhere inside a training run.
"""

from __future__ import annotations

import argparse
import inspect
import re
import types
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

import sb3_qmp.zoo as zoo
from sb3_qmp.common.callbacks import PerTaskEvalCallback
from sb3_qmp.common.normalize import VecNormalizePerTask
from sb3_qmp.common.vec_env import make_multitask_vec_env
from sb3_qmp.zoo import PATCHES, register_zoo

ENV = "MultiGoalPoint-v0"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "zoo.md"


@pytest.fixture(scope="module")
def manager_cls() -> Any:
    register_zoo()
    from rl_zoo3.exp_manager import ExperimentManager

    return ExperimentManager


def rl_zoo3_method(cls: Any, name: str) -> Any:
    """rl-zoo3's own ``ExperimentManager.<name>`` (the method the patch wraps)."""
    return vars(cls)[name].__wrapped__


def broken(name: str) -> str:
    return f"rl-zoo3 changed what the ExperimentManager.{name} patch of sb3_qmp.zoo relies on: {PATCHES[name][1]}"


def new_manager(cls: Any, tmp_path: Path, **kwargs: Any) -> Any:
    kwargs.setdefault("verbose", 0)
    return cls(argparse.Namespace(), "qmp", ENV, str(tmp_path / "logs"), **kwargs)


def write_config(path: Path, entries: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(entries))
    return str(path)


def parameters(function: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()]


# ----------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------
def test_patch_table_is_what_is_patched(manager_cls: Any) -> None:
    """Exactly the methods of :data:`PATCHES` are replaced, each by a wrapper of rl-zoo3's method."""
    ours = Path(zoo.__file__).resolve()
    patched = {
        name
        for name, value in vars(manager_cls).items()
        if hasattr(value, "__code__") and Path(value.__code__.co_filename).resolve() == ours
    }
    assert patched == set(PATCHES), (
        f"patched but not in PATCHES: {patched - set(PATCHES)}; listed but not patched: {set(PATCHES) - patched}"
    )
    for name in PATCHES:
        original = rl_zoo3_method(manager_cls, name)
        assert "rl_zoo3" in Path(original.__code__.co_filename).parts, f"{name} does not wrap rl-zoo3's method"


def test_docs_show_the_patch_table() -> None:
    section = DOCS.read_text().split("## How the `rl_zoo3.train` hook works", 1)[1]
    rows = re.findall(r"^\| `(\w+)` \| .*$", section, flags=re.MULTILINE)
    assert rows == list(PATCHES), f"docs/zoo.md's patch table lists {rows}, sb3_qmp.zoo.PATCHES {list(PATCHES)}"
    for name, (adds, relies_on) in PATCHES.items():
        assert f"| `{name}` | {adds} | {relies_on} |" in section, f"docs/zoo.md's row of {name} differs from PATCHES"


# ----------------------------------------------------------------------------------------------
# One contract per patch
# ----------------------------------------------------------------------------------------------
def test_init_contract(manager_cls: Any, tmp_path: Path) -> None:
    init = rl_zoo3_method(manager_cls, "__init__")
    assert ("config", None) in parameters(init), broken("__init__")
    plain = manager_cls.__new__(manager_cls)
    init(plain, argparse.Namespace(), "qmp", ENV, str(tmp_path))
    assert Path(plain.config).parts[-2:] == ("hyperparams", "qmp.yml") and "sb3_qmp" not in plain.config, broken("__init__")
    assert plain.params_path == f"{plain.save_path}/{plain.env_name}", broken("__init__")
    # rl-zoo3 reads the file `self.config` names (the patch points it at the packaged YAML).
    plain.config = write_config(tmp_path / "own.yml", {ENV: {"n_timesteps": 7}})
    assert rl_zoo3_method(manager_cls, "read_hyperparameters")(plain)[0] == {"n_timesteps": 7}, broken("__init__")
    # The patch itself: the packaged YAML unless a config is given.
    assert new_manager(manager_cls, tmp_path).config == str(zoo.default_config_path("qmp"))
    assert new_manager(manager_cls, tmp_path, config=plain.config).config == plain.config


def test_read_hyperparameters_contract(manager_cls: Any, tmp_path: Path) -> None:
    read = rl_zoo3_method(manager_cls, "read_hyperparameters")
    assert parameters(read) == [("self", inspect.Parameter.empty)], broken("read_hyperparameters")
    manager = new_manager(manager_cls, tmp_path, config=write_config(tmp_path / "c.yml", {"Pendulum-v1": {}}))
    with pytest.raises(ValueError, match="Hyperparameters not found"):
        read(manager)
    # The study's values replace the YAML's (load_trial's patch merges the nested ones back).
    entry = {"n_timesteps": 7, "collector_kwargs": {"own_prob": 0.5, "commit_steps": 5}}
    manager = new_manager(
        manager_cls, tmp_path, config=write_config(tmp_path / "t.yml", {ENV: entry}), storage="s", study_name="n", trial_id=3
    )
    calls: list[tuple[Any, ...]] = []

    def load_trial(storage: str, study_name: str, trial_id: int | None = None, convert: bool = True) -> dict[str, Any]:
        calls.append((storage, study_name, trial_id, convert))
        return {"collector_kwargs": {"own_prob": 0.1}}

    manager.load_trial = load_trial
    hyperparams, saved = read(manager)
    assert calls == [("s", "n", 3, True)], broken("read_hyperparameters")
    assert hyperparams == {"n_timesteps": 7, "collector_kwargs": {"own_prob": 0.1}} == dict(saved), broken(
        "read_hyperparameters"
    )


def test_load_trial_contract(manager_cls: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER

    load_trial = rl_zoo3_method(manager_cls, "load_trial")
    empty = inspect.Parameter.empty
    expected: list[tuple[str, Any]] = [("self", empty), ("storage", empty), ("study_name", empty)]
    assert parameters(load_trial) == [*expected, ("trial_id", None), ("convert", True)], broken("load_trial")
    storage = f"sqlite:///{tmp_path / 'l.db'}"
    study = optuna.create_study(storage=storage, study_name="l")
    study.enqueue_trial({"own_prob": 0.25})
    trial = study.ask()
    trial.suggest_float("own_prob", 0.0, 0.9)
    study.tell(trial, 1.0)
    monkeypatch.setitem(HYPERPARAMS_CONVERTER, "qmp", lambda params: {"converted": params})
    manager = new_manager(manager_cls, tmp_path)
    assert load_trial(manager, storage, "l", 0) == {"converted": {"own_prob": 0.25}}, broken("load_trial")
    assert load_trial(manager, storage, "l", 0, False) == {"own_prob": 0.25}, broken("load_trial")


def test_setup_experiment_contract(manager_cls: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stable_baselines3.common.callbacks import CheckpointCallback

    monkeypatch.setitem(zoo.OPTIMIZE_BASE, "qmp", {})
    setup = rl_zoo3_method(manager_cls, "setup_experiment")
    assert parameters(setup) == [("self", inspect.Parameter.empty)], broken("setup_experiment")
    spec = yaml.safe_load(zoo.default_config_path("qmp").read_text())[ENV]["callback"]

    manager = new_manager(manager_cls, tmp_path, optimize_hyperparameters=True)
    assert setup(manager) is None, broken("setup_experiment")
    assert manager.specified_callbacks == spec and "learning_starts" in manager._hyperparams, broken("setup_experiment")
    objective = inspect.getsource(manager_cls.objective)
    assert 'get_callback_list({"callback": self.specified_callbacks})' in objective, broken("setup_experiment")

    manager = new_manager(manager_cls, tmp_path, eval_freq=-1, save_freq=100, save_replay_buffer=True)
    model, _ = setup(manager)
    assert any(isinstance(c, PerTaskEvalCallback) for c in manager.callbacks), broken("setup_experiment")
    assert any(isinstance(c, CheckpointCallback) for c in manager.callbacks), broken("setup_experiment")
    assert manager.save_replay_buffer is True, broken("setup_experiment")
    path = tmp_path / "rl_model_8_steps.zip"
    model.save(path)
    model.env.close()

    manager = new_manager(manager_cls, tmp_path, eval_freq=-1, trained_agent=str(path), truncate_last_trajectory=True)
    assert manager.continue_training and manager.trained_agent == str(path), broken("setup_experiment")
    loaded, _ = setup(manager)
    assert type(loaded) is type(model) and manager.truncate_last_trajectory is True, broken("setup_experiment")
    loaded.env.close()


def test_maybe_normalize_contract(manager_cls: Any, tmp_path: Path) -> None:
    maybe_normalize = rl_zoo3_method(manager_cls, "_maybe_normalize")
    assert [name for name, _ in parameters(maybe_normalize)] == ["self", "env", "eval_env"], broken("_maybe_normalize")
    manager = new_manager(manager_cls, tmp_path)
    # create_envs hands every env to it.
    seen: list[bool] = []

    def record(env: Any, eval_env: bool) -> Any:
        seen.append(eval_env)
        return env

    manager._maybe_normalize = record
    manager.create_envs(1, eval_env=True).close()
    manager.create_envs(1, no_log=True).close()
    assert seen == [True, False], broken("_maybe_normalize")
    del manager._maybe_normalize
    # normalize / normalize_kwargs say what to build; the eval env neither learns nor scales rewards.
    manager.normalize, manager.normalize_kwargs = True, {"norm_obs": False}
    env = maybe_normalize(manager, make_multitask_vec_env(ENV), True)
    assert type(env).__name__ == "VecNormalize" and not env.training and not env.norm_reward, broken("_maybe_normalize")
    assert not env.norm_obs, broken("_maybe_normalize")
    env = maybe_normalize(manager, make_multitask_vec_env(ENV), False)
    assert env.training and env.norm_reward, broken("_maybe_normalize")
    # Saved statistics next to -i load as the class they were saved as.
    (tmp_path / "run" / ENV).mkdir(parents=True)
    VecNormalizePerTask(make_multitask_vec_env(ENV)).save(str(tmp_path / "run" / ENV / "vecnormalize.pkl"))
    manager.normalize, manager.trained_agent = False, str(tmp_path / "run" / "model.zip")
    assert isinstance(maybe_normalize(manager, make_multitask_vec_env(ENV), False), VecNormalizePerTask), broken(
        "_maybe_normalize"
    )


class FakeModel:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.env = types.SimpleNamespace(close=lambda: None)

    def learn(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))


def test_learn_contract(manager_cls: Any, tmp_path: Path) -> None:
    learn = rl_zoo3_method(manager_cls, "learn")
    assert [name for name, _ in parameters(learn)] == ["self", "model"], broken("learn")
    manager = new_manager(manager_cls, tmp_path, n_timesteps=123)
    manager.callbacks = [types.SimpleNamespace(on_training_end=lambda: None)]
    model = FakeModel()
    learn(manager, model)
    assert len(model.calls) == 1, broken("learn")
    args, kwargs = model.calls[0]
    assert args == (123,) and "reset_num_timesteps" not in kwargs, broken("learn")
    assert kwargs["callback"] is manager.callbacks, broken("setup_experiment")
    # The patch itself: -i keeps the counters.
    manager.continue_training = True
    manager.learn(model)
    assert model.calls[1][1]["reset_num_timesteps"] is False


# ----------------------------------------------------------------------------------------------
# Public extension points (no patch): the samplers' and converters' call signatures
# ----------------------------------------------------------------------------------------------
def test_samplers_and_converters_match_rl_zoo3() -> None:
    register_zoo()
    from rl_zoo3 import hyperparams_opt

    own = [name for name, _ in parameters(hyperparams_opt.sample_sac_params)]
    assert [name for name, _ in parameters(hyperparams_opt.HYPERPARAMS_SAMPLER["qmp"])] == own
    assert len(parameters(hyperparams_opt.HYPERPARAMS_CONVERTER["qmp"])) == len(
        parameters(hyperparams_opt.convert_offpolicy_params)
    )
