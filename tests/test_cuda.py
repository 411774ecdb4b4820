"""Training with ``device="cuda"``: every algorithm learns, predicts (own and mixture), checkpoints and resumes
on a GPU. Skipped without CUDA (CI has none); run on a GPU machine with ``python -m pytest tests/test_cuda.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch as th

from sb3_qmp import make_multitask_vec_env
from sb3_qmp.common.checkpoints import write_checkpoint
from sb3_qmp.registry import ALGO_PATHS, get_algo

pytestmark = pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA GPU")

SMALL = dict(learning_starts=64, batch_size=32, buffer_size=2_000, policy_kwargs=dict(net_arch=[32, 32]))
EXTRA = {
    "dnc": dict(distill_period=128, distill_epochs=2, distill_batch_size=16),
    "qmp_domain": dict(collector_kwargs=dict(matrix=np.full((4, 4), 0.25))),
}


@pytest.mark.parametrize("algo", sorted(ALGO_PATHS))
def test_every_algorithm_trains_checkpoints_and_resumes_on_cuda(algo: str, tmp_path: Path) -> None:
    cls = get_algo(algo)
    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    model = cls(env, device="cuda", seed=0, **SMALL, **EXTRA.get(algo, {}))
    assert model.device.type == "cuda"
    model.learn(256)
    assert all(p.device.type == "cuda" for p in model.policy.parameters())
    obs = env.reset()
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (4, 2) and np.isfinite(actions).all()
    if model.has_mixture:
        mixed, _ = model.predict(obs, deterministic=True, behaviour="mixture")
        assert np.isfinite(mixed).all()
    checkpoint = write_checkpoint(model, tmp_path)
    resumed = cls.load(checkpoint.model, env=env, device="cuda")
    resumed.load_replay_buffer(checkpoint.replay_buffer)
    resumed.learn(128, reset_num_timesteps=False)
    assert resumed.num_timesteps == 384 and resumed._n_updates > model._n_updates


def test_grid_run_passes_device_cuda(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from sb3_qmp.grid import RunOptions, RunSpec, execute_run

    spec = RunSpec("qmp", "MultiGoalPoint-v0", 0, 640)
    result = execute_run(spec, str(tmp_path), RunOptions(nice=0, device="cuda"))
    assert result["finished"] and "--device cuda" in (spec.output_file(tmp_path).read_text())
