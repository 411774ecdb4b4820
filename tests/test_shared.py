"""SharedSAC (Fully-Shared-Behaviors): one agent for all tasks, blind to the task id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch as th
import yaml
from gymnasium import spaces

from sb3_qmp import SharedSAC, make_multitask_vec_env
from sb3_qmp.common.buffers import MultiTaskReplayBuffer
from sb3_qmp.mtsac.policies import MultiTaskActor, MultiTaskSACPolicy
from sb3_qmp.shared import PooledReplayBuffer, SharedSACPolicy

SMALL = dict(learning_starts=50, batch_size=32, buffer_size=5_000, policy_kwargs=dict(net_arch=[32, 32]), seed=0)
SHARED_YAML = Path(__file__).parent.parent / "sb3_qmp" / "hyperparams" / "shared.yml"
# Paper (Table 2, appendix A.3.3) for Shared: (T, batch of one gradient step, hidden width, learning rate).
PAPER_SHARED = {
    "MultistageReacher-v0": (5, 32, 600, 3e-4),
    "MultistageReacher-v1": (5, 32, 600, 3e-4),
    "MazeNavigation-v0": (10, 256, 834, 3e-4),
    "MetaWorldDoorDrawer-v0": (4, 256, 512, 1e-3),
    "MetaWorldMT10-v0": (10, 256, 512, 1e-3),  # beyond the paper: its Meta-World settings
}


def obs_for_all_tasks(base: np.ndarray, num_tasks: int = 4) -> np.ndarray:
    """The same base observations, repeated with every one-hot task suffix: ``(T * N, D + T)``."""
    rows = []
    for task in range(num_tasks):
        onehot = np.zeros((len(base), num_tasks), dtype=np.float32)
        onehot[:, task] = 1.0
        rows.append(np.concatenate([base, onehot], axis=1))
    return np.concatenate(rows).astype(np.float32)


@pytest.fixture(scope="module")
def trained():
    th.set_num_threads(1)  # module-scoped: runs before the function-scoped autouse fixture
    venv = make_multitask_vec_env("MultiGoalPoint-v0", n_envs_per_task=1, seed=0)
    model = SharedSAC("MlpPolicy", venv, **SMALL)
    model.learn(400, progress_bar=False)
    yield model
    venv.close()


def test_same_action_regardless_of_task(trained):
    base = np.random.default_rng(0).uniform(-1, 1, size=(16, 2)).astype(np.float32)
    actions, _ = trained.predict(obs_for_all_tasks(base), deterministic=True)
    per_task = actions.reshape(4, 16, -1)
    for task in range(1, 4):
        np.testing.assert_array_equal(per_task[task], per_task[0])
    # ...and the action does depend on the state.
    assert not np.allclose(per_task[0][0], per_task[0][1])


def test_one_network_one_entropy_coefficient(trained):
    assert isinstance(trained.policy, SharedSACPolicy)
    assert trained.actor.net.num_members == 1
    assert trained.critic.q_net.num_members == trained.critic.n_critics == 2
    single = MultiTaskActor(1, 2, 2, [32, 32])
    assert sum(p.numel() for p in trained.actor.parameters()) == sum(p.numel() for p in single.parameters())
    assert trained.log_ent_coef.shape == (1,)
    assert trained.ent_coef_optimizer.param_groups[0]["params"][0] is trained.log_ent_coef


def test_train_statistics_are_the_pooled_batchs(env):
    # One agent: its one pooled batch has no per-task rows, so nothing is logged per task.
    model = SharedSAC(env, **SMALL)
    model.learn(100, progress_bar=False)
    model.logger.name_to_value.clear()
    model.train(gradient_steps=1, batch_size=model.batch_size)
    logged = model.logger.name_to_value
    assert {"train/actor_loss", "train/critic_loss", "train/ent_coef", "train/ent_coef_loss"} <= logged.keys()
    assert not [key for key in logged if key.startswith("train/task_")]


def test_learns_with_per_task_stats(trained):
    assert trained.num_timesteps == 400 and trained._n_updates > 0
    assert (trained.replay_buffer.task_sizes() == 100).all()
    assert all(len(buf) > 0 for buf in trained.task_ep_rew_buffer)
    # Every env row collects with the (one) shared policy for its own task.
    counts = trained.selection_matrix(normalize=False)
    np.testing.assert_array_equal(counts, np.diag(np.diag(counts)))


def test_pooled_batch(trained):
    buffer = trained.replay_buffer
    assert isinstance(buffer, PooledReplayBuffer)
    data = buffer.sample(8)
    assert data.observations.shape == (1, 32, 6) and data.rewards.shape == (1, 32)
    tasks = data.observations[0, :, 2:].argmax(dim=-1)
    assert th.bincount(tasks, minlength=4).tolist() == [8, 8, 8, 8]
    # The critic and actor accept the pooled batch and any leading dimension.
    features, _ = trained.policy.split_obs(data.observations)
    assert trained.critic(features, data.actions).shape == (2, 1, 32)
    q_flat = trained.critic(features.view(4, 8, 2), data.actions.view(4, 8, 2))
    th.testing.assert_close(q_flat.reshape(2, 1, 32), trained.critic(features, data.actions))


def test_gradient_steps_factor(env):
    model = SharedSAC(env, gradient_steps_factor=3, **SMALL)
    model.learn(200, progress_bar=False)
    n_train_calls = (200 - 52) // 4 + 1  # every vec step (4 env steps) after learning_starts
    assert model._n_updates == 3 * n_train_calls


def filled_pooled_buffer(num_tasks: int, per_task: int = 50) -> PooledReplayBuffer:
    """A buffer that counts ``batch_size`` in all, with ``per_task`` transitions of every task."""
    obs_space = spaces.Box(-np.inf, np.inf, shape=(2 + num_tasks,), dtype=np.float32)
    action_space = spaces.Box(-1, 1, shape=(1,))
    kwargs = dict(n_envs=num_tasks, num_tasks=num_tasks, batch_per_task=False)
    buffer = PooledReplayBuffer(100, obs_space, action_space, "cpu", **kwargs)
    obs = np.concatenate([np.zeros((num_tasks, 2)), np.eye(num_tasks)], axis=1).astype(np.float32)
    for _ in range(per_task):
        buffer.add(obs, obs, np.zeros((num_tasks, 1)), np.zeros(num_tasks), np.zeros(num_tasks), [{}] * num_tasks)
    return buffer


@pytest.mark.parametrize("num_tasks, total", [(5, 32), (10, 256), (4, 256), (4, 30)])
def test_total_batch_is_exact_and_spread_over_tasks(num_tasks, total):
    np.random.seed(0)
    buffer = filled_pooled_buffer(num_tasks)
    extra = np.zeros(num_tasks)
    n_batches = 1000
    for _ in range(n_batches):
        data = buffer.sample(total)
        assert data.observations.shape == (1, total, 2 + num_tasks) and data.rewards.shape == (1, total)
        per_task = np.bincount(data.observations[0, :, 2:].argmax(dim=-1).numpy(), minlength=num_tasks)
        assert set(per_task.tolist()) <= {total // num_tasks, total // num_tasks + 1}
        extra += per_task - total // num_tasks
    assert extra.sum() == n_batches * (total % num_tasks)
    if total % num_tasks:  # the remainder goes to every task equally often on average
        expected = n_batches * (total % num_tasks) / num_tasks
        assert np.abs(extra - expected).max() < 0.15 * expected, extra
    # The default stays per task: T * batch_size.
    buffer.batch_per_task = True
    assert buffer.sample(8).observations.shape == (1, 8 * num_tasks, 2 + num_tasks)


def test_batch_in_all_reaches_training(env, monkeypatch):
    model = SharedSAC(env, batch_per_task=False, gradient_steps_factor=2, **{**SMALL, "batch_size": 30})
    assert model.replay_buffer.batch_per_task is False
    sizes: list[int] = []
    sample = model.replay_buffer.sample

    def recording_sample(batch_size: int, env=None):
        data = sample(batch_size, env)
        sizes.append(data.observations.shape[1])
        return data

    monkeypatch.setattr(model.replay_buffer, "sample", recording_sample)
    model.learn(100, progress_bar=False)
    assert len(sizes) == model._n_updates > 0 and set(sizes) == {30}
    # The setting follows the model, also into a buffer saved under the other one.
    model.replay_buffer.batch_per_task = True
    model.train(gradient_steps=1, batch_size=model.batch_size)
    assert sizes[-1] == 30


@pytest.mark.parametrize("env_id", sorted(PAPER_SHARED))
def test_yaml_reproduces_the_papers_shared_setting(env_id):
    entry = yaml.safe_load(SHARED_YAML.read_text())[env_id]
    num_tasks, batch, hidden, lr = PAPER_SHARED[env_id]
    assert entry["n_envs"] == num_tasks and entry["gradient_steps_factor"] == num_tasks
    assert entry["batch_size"] == batch and entry["batch_per_task"] is False
    assert entry["policy_kwargs"]["net_arch"] == [hidden, hidden]
    assert float(entry["learning_rate"]) == pytest.approx(lr)


def test_bad_arguments(env):
    with pytest.raises(ValueError, match="task_id_input"):
        SharedSAC(env, **{**SMALL, "policy_kwargs": dict(net_arch=[32], task_id_input=True)})
    with pytest.raises(ValueError, match="'own' collector"):
        SharedSAC(env, collector="qswitch", **SMALL)
    with pytest.raises(ValueError, match="PooledReplayBuffer"):
        SharedSAC(env, replay_buffer_class=MultiTaskReplayBuffer, **SMALL)
    with pytest.raises(ValueError, match=r"SharedSAC needs a SharedSACPolicy .*got MultiTaskSACPolicy"):
        SharedSAC(MultiTaskSACPolicy, env, **SMALL)
    with pytest.raises(ValueError, match="gradient_steps_factor"):
        SharedSAC(env, gradient_steps_factor=0, **SMALL)
    with pytest.raises(ValueError, match="batch_per_task"):
        SharedSAC(env, batch_per_task="no", **SMALL)
