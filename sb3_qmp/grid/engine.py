"""Ray as the grid's engine: one Ray task per run, on this machine or on a cluster, with a live view.

``run_grid`` submits every unfinished run of a grid as a Ray task (``execute_run``: the zoo command with
``--resume``, niced, one torch thread) and watches them. Without an address a local Ray instance sized to
the machine (or ``num_cpus``) is started and stopped again; ``address="auto"`` or ``"ray://host:10001"``
sends the same tasks to a running cluster, whose nodes must all see the log folder at the same path
(docs/grid.md). Ray retries a task whose worker died (``max_retries``); the task resumes the run from its
newest checkpoint, as does re-running the grid after any interruption.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sb3_qmp.grid.runs import RunOptions, RunSpec, archive_run, check_settings, execute_run, run_state


def _ray() -> Any:
    try:
        import ray
    except ImportError as error:  # pragma: no cover - the grid extra installs it
        raise ImportError(
            f"The grid runner needs Ray ({error}): pip install 'sb3-qmp[grid]' (or pip install 'ray[default]')."
        ) from error
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect to Ray for the block: a running cluster at ``address`` (``"auto"``, ``"ray://host:port"``), or a
    local instance of ``num_cpus`` CPUs (default: all) started here and stopped afterwards. If this process is
    already connected, that connection is used and left open."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    if address is not None and num_cpus is not None:
        raise ValueError("num_cpus sizes a local Ray instance: leave it out with an address (the cluster has its own).")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is None:
        kwargs.update(num_cpus=num_cpus or os.cpu_count() or 1)  # GPUs: Ray detects them
    # The training processes find this package on their own (it must be installed on every node).
    ray.init(address=address, **kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


def submit(
    fn: Callable[..., Any],
    args: Sequence[tuple[Any, ...]],
    num_cpus: float = 1,
    num_gpus: float = 0,
    max_retries: int = 3,
) -> list[Any]:
    """Submit ``fn(*a)`` for every ``a`` in ``args`` as Ray tasks (in that order); return their references."""
    ray = _ray()
    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries)(fn)
    return [remote.remote(*a) for a in args]


def as_completed(
    refs: Sequence[Any], poll: float = 5.0, on_poll: Callable[[], None] | None = None
) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, result)`` for each reference as it completes (``result`` is the exception a failed task
    raised); ``on_poll`` is called at least every ``poll`` seconds while waiting."""
    ray = _ray()
    pending = {ref: i for i, ref in enumerate(refs)}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=poll)
            for ref in done:
                index = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as error:  # a failed task is reported, the others go on
                    result = error
                yield index, result
            if on_poll is not None:
                on_poll()
    finally:
        for ref in pending:  # interrupted: stop the remaining tasks (their runs resume next time)
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)


def call_script_function(script: str, function: str, args: tuple[Any, ...], nice: int = 0, threads: int = 1) -> Any:
    """Import the Python file ``script`` and return ``function(*args)``, niced and with ``threads`` torch threads.

    The Ray task of grids whose runs are Python functions of a script (e.g. the sharing study's cells)
    rather than zoo commands: the worker loads the script by path (on a cluster, every node must see it
    at that path, like the log folder).

    :param nice: niceness the worker runs at (at least; workers are reused, so it is set, not added).
    """
    import importlib.util

    import torch as th

    if nice > 0:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, max(current, min(19, nice)))
    th.set_num_threads(threads)
    name = f"_grid_script_{Path(script).stem}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, script)
        if spec is None or spec.loader is None:
            raise ImportError(f"Cannot import {script} in the Ray worker: is it at the same path on every node?")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return getattr(module, function)(*args)


