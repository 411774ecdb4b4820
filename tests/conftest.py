"""Shared fixtures: the built-in 4-task point env and small, fast model settings."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import sys
from types import ModuleType

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest
import torch as th

import sb3_qmp  # noqa: F401  (registers the env ids)
from sb3_qmp import make_multitask_vec_env

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (registered as ``bench_<name>``: dataclasses look their module up in
    ``sys.modules``; the scripts import their helpers from ``benchmarks/``)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# Tiny networks and buffers: every test model trains in well under a second per 100 steps.
SMALL_KWARGS = dict(learning_starts=50, batch_size=32, buffer_size=5_000, policy_kwargs=dict(net_arch=[32, 32]))


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    # Two CI cores: intra-op threads only add contention for these tiny matmuls.
    th.set_num_threads(1)


@pytest.fixture
def env():
    """The built-in 4-task point env, one sub-env per task."""
    venv = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=1, seed=0)
    yield venv
    venv.close()


@pytest.fixture
def point_env(env):
    return env


def task_slice(param: th.Tensor, task: int, num_tasks: int) -> th.Tensor:
    """Task ``task``'s part of a batched parameter (actor: member t; critic: members c*T + t)."""
    members = param.shape[0]
    if members == num_tasks:
        return param[task]
    return param.view(members // num_tasks, num_tasks, *param.shape[1:])[:, task]


def params_of(model) -> dict[str, th.Tensor]:
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}


def assert_same_params(a: dict[str, th.Tensor], b: dict[str, th.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert th.equal(a[key], b[key]), f"parameter {key} differs"


def set_constant_actors(policy, means: np.ndarray, log_std: float = -20.0) -> None:
    """Make actor j's action distribution the same in every state: zero output weights, pre-tanh mean
    ``atanh(means[j])`` and log-std ``log_std`` (the default -20 is the minimum: samples equal the mean)."""
    out = policy.actor.net.output
    action_dim = means.shape[1]
    with th.no_grad():
        out.weight.zero_()
        out.bias[:, 0, :action_dim] = th.atanh(th.as_tensor(means, dtype=th.float32))
        out.bias[:, 0, action_dim:] = log_std


def set_distance_critics(policy, targets: np.ndarray, second_targets: np.ndarray | None = None) -> None:
    """Make critic 1 of task i compute ``Q1_i(s, a) = -|a_0 - targets[i]|`` and every further critic
    ``-|a_0 - second_targets[i]|`` (the same targets if ``None``); needs net_arch of width >= 2."""
    q_net = policy.critic.q_net
    num_tasks = policy.num_tasks
    a0 = policy.features_dim  # input index of the first action dimension
    first, second = q_net.hidden
    second_targets = targets if second_targets is None else second_targets
    with th.no_grad():
        for layer in (*q_net.hidden, q_net.output):
            layer.weight.zero_()
            layer.bias.zero_()
        for member in range(q_net.num_members):  # member c * T + t is critic c of task t
            critic, task = divmod(member, num_tasks)
            target = float((targets if critic == 0 else second_targets)[task])
            first.weight[member, a0, 0], first.bias[member, 0, 0] = 1.0, -target  # relu(a0 - t)
            first.weight[member, a0, 1], first.bias[member, 0, 1] = -1.0, target  # relu(t - a0)
            second.weight[member, 0, 0] = second.weight[member, 1, 1] = 1.0
            q_net.output.weight[member, 0, 0] = q_net.output.weight[member, 1, 0] = -1.0
