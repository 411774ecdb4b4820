"""Flushing denormal floats to zero during gradient updates.

Adam's second-moment estimate of a weight whose gradient is exactly zero (a unit that no longer fires)
decays by ``beta2`` every step until it is *denormal* (below ~1.2e-38 in float32) and, because
``beta2 * x`` rounds back to ``x`` at the smallest denormal, it stays there for good. x86 CPUs do
arithmetic on denormals up to ~100x slower than on normal floats. In a finished 600k-step
Multistage Reacher run, 64% of the critics' and 29% of the actors' Adam moments were denormal.

Flushing them to zero changes nothing that training can see: a denormal moment moves a weight by
less than ``lr * 1e-30``, far below half an ulp of any weight of a trained network, so the weights
stay bit for bit the same (``benchmarks/denormals.py`` checks this on a trained model and measures the
speed-up). It is a setting of the calling thread, so it is switched on only around the update and
switched back afterwards. torch's intra-op worker threads keep their own setting: with
``torch.set_num_threads(n > 1)`` the share of an operation that runs on the workers is not flushed (and
not sped up). The package's CPU runs use one torch thread, for which the whole update is covered.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch as th

F = TypeVar("F", bound=Callable[..., Any])

# The smallest normal float32 is ~1.18e-38: 1e-39 is denormal.
_DENORMAL = 1e-39


def denormals_flushed() -> bool:
    """Whether the current thread flushes denormal floats to zero (torch has no getter for it)."""
    return float(th.tensor([_DENORMAL], dtype=th.float32).mul(1.0).item()) == 0.0


@contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[None]:
    """Flush denormal floats to zero inside the block (if ``enabled`` and the CPU supports it).

    The thread's previous setting is restored on exit, also when the block raises.

    :param enabled: ``False`` leaves the setting as it is (a no-op block).
    """
    if not enabled:
        yield
        return
    before = denormals_flushed()
    th.set_flush_denormal(True)  # returns False (and does nothing) on CPUs without the instruction
    try:
        yield
    finally:
        th.set_flush_denormal(before)


def flushing_denormals(train: F) -> F:
    """Decorate an algorithm's ``train`` to run under :func:`flush_denormals` when ``self.flush_denormal``."""

    @functools.wraps(train)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with flush_denormals(getattr(self, "flush_denormal", True)):
            return train(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