def map_script(
    script: str,
    function: str,
    calls: Sequence[tuple[Any, ...]],
    num_cpus: int | None = None,
    address: str | None = None,
    nice: int = 0,
    threads: int = 1,
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``[script.function(*args) for args in calls]``, each call a Ray task of one CPU (a local instance of
    ``num_cpus`` CPUs, or the cluster at ``address``); results in the order of ``calls``.

    :param on_result: called with ``(index, result)`` as each call finishes (e.g. to report progress).
    :raises RuntimeError: after every call has finished, if some failed (naming them).
    """
    script = os.path.abspath(script)
    results: list[Any] = [None] * len(calls)
    failures = []
    with ray_session(address, None if address else num_cpus):
        refs = submit(call_script_function, [(script, function, tuple(args), nice, threads) for args in calls])
        for index, result in as_completed(refs):
            if isinstance(result, BaseException):
                failures.append(f"{function}{tuple(calls[index])!r}: {type(result).__name__}: {result}")
                continue
            results[index] = result
            if on_result is not None:
                on_result(index, result)
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(calls)} tasks failed:\n" + "\n".join(failures))
    return results


# ----------------------------------------------------------------------------------------------
# Progress view
# ----------------------------------------------------------------------------------------------
def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "-"
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}s"


def progress_rows(
    specs: Sequence[RunSpec],
    logs: str | Path,
    failed: dict[RunSpec, str] | None = None,
    archive: str | Path | None = None,
) -> list[list[str]]:
    """One row per run: name, state, env steps done / total, %, rate, ETA, last evaluation's success."""
    rows = []
    for spec in specs:
        state = run_state(spec, logs, archive=archive)
        progress = state.progress or {}
        done = int(
            progress.get("num_timesteps", 0) if state.state != "finished" else (state.record or {}).get("num_timesteps", 0)
        )
        total = spec.n_timesteps
        rate = progress.get("steps_per_second")
        live = state.state == "started" and progress.get("state") == "running"
        stale = live and time.time() - float(progress.get("updated_at", 0)) > 120
        label = "done" if state.state == "finished" else "failed" if failed and spec in failed else "waiting"
        if state.state == "started":
            label = "stalled?" if stale else "running" if live else "starting" if not progress else "stopped"
        eta = (total - done) / rate if live and rate else None
        evaluation = progress.get("last_eval") or {}
        own = evaluation.get("successes_any_step")
        mixture = evaluation.get("mixture_successes_any_step")
        success = "-" if own is None else f"{own:.2f}" + ("" if mixture is None else f" / {mixture:.2f}")
        rows.append(
            [
                spec.name,
                label,
                f"{done:,} / {total:,}",
                f"{100 * min(done / total, 1):.0f}%",
                "-" if not rate or not live else f"{rate:.0f}/s",
                _duration(eta),
                success,
            ]
        )
    return rows


HEADER = ["run", "state", "env steps", "done", "rate", "ETA", "last eval (own / mixture)"]


def progress_text(rows: list[list[str]]) -> str:
    """The progress rows as an aligned plain-text table with the state counts underneath."""
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in [HEADER, *rows]]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[1]] = counts.get(row[1], 0) + 1
    lines.append(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return "\n".join(lines)


class ProgressView:
    """Live table of a grid's runs: redrawn in place on a terminal (rich), printed every ``every`` seconds
    to a log otherwise."""

    def __init__(
        self,
        specs: Sequence[RunSpec],
        logs: str | Path,
        every: float = 300.0,
        live: bool | None = None,
        archive: str | Path | None = None,
    ) -> None:
        self.specs, self.logs, self.every, self.archive = list(specs), logs, every, archive
        self.failed: dict[RunSpec, str] = {}
        self.live = sys.stdout.isatty() if live is None else live
        self._last_print = 0.0
        self._live: Any = None
        if self.live:
            from rich.live import Live

            self._live = Live(self._table(), refresh_per_second=1, transient=False)
            self._live.start()

    def _table(self) -> Any:
        from rich.table import Table

        rows = progress_rows(self.specs, self.logs, self.failed, self.archive)
        table = Table(*HEADER, title=f"grid: {len(rows)} runs under {self.logs}")
        for row in rows:
            table.add_row(*row)
        counts: dict[str, int] = {}
        for row in rows:
            counts[row[1]] = counts.get(row[1], 0) + 1
        table.caption = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        return table

    def update(self, force: bool = False) -> None:
        if self._live is not None:
            self._live.update(self._table())
        elif force or time.monotonic() - self._last_print >= self.every:
            self._last_print = time.monotonic()
            rows = progress_rows(self.specs, self.logs, self.failed, self.archive)
            print(time.strftime("%H:%M:%S") + "\n" + progress_text(rows), flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()


# ----------------------------------------------------------------------------------------------
# The grid
# ----------------------------------------------------------------------------------------------
def run_grid(
    specs: Sequence[RunSpec],
    logs: str | Path,
    options: RunOptions | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_run: float = 1,
    gpus_per_run: float = 0,
    max_retries: int = 3,
    poll: float = 5.0,
    status_every: float = 300.0,
    live: bool | None = None,
    on_finished: Callable[[dict[str, Any]], Any] | None = None,
    archive: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Run every unfinished run of ``specs`` as a Ray task; return one result per run.

    Finished runs (``run_finished.json`` with the same budget and params) are skipped; started ones
    continue from their newest checkpoint. Tasks are submitted in the order of ``specs`` (list seed 0 of
    every method first for an early look that compares methods).

    :param specs: the runs.
    :param logs: the grid's log folder (shared by all nodes of a cluster).
    :param options: how each run is executed (checkpoint period, nice, threads, device, attempts).
    :param address: a running Ray cluster (``"auto"``, ``"ray://host:port"``); ``None``: a local instance.
    :param num_cpus: CPUs of the local instance (default: all of this machine's).
    :param cpus_per_run: Ray CPUs each run reserves.
    :param gpus_per_run: Ray GPUs each run reserves; > 0 trains with ``--device cuda``.
    :param max_retries: Ray's retries of a task whose worker process died.
    :param poll: seconds between looks at the runs.
    :param status_every: seconds between printed progress tables when not on a terminal.
    :param live: redraw the progress table in place (default: when stdout is a terminal).
    :param on_finished: called with each finished run's result (e.g. to rewrite a summary).
    :param archive: folder that keeps every finished run's small files (:func:`~sb3_qmp.grid.runs.archive_run`;
        e.g. under version control): runs archived there count as finished even without their logs.
    """
    logs = Path(logs).resolve()
    options = options or RunOptions()
    if gpus_per_run > 0 and options.device is None:
        options = RunOptions(**{**options.__dict__, "device": "cuda"})
    if len(set(specs)) != len(specs):
        raise ValueError("The grid lists a run twice.")
    todo = []
    results: list[dict[str, Any]] = []
    for spec in specs:
        state = run_state(spec, logs, archive=archive)
        if state.state == "finished":
            check_settings(spec, state)
            if archive is not None:
                archive_run(spec, logs, archive)
            results.append({"name": spec.name, "finished": True, "path": str(state.path), "skipped": True})
        else:
            todo.append(spec)
    print(f"grid: {len(specs)} runs, {len(specs) - len(todo)} already finished, {len(todo)} to run under {logs}", flush=True)
    if not todo:
        return results
    view: ProgressView | None = None
    with ray_session(address, num_cpus):
        refs = submit(execute_run, [(spec, str(logs), options) for spec in todo], cpus_per_run, gpus_per_run, max_retries)
        view = ProgressView(specs, logs, status_every, live, archive)
        try:
            for index, result in as_completed(refs, poll, view.update):
                spec = todo[index]
                if isinstance(result, BaseException):
                    result = {"name": spec.name, "finished": False, "reason": f"{type(result).__name__}: {result}"}
                if not result.get("finished"):
                    view.failed[spec] = result.get("reason", "")
                    print(f"{spec.name}: NOT finished ({result.get('reason')}); see {spec.output_file(logs)}", flush=True)
                else:
                    print(f"{spec.name}: finished ({result.get('wall_time_s')} s)", flush=True)
                    if archive is not None:
                        archive_run(spec, logs, archive)
                    if on_finished is not None:
                        on_finished(result)
                results.append(result)
        finally:
            view.close()
    print(progress_text(progress_rows(specs, logs, view.failed if view else None, archive)), flush=True)
    return results


__all__ = [
    "ProgressView",
    "as_completed",
    "call_script_function",
    "map_script",
    "progress_rows",
    "progress_text",
    "ray_session",
    "run_grid",
    "submit",
]
