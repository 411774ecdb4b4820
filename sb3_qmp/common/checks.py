"""Hyperparameters refused at construction, each with the argument, the value and the allowed range.

SB3 accepts several values that only fail (or silently do nothing useful) deep inside training, e.g.
``batch_size=0`` gives nan losses and ``tau=2`` a diverging target network.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any


def _bad(name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"{name}={value!r} is out of range: {name} must be {allowed}.")


def check_int(name: str, value: Any, low: int) -> None:
    """``value`` must be an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise _bad(name, value, f"an integer >= {low}")


def check_real(name: str, value: Any, low: float, high: float, low_open: bool = False) -> None:
    """``value`` must be a finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        raise _bad(name, value, f"a number in {'(' if low_open else '['}{low}, {high}]")


def check_net_arch(net_arch: Any) -> None:
    """Every hidden layer width must be a positive integer (list, or SB3's ``dict(pi=..., qf=...)``)."""
    if net_arch is None:
        return
    groups = net_arch.items() if isinstance(net_arch, dict) else [("net_arch", net_arch)]
    for key, widths in groups:
        name = "policy_kwargs['net_arch']" + (f"['{key}']" if isinstance(net_arch, dict) else "")
        if not isinstance(widths, (list, tuple)):
            raise ValueError(f"{name}={widths!r}: give a list of hidden layer widths, e.g. [256, 256].")
        for width in widths:
            if isinstance(width, bool) or not isinstance(width, Integral) or width < 1:
                raise _bad(name, list(widths), "a list of integers >= 1 (a zero-width layer cuts every gradient)")


def check_sac_hyperparameters(
    *,
    buffer_size: Any,
    learning_starts: Any,
    batch_size: Any,
    tau: Any,
    gamma: Any,
    gradient_steps: Any,
    target_update_interval: Any,
    ent_coef: Any,
    learning_rate: Any,
    policy_kwargs: dict[str, Any] | None,
) -> None:
    """Refuse SAC hyperparameters outside their meaningful range (see the module docstring)."""
    check_int("buffer_size", buffer_size, 1)
    check_int("learning_starts", learning_starts, 0)
    check_int("batch_size", batch_size, 1)
    check_real("tau", tau, 0.0, 1.0, low_open=True)
    check_real("gamma", gamma, 0.0, 1.0)
    check_int("gradient_steps", gradient_steps, -1)
    check_int("target_update_interval", target_update_interval, 1)
    if isinstance(ent_coef, str):
        if not ent_coef.startswith("auto"):
            raise ValueError(f"ent_coef={ent_coef!r}: use 'auto', 'auto_<initial value>' or a fixed number >= 0.")
    else:
        check_real("ent_coef", ent_coef, 0.0, math.inf)
    if not callable(learning_rate):
        check_real("learning_rate", learning_rate, 0.0, math.inf, low_open=True)
    kwargs = policy_kwargs or {}
    check_net_arch(kwargs.get("net_arch"))
    if "n_critics" in kwargs:
        check_int("policy_kwargs['n_critics']", kwargs["n_critics"], 1)


__all__ = ["check_int", "check_net_arch", "check_real", "check_sac_hyperparameters"]
