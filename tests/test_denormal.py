"""Denormal floats are flushed to zero during the gradient updates only, and the setting is restored."""

from __future__ import annotations

import pytest
import torch as th
from conftest import SMALL_KWARGS

from sb3_qmp import QMP, DnC, MultiHeadSAC, SharedSAC
from sb3_qmp.common.denormal import denormals_flushed, flush_denormals

pytestmark = pytest.mark.skipif(not th.set_flush_denormal(False), reason="this CPU cannot flush denormals (no SSE3 / not x86)")


@pytest.fixture(autouse=True)
def _flush_off() -> None:
    th.set_flush_denormal(False)
    yield
    th.set_flush_denormal(False)


def test_probe_reads_the_setting() -> None:
    assert not denormals_flushed()
    th.set_flush_denormal(True)
    assert denormals_flushed()


@pytest.mark.parametrize("before", [False, True])
def test_context_flushes_inside_and_restores_after(before: bool) -> None:
    th.set_flush_denormal(before)
    with flush_denormals():
        assert denormals_flushed()
        assert th.tensor([1e-39]).mul(1.0).item() == 0.0
    assert denormals_flushed() is before
    with pytest.raises(RuntimeError), flush_denormals():
        raise RuntimeError("an update failed")
    assert denormals_flushed() is before
    with flush_denormals(enabled=False):
        assert denormals_flushed() is before


def _record_flush_during_sampling(model) -> list[bool]:
    """Record, at every minibatch the update draws, whether denormals are being flushed."""
    seen: list[bool] = []

    def recording(sample):
        def recording_sample(*args, **kwargs):
            seen.append(denormals_flushed())
            return sample(*args, **kwargs)

        return recording_sample

    buffer = model.replay_buffer
    for name in ("sample", "sample_mixed"):  # sample_mixed: MultiHeadSAC's one batch over all tasks
        if hasattr(buffer, name):
            setattr(buffer, name, recording(getattr(buffer, name)))
    return seen


@pytest.mark.parametrize(
    "algo, extra",
    [(QMP, {}), (SharedSAC, {}), (MultiHeadSAC, {"batch_mode": "mixed"})],  # mixed: MultiHeadSAC's own update
    ids=["qmp", "shared", "multihead_mixed"],
)
@pytest.mark.parametrize("flush", [True, False])
def test_updates_run_flushed_only_when_asked(env, algo, extra, flush: bool) -> None:
    model = algo(env, flush_denormal=flush, **extra, **SMALL_KWARGS)
    model.learn(60)  # fills the buffer past learning_starts
    seen = _record_flush_during_sampling(model)
    model.learn(20, reset_num_timesteps=False)
    assert seen and all(s is flush for s in seen)
    assert not denormals_flushed()  # collection, callbacks and the caller's code run unflushed


def test_dnc_distillation_runs_flushed(env) -> None:
    model = DnC(env, distill_epochs=3, **SMALL_KWARGS)
    model.learn(60)
    seen = _record_flush_during_sampling(model)
    model.distill()
    assert seen == [True, True, True]
    assert not denormals_flushed()


def test_setting_is_saved(env, tmp_path) -> None:
    QMP(env, flush_denormal=False, **SMALL_KWARGS).save(tmp_path / "model")
    assert QMP.load(tmp_path / "model", env=env).flush_denormal is False
    assert QMP(env, **SMALL_KWARGS).flush_denormal is True
