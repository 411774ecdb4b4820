"""rl-zoo3 integration: the start-up hook, the literal zoo commands, Optuna, configs, errors.

Subprocess tests run the *installed* package (``pip install -e .`` installs the ``.pth`` hook).
Importing rl-zoo3 costs seconds, so the other algorithms' zoo runs share one subprocess (each still
goes through ``runpy`` of ``rl_zoo3.train``, exactly what ``python -m rl_zoo3.train`` runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml

from sb3_qmp.common.vec_env import TaskAssignmentWrapper
from sb3_qmp.registry import ALGO_PATHS
from sb3_qmp.zoo import CONFIG_DIR, available_algos, register_zoo
from sb3_qmp.zoo.samplers import accepted_kwargs, convert_params, make_sampler

ENV = "MultiGoalPoint-v0"
AVAILABLE, MISSING = available_algos()
# Tiny budget: 200 env steps (50 per task), learning from step 100, one evaluation at the end.
SMOKE = ["-n", "200", "--seed", "1", "--eval-freq", "-1", "--num-threads", "1", "-params", "learning_starts:100"]
ZOO_ONLY_KEYS = {"n_envs", "n_timesteps", "vec_env_wrapper", "env_wrapper", "callback", "env_kwargs", "normalize"}
PACKAGE_ENVS = ["MultiGoalPoint-v0", "MultistageReacher-v0", "MazeNavigation-v0", "MetaWorldDoorDrawer-v0", "MetaWorldMT10-v0"]


def run(args: list[str], tmp: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", **(extra_env or {})}
    proc = subprocess.run([sys.executable, *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=240)
    if proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def require(algo: str) -> None:
    if algo not in AVAILABLE:
        pytest.skip(f"{algo} is not importable yet: {MISSING.get(algo)}")


# ----------------------------------------------------------------------------------------------
# Start-up hook
# ----------------------------------------------------------------------------------------------
def test_hook_is_cheap_and_lazy(tmp_path: Path) -> None:
    code = (
        "import sys; print(any(type(f).__name__ == 'ZooFinder' for f in sys.meta_path), "
        "'sb3_qmp' in sys.modules, 'torch' in sys.modules)"
    )
    out = run(["-c", code], tmp_path).stdout.split()
    assert out == ["True", "False", "False"], "the .pth hook must be installed and import nothing heavy at start-up"
    out = run(["-c", code], tmp_path, extra_env={"SB3_QMP_NO_ZOO_HOOK": "1"}).stdout.split()
    assert out == ["False", "False", "False"]


def test_register_zoo_in_process() -> None:
    from rl_zoo3.exp_manager import ExperimentManager
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
    from rl_zoo3.utils import ALGOS

    names = register_zoo()
    assert names == sorted(AVAILABLE) and "qmp" in names
    assert register_zoo() == names  # idempotent
    for name in names:
        assert ALGOS[name] is AVAILABLE[name]
        assert name in HYPERPARAMS_SAMPLER and name in HYPERPARAMS_CONVERTER
    assert ALGOS["sac"].__name__ == "SAC"  # the zoo's own algorithms are untouched
    assert getattr(ExperimentManager, "_sb3_qmp_patched", False)


# ----------------------------------------------------------------------------------------------
# Configs and the task-cycling wrapper
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", sorted(ALGO_PATHS))
def test_yaml_entries_match_constructor(algo: str) -> None:
    path = CONFIG_DIR / f"{algo}.yml"
    assert path.is_file(), f"missing config {path}"
    assert (Path(__file__).parent.parent / "hyperparams" / f"{algo}.yml").is_file(), "top-level hyperparams/ is missing"
    entries = yaml.safe_load(path.read_text())
    expected_envs = PACKAGE_ENVS if algo != "qmp_domain" else PACKAGE_ENVS[:2]
    assert sorted(entries) == sorted(expected_envs)
    require(algo)
    accepted = accepted_kwargs(AVAILABLE[algo])
    for env_id, entry in entries.items():
        unknown = set(entry) - ZOO_ONLY_KEYS - accepted
        assert not unknown, f"{algo}/{env_id}: the constructor takes no {sorted(unknown)}"
        assert entry["vec_env_wrapper"] == "sb3_qmp.common.vec_env.TaskAssignmentWrapper"
        assert entry["policy"] == "MlpPolicy"


def test_task_cycle_wrapper() -> None:
    from sb3_qmp import make_multitask_vec_env

    # n_envs a multiple of T: fixed round-robin tasks.
    venv = TaskAssignmentWrapper(make_multitask_vec_env(ENV, seed=0))
    obs: Any = venv.reset()
    assert obs[:, -4:].argmax(axis=1).tolist() == [0, 1, 2, 3] and not venv.cycles
    venv.close()
    # One sub-env (the zoo's eval env / enjoy): successive episodes cycle through every task.
    from stable_baselines3.common.env_util import make_vec_env

    single = TaskAssignmentWrapper(make_vec_env(ENV, n_envs=1, seed=0))
    seen: list[int] = []
    obs = single.reset()
    seen.append(int(obs[0, -4:].argmax()))
    while len(seen) < 6:
        obs, _, dones, _ = single.step(np.zeros((1, 2), dtype=np.float32))
        if dones[0]:
            seen.append(int(obs[0, -4:].argmax()))
    assert seen == [0, 1, 2, 3, 0, 1]
    obs = single.reset()
    assert int(obs[0, -4:].argmax()) == 0  # reset restarts the cycle
    single.close()


# ----------------------------------------------------------------------------------------------
# Optuna samplers and converters
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", sorted(ALGO_PATHS))
def test_sampler_and_converter(algo: str) -> None:
    require(algo)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    params = make_sampler(algo)(trial, 2, 4, {})
    assert set(params) <= accepted_kwargs(AVAILABLE[algo])
    assert {"gamma", "learning_rate", "batch_size", "tau", "train_freq", "gradient_steps", "policy_kwargs"} <= set(params)
    assert convert_params(algo, trial.params) == params  # what --trial-id reloads
    if algo in ("qmp", "qmp_multihead"):
        knobs = params["collector_kwargs"]
        assert knobs["score"] in ("mean", "sample") and knobs["critic_reduce"] in ("q1", "min")
        assert knobs["commit_steps"] in (1, 5, 10, 20) and 0.0 <= knobs["own_prob"] <= 0.9
    if algo in ("dnc", "dnc_reg"):
        assert params["beta"] in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def test_sampled_collector_kwargs_merge_into_yaml() -> None:
    require("qmp_domain")
    from sb3_qmp.zoo import OPTIMIZE_BASE

    OPTIMIZE_BASE["qmp_domain"] = {"collector_kwargs": {"matrix": "reacher_domain", "own_prob": 0.0}}
    try:
        trial = optuna.create_study().ask()
        params = make_sampler("qmp_domain")(trial, 2, 4, {})
        assert params["collector_kwargs"]["matrix"] == "reacher_domain"  # kept from the YAML
        assert params["collector_kwargs"]["own_prob"] == trial.params["own_prob"]  # sampled
    finally:
        OPTIMIZE_BASE.pop("qmp_domain", None)


# ----------------------------------------------------------------------------------------------
# Clear errors (in process: same code path as the CLI)
# ----------------------------------------------------------------------------------------------
def _zoo_train(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    register_zoo()
    from rl_zoo3.train import train

    monkeypatch.setattr(sys, "argv", ["rl_zoo3.train", *args])
    train()


def test_unknown_algo_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _zoo_train(monkeypatch, ["--algo", "qmp_nope", "--env", ENV])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'qmp_nope'" in err and "qmp" in err


def test_env_not_in_yaml_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"has no entry for env 'Pendulum-v1'; it covers \[.*'MultiGoalPoint-v0'"):
        _zoo_train(monkeypatch, ["--algo", "qmp", "--env", "Pendulum-v1", "-f", str(tmp_path)])


# ----------------------------------------------------------------------------------------------
# The literal commands (subprocesses on the installed package)
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_literal_zoo_train_and_enjoy(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    proc = run(["-m", "rl_zoo3.train", "--algo", "qmp", "--env", ENV, "-f", str(logs), *SMOKE], tmp_path)
    assert "qmp.yml" in proc.stdout, "the default config must be the package's qmp.yml"
    run_dir = logs / "qmp" / f"{ENV}_1"
    assert (run_dir / f"{ENV}.zip").is_file()
    config = yaml.unsafe_load((run_dir / ENV / "config.yml").read_text())
    assert dict(config)["collector_kwargs"]["commit_steps"] == 1
    evaluations = np.load(run_dir / "evaluations_per_task.npz")
    assert evaluations["successes"].shape[1] == 4, "the YAML's per-task eval callback writes into the run folder"

    proc = run(["-m", "rl_zoo3.enjoy", "--algo", "qmp", "--env", ENV, "-f", str(logs), "--no-render", "-n", "130"], tmp_path)
    assert proc.stdout.count("Episode Reward") >= 4, proc.stdout[-2000:]


ALGO_LOOP = textwrap.dedent(
    """
    import json, runpy, sys, traceback
    results, out_file, algos = {}, sys.argv[1], sys.argv[2:]
    for algo in algos:
        for module, args in (("rl_zoo3.train", ["--algo", algo, "--env", ENV, "-f", LOGS, *SMOKE]),
                             ("rl_zoo3.enjoy", ["--algo", algo, "--env", ENV, "-f", LOGS, "--no-render", "-n", "40"])):
            sys.argv = [module, *args]
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
                results.setdefault(algo, "ok")
            except BaseException:
                results[algo] = f"{module}: " + traceback.format_exc()[-3000:]
                break
    json.dump(results, open(out_file, "w"))
    """
)


@pytest.fixture(scope="module")
def other_algo_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Train (and enjoy) every importable algorithm but qmp through rl_zoo3.train, in one subprocess."""
    tmp = tmp_path_factory.mktemp("zoo_algos")
    algos = sorted(name for name in AVAILABLE if name != "qmp")
    if not algos:
        return tmp, {}
    script = f"ENV = {ENV!r}; LOGS = {str(tmp / 'logs')!r}; SMOKE = {SMOKE!r}\n" + ALGO_LOOP
    run(["-c", script, str(tmp / "results.json"), *algos], tmp)
    return tmp, json.loads((tmp / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(name for name in ALGO_PATHS if name != "qmp"))
def test_zoo_train_every_algo(algo: str, other_algo_runs: tuple[Path, dict[str, str]]) -> None:
    require(algo)
    tmp, results = other_algo_runs
    assert results.get(algo) == "ok", results.get(algo)
    model_file = tmp / "logs" / algo / f"{ENV}_1" / f"{ENV}.zip"
    model = AVAILABLE[algo].load(model_file)
    assert model.num_tasks == 4 and model.num_timesteps >= 200


def _trial_count(storage: str, name: str) -> int:
    return len(optuna.load_study(study_name=name, storage=storage).trials)


@pytest.mark.slow
def test_optimize_shared_study_resumes(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'x.db'}"
    args = ["--algo", "qmp", "--env", ENV, "-f", str(tmp_path / "logs"), "-optimize", "--n-trials", "2"]
    args += ["--storage", storage, "--study-name", "s", "--sampler", "random", "--pruner", "none", "--n-evaluations", "1"]
    args += ["--eval-episodes", "4", "--no-optim-plots", *SMOKE]
    run(["-m", "rl_zoo3.train", *args], tmp_path)
    assert _trial_count(storage, "s") == 2
    # A second worker (here: the explicit wrapper) joins the same study.
    run(["-m", "sb3_qmp.train", *args], tmp_path)
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(study.trials) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials), [t.state for t in study.trials]
    assert {"commit_steps", "own_prob", "score", "critic_reduce"} <= set(study.trials[0].params)


def test_trial_id_loads_merged_params(tmp_path: Path) -> None:
    """``--trial-id`` converts a stored trial and merges its collector kwargs into the YAML's."""
    register_zoo()
    from rl_zoo3.exp_manager import ExperimentManager

    storage = f"sqlite:///{tmp_path / 't.db'}"
    study = optuna.create_study(storage=storage, study_name="t")
    for _ in range(2):  # rl-zoo3 ignores --trial-id 0 (falsy): load trial 1
        trial = study.ask()
        make_sampler("qmp")(trial, 2, 4, {})
        study.tell(trial, 1.0)
    manager: Any = ExperimentManager(
        None,  # type: ignore[arg-type]
        "qmp",
        ENV,
        str(tmp_path),
        storage=storage,
        study_name="t",
        trial_id=1,
    )
    hyperparams, _ = manager.read_hyperparameters()
    knobs = hyperparams["collector_kwargs"]
    assert knobs["commit_steps"] == trial.params["commit_steps"] and knobs["own_prob"] == trial.params["own_prob"]
    assert "switch_margin" in knobs, "the YAML's other Q-switch knobs are kept"
    assert hyperparams["batch_size"] == 2 ** trial.params["batch_size_pow"]
