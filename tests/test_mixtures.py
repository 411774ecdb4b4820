"""Separated, QMP-Uniform and QMP-Domain: the behaviour policy each one collects with."""

from __future__ import annotations

import numpy as np
import pytest

from sb3_qmp import QMPDomain, QMPUniform, Separated
from sb3_qmp.common.collectors import check_mixture_matrix
from sb3_qmp.common.presets import MIXTURE_PRESETS, REACHER_DOMAIN

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


def test_reacher_preset_validates_for_five_tasks():
    matrix = check_mixture_matrix("reacher_domain", 5)
    np.testing.assert_allclose(matrix, np.array(REACHER_DOMAIN))
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    assert "reacher_domain" in MIXTURE_PRESETS


@pytest.mark.parametrize(
    "matrix, message",
    [
        (np.eye(3), "must be 4 x 4"),
        ("reacher_domain", "must be 4 x 4"),  # the 5-task preset on a 4-task env
        (np.array([[1.5, -0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "non-negative"),
        (np.full((4, 4), 0.3), "sum to 1"),
        (np.array([[np.nan, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "finite"),
        ("no_such_preset", "Unknown mixture preset"),
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
