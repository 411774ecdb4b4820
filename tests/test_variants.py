"""Every registered algorithm: learn end-to-end, save/load round trip, continue learning after load."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

from sb3_qmp.registry import ALGO_PATHS, get_algo

SMALL = dict(learning_starts=50, batch_size=32, buffer_size=5_000, policy_kwargs=dict(net_arch=[32, 32]), seed=0)
EXTRA: dict[str, dict] = {
    "qmp_domain": dict(mixture=np.full((4, 4), 0.25)),
    "dnc": dict(distill_period=120, distill_epochs=10, distill_batch_size=16),
    "shared": dict(gradient_steps_factor=2, batch_per_task=False),
}


def state(model) -> dict[str, th.Tensor]:
    tensors = {f"policy.{k}": v.detach().clone() for k, v in model.policy.state_dict().items()}
    if model.ent_coef_optimizer is not None:
        tensors["log_ent_coef"] = model.log_ent_coef.detach().clone()
    else:
        tensors["ent_coef_tensor"] = model.ent_coef_tensor.clone()
    if getattr(model, "central_actor", None) is not None:
        tensors.update({f"central.{k}": v.detach().clone() for k, v in model.central_actor.state_dict().items()})
    return tensors


def optimizer_state(model) -> list[th.Tensor]:
    optimizers = [model.actor.optimizer, model.critic.optimizer, model.ent_coef_optimizer]
    if getattr(model, "central_actor", None) is not None:
        optimizers.append(model.central_actor.optimizer)  # DnC's distillation optimizer (warm start)
    out = []
    for opt in optimizers:
        state = opt.state_dict()["state"]
        assert state, f"{type(opt).__name__} has no state to compare"
        for per_param in state.values():
            out.extend(v.clone() for v in per_param.values() if isinstance(v, th.Tensor))
    return out


@pytest.mark.parametrize("name", sorted(ALGO_PATHS))
def test_learn_save_load_continue(env, tmp_path, name):
    algo = get_algo(name)
    assert "MlpPolicy" in algo.policy_aliases
    model = algo("MlpPolicy", env, **SMALL, **EXTRA.get(name, {}))
    model.learn(300, progress_bar=False)
    assert model.num_timesteps == 300 and model._n_updates > 0
    if name == "dnc":
        assert model.distill_count == 2

    obs = env.reset()
    obs = np.concatenate([obs, obs + np.array([0.1, -0.1, 0, 0, 0, 0], dtype=np.float32)])
    expected, _ = model.predict(obs, deterministic=True)
    path = tmp_path / name
    model.save(path)

    loaded = algo.load(path, env=env)
    assert type(loaded) is algo and type(loaded.policy) is type(model.policy)
    assert loaded.collector_name == model.collector_name
    np.testing.assert_array_equal(loaded.selection_counts, model.selection_counts)
    actions, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, expected)
    before, after = state(model), state(loaded)
    assert before.keys() == after.keys()
    for key in before:
        assert th.equal(before[key], after[key]), f"{key} differs after load"
    for a, b in zip(optimizer_state(model), optimizer_state(loaded), strict=True):
        assert th.equal(a, b)
    if name == "qmp_domain":
        np.testing.assert_allclose(loaded.mixture, model.mixture)
    if name in ("dnc", "dnc_reg"):
        assert loaded.beta == model.beta and loaded.kl_states == model.kl_states
    if name == "dnc":
        # The distillation schedule carries over: the next one is still due at the same env step.
        for field in ("distill_count", "_next_distill_at", "_distill_every", "distill_period", "distill_epochs"):
            assert getattr(loaded, field) == getattr(model, field), f"{field} differs after load"
        assert loaded.distill_reset_optimizer == model.distill_reset_optimizer
    if name == "shared":
        assert loaded.gradient_steps_factor == 2 and loaded.log_ent_coef.shape == (1,)
        assert loaded.batch_per_task is False and loaded.replay_buffer.batch_per_task is False

    n_updates = loaded._n_updates
    loaded.learn(100, reset_num_timesteps=False, progress_bar=False)
    assert loaded.num_timesteps == 400 and loaded._n_updates > n_updates
    if name == "dnc":
        # distill_period=120: distillations at 120 and 240 before saving, the next at 360 after loading.
        assert model._next_distill_at == 360 and loaded.distill_count == 3 and loaded._next_distill_at == 480
