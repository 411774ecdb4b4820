"""Training and evaluation sets of object variations (the Meta-World task sets).

The authors' code builds two benchmarks per run: the training one from the run's seed and the
evaluation one from that seed + 100, so that a policy is evaluated on object positions it was not
trained on. The Meta-World envs of this package take the same two knobs as env kwargs:
``variation_seed`` / ``benchmark_seed`` (the run's seed) and ``variation_set`` (``"train"`` or
``"eval"``); :func:`variation_set_seed` turns them into the seed the variations are drawn from.
"""

from __future__ import annotations

#: Names accepted by the ``variation_set`` env kwarg.
VARIATION_SETS = ("train", "eval")
#: The evaluation set is drawn from ``seed + EVAL_SEED_OFFSET`` (the authors' offset).
EVAL_SEED_OFFSET = 100


def check_variation_set(variation_set: str) -> str:
    """Validate a ``variation_set`` name."""
    if variation_set not in VARIATION_SETS:
        raise ValueError(
            f"variation_set must be one of {list(VARIATION_SETS)}, got {variation_set!r}: 'train' for the "
            "training envs, 'eval' for the evaluation env (its variations come from seed + 100)."
        )
    return variation_set


def variation_set_seed(seed: int, variation_set: str) -> int:
    """The seed a variation set is drawn from: ``seed`` for ``"train"``, ``seed + 100`` for ``"eval"``.

    :param seed: the run's variation seed (an int).
    :param variation_set: ``"train"`` or ``"eval"``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"The variation seed must be an int (the run's seed), got {seed!r}.")
    return seed + (EVAL_SEED_OFFSET if check_variation_set(variation_set) == "eval" else 0)
