"""rl-zoo3 integration: the start-up hook, the literal zoo commands, Optuna, configs, errors.

Subprocess tests run the *installed* package (``pip install -e .`` installs the ``.pth`` hook).
Each algorithm runs the literal ``python -m rl_zoo3.train`` in its own process; importing rl-zoo3
costs seconds, so independent processes run concurrently (:func:`run_jobs`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml

from sb3_qmp.common.vec_env import TaskAssignmentWrapper
from sb3_qmp.registry import ALGO_PATHS
from sb3_qmp.zoo import CONFIG_DIR, OPTIMIZE_BASE, available_algos, register_zoo, without_per_task_eval
from sb3_qmp.zoo.samplers import SWITCH_MARGINS, accepted_kwargs, convert_params, make_sampler

ENV = "MultiGoalPoint-v0"
AVAILABLE, MISSING = available_algos()
# Tiny budget: 200 env steps (50 per task), learning from step 100, one evaluation at the end.
SMOKE = ["-n", "200", "--seed", "1", "--eval-freq", "-1", "--num-threads", "1", "-params", "learning_starts:100"]
ZOO_ONLY_KEYS = {"n_envs", "n_timesteps", "vec_env_wrapper", "env_wrapper", "callback", "env_kwargs", "normalize"}
TIMEOUT = 240  # seconds, per subprocess
NORMALIZE_REWARD = "normalize:dict(norm_obs=False, norm_reward=True)"
REPO = Path(__file__).resolve().parent.parent
PACKAGE_ENVS = [
    "MultiGoalPoint-v0",
    "MultistageReacher-v0",
    "MultistageReacher-v1",
    "MazeNavigation-v0",
    "MetaWorldDoorDrawer-v0",
    "MetaWorldMT10-v0",
]


def subprocess_env() -> dict[str, str]:
    # The venv's bin first: the example scripts call plain `python`.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "PATH": path}


def run(args: list[str], tmp: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**subprocess_env(), **(extra_env or {})}
    proc = subprocess.run([sys.executable, *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def py(*args: str) -> list[str]:
    """A command line of this interpreter (the venv's ``python``)."""
    return [sys.executable, *args]


@dataclass
class Job:
    """Outcome of one :func:`run_jobs` job: its commands' return code and combined output."""

    returncode: int | None = None
    output: str = ""
    enjoy: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_jobs(jobs: dict[str, list[list[str]]], tmp: Path, extra_env: dict[str, str] | None = None) -> dict[str, Job]:
    """Run each job's commands one after the other, the jobs concurrently (at most one per CPU, min 2).

    A job stops at its first failing command. Every process gets the same timeout as :func:`run`.
    """
    env = {**subprocess_env(), **(extra_env or {})}
    limit = max(2, os.cpu_count() or 1)
    pending = list(jobs)
    running: dict[str, tuple[subprocess.Popen, float, list[list[str]]]] = {}
    results = {name: Job() for name in jobs}

    def start(name: str, commands: list[list[str]]) -> None:
        # Output to a file, not a pipe: nobody reads while they run (the child keeps its own handle).
        with open(tmp / f"{name}.out", "a") as log:
            proc = subprocess.Popen(commands[0], cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        running[name] = (proc, time.monotonic(), commands[1:])

    while pending or running:
        while pending and len(running) < limit:
            name = pending.pop(0)
            start(name, jobs[name])
        time.sleep(0.05)
        for name, (proc, began, rest) in list(running.items()):
            if proc.poll() is None and time.monotonic() - began < TIMEOUT:
                continue
            if proc.returncode is None:
                proc.kill()
                proc.wait()
                with open(tmp / f"{name}.out", "a") as log:
                    log.write(f"\n[killed after {TIMEOUT} s]\n")
            del running[name]
            results[name].returncode = proc.returncode
            if proc.returncode == 0 and rest:
                start(name, rest)
    for name, result in results.items():
        result.output = (tmp / f"{name}.out").read_text()
    return results


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


def test_zoo_runtime_dependencies_are_declared() -> None:
    """rl-zoo3 needs pandas, requests and (its ``rl_zoo3`` console script) seaborn without declaring them."""
    import importlib

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~; \[]", dep, maxsplit=1)[0].lower() for dep in dependencies}
    assert {"pandas", "requests", "seaborn", "rl-zoo3"} <= names
    importlib.import_module("rl_zoo3.cli")  # what the console script imports (seaborn through rl_zoo3.plots)


# ----------------------------------------------------------------------------------------------
# Configs and the task-cycling wrapper
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", sorted(ALGO_PATHS))
def test_yaml_entries_match_constructor(algo: str) -> None:
    path = CONFIG_DIR / f"{algo}.yml"
    assert path.is_file(), f"missing config {path}"
    assert (Path(__file__).parent.parent / "hyperparams" / f"{algo}.yml").is_file(), "top-level hyperparams/ is missing"
    entries = yaml.safe_load(path.read_text())
    expected_envs = PACKAGE_ENVS if algo != "qmp_domain" else PACKAGE_ENVS[:3]  # the envs with a domain matrix
    assert sorted(entries) == sorted(expected_envs)
    require(algo)
    accepted = accepted_kwargs(AVAILABLE[algo])
    for env_id, entry in entries.items():
        unknown = set(entry) - ZOO_ONLY_KEYS - accepted
        assert not unknown, f"{algo}/{env_id}: the constructor takes no {sorted(unknown)}"
        assert entry["vec_env_wrapper"] == "sb3_qmp.common.vec_env.TaskAssignmentWrapper"
        assert entry["policy"] == "MlpPolicy"


# The authors' released code (run.py; SPEC 7), per task set: env steps and gradient steps per iteration
# (all tasks), batch per gradient step, minimum buffer, lr of the T-agent methods, total env steps. The
# T-agent methods keep one buffer per task (min buffer and batch per task, gradient steps split evenly);
# Shared and the multi-head network (batch_mode mixed) train on ONE buffer of all tasks.
CODE_SCHEDULES = {
    "MultistageReacher-v1": dict(env_steps=1000, gradient_steps=1000, batch=32, min_buffer=10_000, lr=3e-4, total=2e6),
    "MazeNavigation-v0": dict(env_steps=6000, gradient_steps=1000, batch=256, min_buffer=3000, lr=3e-4, total=12e6),
    "MetaWorldDoorDrawer-v0": dict(env_steps=2000, gradient_steps=200, batch=256, min_buffer=5000, lr=1.5e-3, total=10e6),
}


@pytest.mark.parametrize("algo", sorted(ALGO_PATHS))
def test_paper_entries_follow_the_authors_code_schedule(algo: str) -> None:
    entries = yaml.safe_load((CONFIG_DIR / f"{algo}.yml").read_text())
    for env_id, code in CODE_SCHEDULES.items():
        if env_id not in entries:
            assert algo == "qmp_domain" and env_id != "MultistageReacher-v1", f"{algo} lacks {env_id}"
            continue
        entry, tasks = entries[env_id], entries[env_id]["n_envs"]
        where = f"{algo}/{env_id}"
        assert entry["train_freq"] * tasks == code["env_steps"], where  # vec-env steps x one sub-env per task
        assert entry["batch_size"] == code["batch"] and entry["n_timesteps"] == code["total"], where
        if algo == "shared":  # one SAC on a pooled batch of batch_size in all, T x the gradient steps
            assert entry["batch_per_task"] is False and entry["gradient_steps_factor"] == tasks, where
            assert entry["gradient_steps"] * tasks == code["gradient_steps"], where
            assert entry["learning_starts"] == code["min_buffer"], where
        elif entry.get("batch_mode") == "mixed":  # one mixed batch per gradient step
            assert algo in ("mtsac_multihead", "qmp_multihead"), where
            assert entry["gradient_steps"] == code["gradient_steps"], where
            assert entry["learning_starts"] == code["min_buffer"], where
        else:  # every gradient step updates every task on its own batch
            assert "batch_mode" not in entry, where
            assert entry["gradient_steps"] * tasks == code["gradient_steps"], where
            assert entry["learning_starts"] == code["min_buffer"] * tasks, where
            assert entry["learning_rate"] == code["lr"], where
        (evaluation,) = [c["sb3_qmp.common.callbacks.PerTaskEvalCallback"] for c in entry["callback"]]
        assert evaluation["n_eval_episodes"] == 10, where  # per task, as the code
    if algo in ("mtsac_multihead", "qmp_multihead"):  # the authors' multi-head training on every paper task set
        assert all(entries[env_id]["batch_mode"] == "mixed" for env_id in CODE_SCHEDULES), algo
        assert entries["MultistageReacher-v1"]["learning_rate"] == entries["MultistageReacher-v0"]["learning_rate"] == 1e-3
    if algo == "qmp_multihead":
        # The paper's text: 100 iterations of own-policy collection on Maze (the released code has none).
        assert entries["MazeNavigation-v0"]["collector_kwargs"]["warmup_steps"] == 100 * 6000
        assert "warmup_steps" not in entries["MultistageReacher-v1"]["collector_kwargs"]
    if algo == "shared":
        assert entries["MetaWorldDoorDrawer-v0"]["learning_rate"] == 1e-3  # paper A.3.3 (tuned for Shared)
    if algo == "qmp_domain":
        assert entries["MultistageReacher-v1"]["collector_kwargs"]["matrix"] == "reacher_domain"
    # The earlier rebuild keeps Table 2's schedule: 1000 env steps and 100 gradient steps per task per update.
    v0 = entries["MultistageReacher-v0"]
    assert (v0["train_freq"], v0["gradient_steps"], v0["learning_starts"]) == (1000, 100, 50_000), algo


PAPER_ENTRIES = [
    (path.stem, env_id)
    for path in sorted(Path(CONFIG_DIR).glob("*.yml"))
    for env_id in yaml.safe_load(path.read_text())
    if env_id != ENV  # the built-in env's entries are trained by the subprocess tests below
]


@pytest.mark.parametrize("algo, env_id", PAPER_ENTRIES)
def test_paper_yaml_entries_build_their_model(algo: str, env_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every paper-env entry goes through rl-zoo3's own set-up: env, wrappers, callbacks and model."""
    require(algo)
    monkeypatch.setitem(OPTIMIZE_BASE, algo, {})  # setup_experiment records the run's hyperparameters there
    register_zoo()
    from rl_zoo3.exp_manager import ExperimentManager
    from rl_zoo3.utils import ALGOS

    manager: Any = ExperimentManager(argparse.Namespace(), algo, env_id, str(tmp_path), verbose=0)
    model, _ = manager.setup_experiment()
    try:
        entry = yaml.safe_load((Path(CONFIG_DIR) / f"{algo}.yml").read_text())[env_id]
        assert isinstance(model, ALGOS[algo])
        assert model.n_envs == entry["n_envs"] == model.num_tasks
        assert model.batch_size == entry["batch_size"] and model.learning_starts == entry["learning_starts"]
        actions, _ = model.predict(model.env.reset(), deterministic=True)
        assert actions.shape == (model.n_envs, *model.action_space.shape)
    finally:
        model.env.close()


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
        assert knobs["switch_margin"] in SWITCH_MARGINS
        assert ("switch_margin" in trial.params) == (knobs["commit_steps"] > 1)
    if algo in ("dnc", "dnc_reg"):  # the trial parameter is the constructor's own name
        assert params["beta"] == trial.params["beta"] in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@pytest.mark.parametrize("algo", ["qmp", "qmp_multihead"])
def test_switch_margin_is_sampled_with_commitments_and_reloaded(algo: str, tmp_path: Path) -> None:
    """``switch_margin`` (None included) is drawn only when ``commit_steps > 1`` and survives the storage."""
    require(algo)
    storage = f"sqlite:///{tmp_path / 'm.db'}"
    study = optuna.create_study(storage=storage, study_name="m", sampler=optuna.samplers.RandomSampler(seed=0))
    fixed: list[dict[str, Any]] = [
        {"commit_steps": 5, "switch_margin": None},
        {"commit_steps": 10, "switch_margin": 1.0},
        {"commit_steps": 1},
    ]
    sampled = []
    for values in fixed:
        study.enqueue_trial(values)
        trial = study.ask()
        sampled.append(make_sampler(algo)(trial, 2, 4, {}))
        study.tell(trial, 0.0)
    assert [params["collector_kwargs"]["switch_margin"] for params in sampled] == [None, 1.0, None]
    stored = optuna.load_study(study_name="m", storage=storage).trials
    assert "switch_margin" in stored[0].params and stored[0].params["switch_margin"] is None
    assert "switch_margin" not in stored[2].params, "no margin is drawn without commitments"
    for trial_record, params in zip(stored, sampled):
        assert convert_params(algo, trial_record.params) == params  # what --trial-id reloads
    # A margin in the YAML is switched off when the trial does not commit.
    assert convert_params(algo, {"commit_steps": 1})["collector_kwargs"] == {"commit_steps": 1, "switch_margin": None}
    if algo == "qmp":
        register_zoo()
        from rl_zoo3.exp_manager import ExperimentManager

        manager: Any = ExperimentManager(None, algo, ENV, str(tmp_path), storage=storage, study_name="m", trial_id=1)  # type: ignore[arg-type]
        knobs = manager.read_hyperparameters()[0]["collector_kwargs"]
        assert knobs["commit_steps"] == 10 and knobs["switch_margin"] == 1.0


def test_sampled_collector_kwargs_merge_into_yaml() -> None:
    require("qmp_domain")

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


def test_zoo_normalization_is_per_task_and_works_with_per_task_eval(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``normalize`` in a zoo config builds VecNormalizePerTask (rewards per task, features only), saved for
    ``enjoy``, and works with the YAML's per-task eval callback."""
    from sb3_qmp.common.normalize import VecNormalizePerTask
    from sb3_qmp.common.vec_env import make_multitask_vec_env

    monkeypatch.setitem(OPTIMIZE_BASE, "qmp", {})  # setup_experiment records the run's hyperparameters
    # SMOKE ends with the -params list: add the normalisation to it.
    _zoo_train(monkeypatch, ["--algo", "qmp", "--env", ENV, "-f", str(tmp_path), *SMOKE, "normalize:True"])
    run_dir = tmp_path / "qmp" / f"{ENV}_1"
    stats = VecNormalizePerTask.load(str(run_dir / ENV / "vecnormalize.pkl"), make_multitask_vec_env(ENV))
    assert stats.norm_obs and stats.norm_reward and (stats.ret_rms.count > 1).all()
    evaluations = np.load(run_dir / "evaluations_per_task.npz")
    assert evaluations["timesteps"].size == 1 and (evaluations["returns"] < 0).all()


def test_optimize_leaves_per_task_eval_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    register_zoo()
    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_qmp.common.callbacks import PerTaskEvalCallback

    name = "sb3_qmp.common.callbacks.PerTaskEvalCallback"
    other = "stable_baselines3.common.callbacks.CheckpointCallback"
    spec = [{name: {"eval_freq": 10}}, {other: {"save_freq": 10}}, name, PerTaskEvalCallback()]
    assert without_per_task_eval(spec) == [{other: {"save_freq": 10}}]
    assert without_per_task_eval(None) == [] and without_per_task_eval(name) == []
    assert without_per_task_eval("no.such.Callback") == ["no.such.Callback"]  # left to the zoo's error

    monkeypatch.setitem(OPTIMIZE_BASE, "qmp", {})
    manager: Any = ExperimentManager(argparse.Namespace(), "qmp", ENV, str(tmp_path), optimize_hyperparameters=True, verbose=0)
    assert manager.setup_experiment() is None
    assert manager.specified_callbacks == [], "trials must not re-create the YAML's PerTaskEvalCallback"
    manager = ExperimentManager(argparse.Namespace(), "qmp", ENV, str(tmp_path), verbose=0)
    manager.setup_experiment()
    per_task = [c for c in manager.callbacks if isinstance(c, PerTaskEvalCallback)]
    assert len(per_task) == 1 and per_task[0].log_path == manager.save_path  # plain training keeps it


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
    # The explicit wrapper takes the same arguments.
    proc = run(["-m", "sb3_qmp.enjoy", "--algo", "qmp", "--env", ENV, "-f", str(logs), "--no-render", "-n", "130"], tmp_path)
    assert proc.stdout.count("Episode Reward") >= 4, proc.stdout[-2000:]


ENJOY_LOOP = textwrap.dedent(
    """
    import json, runpy, sys, traceback
    results, out_file, algos = {}, sys.argv[1], sys.argv[2:]
    for algo in algos:
        sys.argv = ["rl_zoo3.enjoy", "--algo", algo, "--env", ENV, "-f", LOGS, "--no-render", "-n", "40"]
        try:
            runpy.run_module("rl_zoo3.enjoy", run_name="__main__", alter_sys=True)
            results[algo] = "ok"
        except BaseException:
            results[algo] = traceback.format_exc()[-3000:]
    json.dump(results, open(out_file, "w"))
    """
)


@pytest.fixture(scope="module")
def other_algo_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Job]]:
    """``python -m rl_zoo3.train --algo <algo>`` for every importable algorithm but qmp, each in its own process.

    The processes run concurrently (start-up, mostly imports, dominates their ~4 s). Then one more
    process runs ``rl_zoo3.enjoy`` (through ``runpy``, as ``-m`` does) on every trained model.
    """
    tmp = tmp_path_factory.mktemp("zoo_algos")
    logs = str(tmp / "logs")
    algos = sorted(name for name in AVAILABLE if name != "qmp")
    jobs = {algo: [py("-m", "rl_zoo3.train", "--algo", algo, "--env", ENV, "-f", logs, *SMOKE)] for algo in algos}
    results = run_jobs(jobs, tmp)
    trained = [algo for algo in algos if results[algo].ok]
    if trained:
        script = f"ENV = {ENV!r}; LOGS = {logs!r}\n" + ENJOY_LOOP
        run(["-c", script, str(tmp / "enjoy.json"), *trained], tmp)
        for algo, outcome in json.loads((tmp / "enjoy.json").read_text()).items():
            results[algo].enjoy = outcome
    return tmp, results


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(name for name in ALGO_PATHS if name != "qmp"))
def test_zoo_train_every_algo(algo: str, other_algo_runs: tuple[Path, dict[str, Job]]) -> None:
    require(algo)
    tmp, results = other_algo_runs
    result = results[algo]
    assert result.ok, result.output
    assert f"{algo}.yml" in result.output, "the default config must be the package's YAML"
    assert result.enjoy == "ok", result.enjoy
    run_dir = tmp / "logs" / algo / f"{ENV}_1"
    model = AVAILABLE[algo].load(run_dir / f"{ENV}.zip")
    assert model.num_tasks == 4 and model.num_timesteps >= 200
    assert np.load(run_dir / "evaluations_per_task.npz")["successes"].shape[1] == 4


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


@pytest.mark.slow
def test_optimize_with_journal_file_storage(tmp_path: Path) -> None:
    """``--storage <file>.log``: Optuna's journal file, shared by two concurrent workers (the way to spread
    a study over processes or machines where SQLite locking is not enough)."""
    journal = tmp_path / "study.log"
    args = ["--algo", "qmp", "--env", ENV, "-f", str(tmp_path / "logs"), "-optimize", "--n-trials", "2"]
    args += ["--storage", str(journal), "--study-name", "j", "--sampler", "random", "--pruner", "none"]
    args += ["--n-evaluations", "1", "--eval-episodes", "4", "--no-optim-plots", *SMOKE, NORMALIZE_REWARD]
    # SB3 gives each trial's logger a folder under TMPDIR: nothing may be written there.
    (tmp_path / "tmp").mkdir()
    # Two workers at the same time on one study (what several processes or machines sharing a file do).
    jobs = {f"worker{i}": [py("-m", "rl_zoo3.train", *args, "-f", str(tmp_path / f"logs{i}"))] for i in range(2)}
    results = run_jobs(jobs, tmp_path, extra_env={"TMPDIR": str(tmp_path / "tmp")})
    for name, job in results.items():
        assert job.ok, f"{name} failed:\n{job.output[-3000:]}"
        assert "PerTaskEvalCallback is left out of -optimize trials" in job.output
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="j", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert len({t.number for t in trials}) == 4, "the workers' trials are distinct trials of one study"
    assert not list(tmp_path.rglob("evaluations_per_task.*")), "no per-task evaluation files during -optimize"


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


# ----------------------------------------------------------------------------------------------
# examples/ (tiny budgets, so that they cannot rot)
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_examples_run(tmp_path: Path) -> None:
    examples = REPO / "examples"
    scripts = {path.name for path in examples.iterdir() if path.suffix in (".py", ".sh")}
    jobs = {
        # plot.sh draws the logs (and the model) that zoo_train.sh writes.
        "zoo_train+plot": [["bash", str(examples / "zoo_train.sh")], ["bash", str(examples / "plot.sh")]],
        # Its own log folder: -optimize would take zoo_train's run folder number.
        "optuna_tune": [["env", f"LOGS={tmp_path / 'logs_tune'}", "bash", str(examples / "optuna_tune.sh")]],
        "python_api": [py(str(examples / "python_api.py"), "--steps", "480", "--logdir", str(tmp_path / "logs_api"))],
        "custom_collector": [
            py(str(examples / "custom_collector.py"), "--steps", "480", "--output", str(tmp_path / "sq.zip"))
        ],
    }
    assert scripts == {"zoo_train.sh", "plot.sh", "optuna_tune.sh", "python_api.py", "custom_collector.py"}, (
        "a new example needs a job here"
    )
    # 480 steps: past the MultiGoalPoint learning_starts (400), so QMP picks mixtures (heatmap).
    budget = {"N": "480", "LOGS": str(tmp_path / "logs"), "TRIALS": "2", "STORAGE": f"sqlite:///{tmp_path / 'tune.db'}"}
    results = run_jobs(jobs, tmp_path, extra_env=budget)
    for name, result in results.items():
        assert result.ok, f"{name} failed ({result.returncode}):\n{result.output[-5000:]}"
    plots = sorted(path.name for path in (tmp_path / "logs" / "plots").iterdir())
    assert f"{ENV}_success.png" in plots and f"{ENV}_qmp_selection.png" in plots, plots
    assert len(optuna.load_study(study_name="qmp_point", storage=budget["STORAGE"]).trials) == 2
    assert "per-task success of the loaded model" in results["python_api"].output
    assert "collector: SoftmaxQSwitch temperature 0.5" in results["custom_collector"].output
    assert (tmp_path / "logs_api" / "qmp" / f"{ENV}_1" / "evaluations_per_task.npz").is_file()


def test_collector_kwargs_as_a_string_like_policy_kwargs(tmp_path: Path) -> None:
    """A YAML's ``collector_kwargs: "dict(own_prob=0.5)"`` works as rl-zoo3's policy_kwargs strings do."""
    from sb3_qmp import QMP, make_multitask_vec_env
    from sb3_qmp.zoo import collector_kwargs_from_string

    entry = yaml.safe_load((CONFIG_DIR / "qmp.yml").read_text())[ENV]
    entry["collector_kwargs"] = "dict(own_prob=0.5, commit_steps=2)"
    entry.pop("callback")
    (tmp_path / "qmp.yml").write_text(yaml.safe_dump({ENV: entry}))
    run(["-m", "sb3_qmp.train", "--algo", "qmp", "--env", ENV, "-conf", "qmp.yml", "-f", "logs", *SMOKE], tmp_path)
    model = QMP.load(tmp_path / "logs" / "qmp" / f"{ENV}_1" / f"{ENV}.zip")
    assert model.collector.own_prob == 0.5 and model.collector.commit_steps == 2
    assert collector_kwargs_from_string("dict(score='sample')") == {"score": "sample"}
    with pytest.raises(ValueError, match="gives a list, not a dict"):
        collector_kwargs_from_string("[1, 2]")
    with pytest.raises(ValueError, match=r"collector_kwargs must be a dict .* got the list \['own_prob', 0.5\]"):
        QMP(make_multitask_vec_env(ENV), collector_kwargs=["own_prob", 0.5])
