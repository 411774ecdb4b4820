"""Named behaviour-mixture matrices for the ``fixed`` collector (QMP-Domain)."""

from __future__ import annotations

# Paper (QMP-Domain, 5-task Multistage Reacher): row = task, entry j = probability of acting with pi_j.
# T0/T1 share their first two subgoals (A, B); T2/T3 share their first subgoal (B); T4 shares nothing.
REACHER_DOMAIN = [
    [2 / 3, 1 / 3, 0.0, 0.0, 0.0],
    [1 / 3, 2 / 3, 0.0, 0.0, 0.0],
    [0.0, 0.0, 5 / 6, 1 / 6, 0.0],
    [0.0, 0.0, 1 / 6, 5 / 6, 0.0],
    [0.0, 0.0, 0.0, 0.0, 1.0],
]

MIXTURE_PRESETS: dict[str, list[list[float]]] = {
    "reacher_domain": REACHER_DOMAIN,
}
