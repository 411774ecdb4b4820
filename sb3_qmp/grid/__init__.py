"""Experiment grids on Ray: ``python -m sb3_qmp.grid`` and its Python API.

A grid is a list of :class:`RunSpec` (algorithm, env, seed, budget, params); :func:`run_grid` runs every
unfinished one as a Ray task (the package's zoo command, niced, one torch thread, checkpointed and
resumable), locally or on a cluster, with a live progress view; :func:`summarize_grid` aggregates the
finished runs with rliable's estimators (:mod:`sb3_qmp.grid.statistics`). See docs/grid.md.
"""

from sb3_qmp.grid.engine import ProgressView, as_completed, progress_rows, progress_text, ray_session, run_grid, submit
from sb3_qmp.grid.runs import RunOptions, RunSpec, RunState, command_line, execute_run, run_state
from sb3_qmp.grid.summary import summarize_grid, summary_markdown

__all__ = [
    "ProgressView",
    "RunOptions",
    "RunSpec",
    "RunState",
    "as_completed",
    "command_line",
    "execute_run",
    "progress_rows",
    "progress_text",
    "ray_session",
    "run_grid",
    "run_state",
    "submit",
    "summarize_grid",
    "summary_markdown",
]
