"""Separated, QMP-Uniform and QMP-Domain: the behaviour policy each one collects with."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from sb3_qmp import QMPDomain, QMPUniform, Separated, make_multitask_vec_env
from sb3_qmp.common.collectors import check_mixture_matrix
from sb3_qmp.common.presets import MIXTURE_PRESETS

SMALL = dict(batch_size=32, buffer_size=5_000, policy_kwargs=dict(net_arch=[32, 32]), seed=0)
# chi-square critical values at p = 0.001 by degrees of freedom
CHI2_CRIT = {1: 10.83, 2: 13.82, 3: 16.27}
MATRIX = np.array(
    [
        [0.5, 0.5, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.1, 0.2, 0.3, 0.4],
        [0.25, 0.0, 0.0, 0.75],
    ]
)


# SPEC / paper appendix (QMP-Domain on Multistage Reacher), written out independently of the preset:
# T0: 2/3 pi0 + 1/3 pi1; T1: 1/3 pi0 + 2/3 pi1; T2: 5/6 pi2 + 1/6 pi3; T3: 1/6 pi2 + 5/6 pi3; T4: pi4.
SPEC_REACHER_DOMAIN = np.array(
    [
        [2 / 3, 1 / 3, 0.0, 0.0, 0.0],
        [1 / 3, 2 / 3, 0.0, 0.0, 0.0],
        [0.0, 0.0, 5 / 6, 1 / 6, 0.0],
        [0.0, 0.0, 1 / 6, 5 / 6, 0.0],
        [0.0, 0.0, 0.0, 0.0, 1.0],
    ]
)


@pytest.fixture
def five_task_env():
    """A cheap 5-task env (the Reacher preset's size): five Pendulum tasks, one sub-env each."""
    venv = make_multitask_vec_env([lambda: gym.make("Pendulum-v1")] * 5, seed=0)
    yield venv
    venv.close()


def chi_square(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Pearson statistic over the cells with non-zero expected probability, and its degrees of freedom."""
    support = probs > 0
    expected = counts.sum() * probs[support]
    return float(((counts[support] - expected) ** 2 / expected).sum()), int(support.sum()) - 1


def collect_only(model, steps: int):
    # learning_starts=0 and gradient_steps=0: every step goes through the collector, no training.
    return model.learn(steps, progress_bar=False)


def test_uniform_selection_converges_to_uniform(env):
    model = QMPUniform("MlpPolicy", env, learning_starts=0, gradient_steps=0, **SMALL)
    collect_only(model, 4_000)
    counts = model.selection_matrix(normalize=False)
    assert counts.sum(axis=1).tolist() == [1000] * 4
    for row in counts:
        stat, dof = chi_square(row, np.full(4, 0.25))
        assert stat < CHI2_CRIT[dof], row
    assert np.abs(model.selection_matrix() - 0.25).max() < 0.06


@pytest.mark.parametrize("how", ["mixture", "collector_kwargs"])
def test_fixed_matrix_counts_match(env, how):
    kwargs = dict(mixture=MATRIX) if how == "mixture" else dict(collector_kwargs=dict(matrix=MATRIX))
    model = QMPDomain("MlpPolicy", env, learning_starts=0, gradient_steps=0, **kwargs, **SMALL)
    np.testing.assert_allclose(model.mixture, MATRIX)
    collect_only(model, 4_000)
    counts = model.selection_matrix(normalize=False)
    assert (counts[MATRIX == 0] == 0).all(), "a policy with probability 0 was used"
    for task in range(4):
        stat, dof = chi_square(counts[task], MATRIX[task])
        if dof > 0:
            assert stat < CHI2_CRIT[dof], (task, counts[task])
    assert np.abs(model.selection_matrix() - MATRIX).max() < 0.06


def test_fixed_learns_end_to_end(env):
    model = QMPDomain(env, mixture=MATRIX, learning_starts=50, **SMALL)
    model.learn(300, progress_bar=False)
    assert model.num_timesteps == 300 and model._n_updates > 0
    assert (model.selection_matrix(normalize=False)[MATRIX == 0] == 0).all()


def test_reacher_preset_is_the_papers_matrix():
    assert "reacher_domain" in MIXTURE_PRESETS
    np.testing.assert_allclose(check_mixture_matrix("reacher_domain", 5), SPEC_REACHER_DOMAIN, rtol=0, atol=1e-12)


def test_reacher_preset_selection_counts(five_task_env):
    model = QMPDomain(five_task_env, mixture="reacher_domain", learning_starts=0, gradient_steps=0, **SMALL)
    np.testing.assert_allclose(model.mixture, SPEC_REACHER_DOMAIN, atol=1e-12)
    collect_only(model, 5_000)
    counts = model.selection_matrix(normalize=False)
    assert counts.sum(axis=1).tolist() == [1000] * 5
    assert (counts[SPEC_REACHER_DOMAIN == 0] == 0).all(), "a policy with probability 0 was used"
    assert counts[4, 4] == 1000  # T4 shares nothing
    for task in range(4):
        stat, dof = chi_square(counts[task], SPEC_REACHER_DOMAIN[task])
        assert stat < CHI2_CRIT[dof], (task, counts[task])
    assert np.abs(model.selection_matrix() - SPEC_REACHER_DOMAIN).max() < 0.06


def test_saved_domain_model_keeps_its_matrix(five_task_env, tmp_path, monkeypatch):
    model = QMPDomain(five_task_env, mixture="reacher_domain", **SMALL)
    stored = model.collector_kwargs["matrix"]
    assert isinstance(stored, list) and all(isinstance(row, list) for row in stored)
    assert all(type(p) is float for row in stored for p in row)
    np.testing.assert_allclose(stored, SPEC_REACHER_DOMAIN, atol=1e-12)
    model.save(tmp_path / "domain")

    # Editing the preset changes new models built from the name, but not the saved one.
    monkeypatch.setitem(MIXTURE_PRESETS, "reacher_domain", np.eye(5).tolist())
    np.testing.assert_array_equal(QMPDomain(five_task_env, mixture="reacher_domain", **SMALL).mixture, np.eye(5))
    loaded = QMPDomain.load(tmp_path / "domain", env=five_task_env)
    np.testing.assert_allclose(loaded.mixture, SPEC_REACHER_DOMAIN, atol=1e-12)
    assert loaded.collector_kwargs["matrix"] == stored


def test_array_mixture_is_stored_as_a_list(env):
    model = QMPDomain(env, mixture=MATRIX, **SMALL)
    assert model.collector_kwargs["matrix"] == MATRIX.tolist()


@pytest.mark.parametrize(
    "matrix, message",
    [
        (np.eye(3), "must be 4 x 4"),
        ("reacher_domain", "must be 4 x 4"),  # the 5-task preset on a 4-task env
        (np.array([[1.5, -0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "non-negative"),
        (np.full((4, 4), 0.3), "sum to 1"),
        (np.array([[np.nan, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "finite"),
        ("no_such_preset", "Unknown mixture preset"),
        ([[1, 0, 0, 0], [1, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "must be a 4 x 4 array of numbers"),  # ragged
        ([["a", 0, 0, 0]] * 4, "must be a 4 x 4 array of numbers"),
    ],
)
def test_invalid_matrices_rejected(env, matrix, message):
    with pytest.raises(ValueError, match=message):
        QMPDomain(env, mixture=matrix, **SMALL)


def test_domain_argument_errors(env):
    with pytest.raises(ValueError, match="needs a fixed mixture matrix"):
        QMPDomain(env, **SMALL)
    with pytest.raises(ValueError, match="once"):
        QMPDomain(env, mixture=MATRIX, collector_kwargs=dict(matrix=MATRIX), **SMALL)
    with pytest.raises(ValueError, match="always collects with the 'fixed' collector"):
        QMPDomain(env, mixture=MATRIX, collector="qswitch", **SMALL)
    with pytest.raises(ValueError, match="always collects with the 'uniform' collector"):
        QMPUniform(env, collector="own", **SMALL)
    with pytest.raises(ValueError, match="always collects with the 'own' collector"):
        Separated(env, collector="uniform", **SMALL)


def test_separated_only_uses_own_policy(env):
    model = Separated(env, learning_starts=50, **SMALL)
    assert model.collector_name == "own"
    model.learn(300, progress_bar=False)
    counts = model.selection_matrix(normalize=False)
    assert counts.sum() > 0
    np.testing.assert_array_equal(counts, np.diag(np.diag(counts)))
