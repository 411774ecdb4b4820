"""One run of a grid: its zoo command, its folder, where it stands, and how it is executed.

A run is the package's literal zoo command (``python -m sb3_qmp.train``) with the packaged YAML entry of
its env, a budget (``-n``), a seed and optional ``-params``; it always carries ``--resume`` and a checkpoint
period, so the same command starts it, continues it from its newest checkpoint after any interruption,
and does nothing once it has finished (see :mod:`sb3_qmp.zoo.resume`).

Layout under the grid's log folder ``LOGS``: run (algo, env, seed) trains with ``-f LOGS/seed_<seed>``
(``LOGS/<variant>/seed_<seed>`` for a named variant), i.e. in ``.../<algo>/<env>_<k>/``; its console
output goes to ``.../<algo>_<env>.out``. Every attempt (one execution of the command) is recorded in the run
folder's ``run_attempts.json`` while it runs, so that an attempt cut off with its runner (the machine stopped)
still counts. When its command exits 0 with a final model of at least ``-n`` env steps, ``run_finished.json``
is written into the run folder (command line, settings, wall and CPU time of every attempt).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sb3_qmp.common.checkpoints import latest_checkpoint, read_progress
from sb3_qmp.common.files import atomic_write_json
from sb3_qmp.zoo.resume import DEFAULT_CHECKPOINT_MINUTES, run_folders, saved_num_timesteps

MARKER = "run_finished.json"
ATTEMPTS = "run_attempts.json"
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# How often a running attempt's times are written to run_attempts.json: what a runner killed with its
# machine leaves unrecorded.
ATTEMPT_UPDATE_S = 60.0
# Env kwargs that take the run's seed: the authors drew each Meta-World run's object variations from its seed
# (and evaluated on the set of seed + 100, which the YAML's PerTaskEvalCallback asks for with variation_set: eval).
RUN_SEED_ENV_KWARG = {
    "MetaWorldDoorDrawer": "variation_seed",
    "MetaWorldMT10": "benchmark_seed",
    "MetaWorldMT50": "benchmark_seed",
}


def seed_env_kwargs(env_id: str, seed: int) -> list[str]:
    """``--env-kwargs`` arguments that pass the run's seed to envs whose task variations depend on it."""
    name = env_id.split("-v")[0]
    return ["--env-kwargs", f"{RUN_SEED_ENV_KWARG[name]}:{seed}"] if name in RUN_SEED_ENV_KWARG else []


@dataclass(frozen=True)
class RunOptions:
    """How every run of a grid is executed.

    :param checkpoint_minutes: wall-clock checkpoint period (at most this much work is lost).
    :param checkpoint_steps: env-step checkpoint period (``None``: by time only).
    :param nice: niceness of the training process (0: not niced).
    :param threads: torch threads per run (``--num-threads``; also OMP/MKL threads).
    :param device: ``--device`` of the runs (``"cuda"`` for GPU runs; ``None``: rl-zoo3's default).
    :param attempts: how many times a run that exits with an error (e.g. killed) is resumed from its
        checkpoint within one execution before it counts as failed.
    :param extra: further zoo arguments for every run (e.g. ``["--eval-freq", "-1"]`` is always added).
    """

    checkpoint_minutes: float = DEFAULT_CHECKPOINT_MINUTES
    checkpoint_steps: int | None = None
    nice: int = 10
    threads: int = 1
    device: str | None = None
    attempts: int = 3
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSpec:
    """One (algorithm, env, seed, budget, params) run of a grid.

    :param algo: registry name (``qmp``, ``separated``, ...).
    :param env: env id with a packaged YAML entry.
    :param seed: the run's seed.
    :param n_timesteps: total env steps (all tasks).
    :param params: extra zoo ``-params`` (``key:value`` strings).
    :param variant: name of a settings variant (its runs get their own folder); ``None`` for the YAML's.
    """

    algo: str
    env: str
    seed: int
    n_timesteps: int
    params: tuple[str, ...] = ()
    variant: str | None = None

    @property
    def name(self) -> str:
        return f"{self.variant or self.algo} {self.env} seed {self.seed}"

    def log_folder(self, logs: str | Path) -> Path:
        """The rl-zoo3 log folder (``-f``) of this run."""
        base = Path(logs) / self.variant if self.variant else Path(logs)
        return base / f"seed_{self.seed}"

    def output_file(self, logs: str | Path) -> Path:
        return self.log_folder(logs) / f"{self.algo}_{self.env}.out"

    def command(self, logs: str | Path, options: RunOptions) -> list[str]:
        """The zoo training command (``python -m sb3_qmp.train ... --resume``), without ``nice``."""
        return [
            sys.executable,
            "-m",
            "sb3_qmp.train",
            "--algo",
            self.algo,
            "--env",
            self.env,
            "-n",
            str(self.n_timesteps),
            "--seed",
            str(self.seed),
            "-f",
            str(self.log_folder(logs)),
            "--num-threads",
            str(options.threads),
            "--eval-freq",
            "-1",  # the zoo's single-env EvalCallback; the YAML's per-task evaluation stays on
            "--resume",
            "--checkpoint-minutes",
            str(options.checkpoint_minutes),
            *(["--checkpoint-steps", str(options.checkpoint_steps)] if options.checkpoint_steps else []),
            *(["--device", options.device] if options.device else []),
            *seed_env_kwargs(self.env, self.seed),
            *options.extra,
            *(["-params", *self.params] if self.params else []),
        ]

    def launch_command(self, logs: str | Path, options: RunOptions) -> list[str]:
        """:meth:`command` under ``nice`` (when ``options.nice`` > 0)."""
        return [*(["nice", "-n", str(options.nice)] if options.nice > 0 else []), *self.command(logs, options)]


def command_line(command: list[str]) -> str:
    """The exact shell command line of a run, with its thread environment variables."""
    return " ".join(f"{key}={value}" for key, value in THREAD_ENV.items()) + " " + shlex.join(command)


@dataclass
class RunState:
    """Where a run stands: ``finished``, ``started`` (a run folder, not finished) or ``waiting`` (none yet).

    :param spec: the run.
    :param state: see above.
    :param path: its newest run folder.
    :param record: its ``run_finished.json`` (finished runs).
    :param progress: its ``progress.json`` (runs that checkpoint).
    :param checkpoint_steps: env steps of its newest checkpoint, if any.
    """

    spec: RunSpec
    state: str
    path: Path | None = None
    record: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    checkpoint_steps: int | None = None


def archive_folder(spec: RunSpec, archive: str | Path) -> Path:
    """Where a finished run's small files are kept (``ARCHIVE/<variant or algo>/<env>/seed_<seed>``)."""
    return Path(archive) / (spec.variant or spec.algo) / spec.env / f"seed_{spec.seed}"


ARCHIVED_FILES = (MARKER, ATTEMPTS, "evaluations_per_task.npz", "evaluations_per_task.csv")


def archive_run(spec: RunSpec, logs: str | Path, archive: str | Path) -> Path:
    """Copy a finished run's record, attempts and evaluation history (kilobytes, fit for git) to the archive,
    where :func:`run_state` finds it even without the log folder (a fresh machine, a cleaned disk)."""
    from sb3_qmp.common.files import atomic_copy

    state = run_state(spec, logs, archive=archive)
    if state.state != "finished" or state.path is None:
        raise ValueError(f"{spec.name} is not finished under {logs}: nothing to archive.")
    target = archive_folder(spec, archive)
    if state.path.resolve() == target.resolve():
        return target
    for name in ARCHIVED_FILES:
        if (state.path / name).is_file():
            atomic_copy(state.path / name, target / name)
    return target


def run_state(spec: RunSpec, logs: str | Path, verify: bool = False, archive: str | Path | None = None) -> RunState:
    """Where ``spec`` stands under ``logs`` (``verify``: also find its newest usable checkpoint, which reads
    the checkpoint's files); with ``archive``, a run archived there (:func:`archive_run`) counts as
    finished, its archive folder as its path."""
    folders = run_folders(spec.log_folder(logs), spec.algo, spec.env)
    if archive is not None and (archive_folder(spec, archive) / MARKER).is_file():
        kept = archive_folder(spec, archive)
        if not any((folder / MARKER).is_file() for folder in folders):
            return RunState(spec, "finished", kept, json.loads((kept / MARKER).read_text()))
    if not folders:
        return RunState(spec, "waiting")
    newest = folders[0]
    for folder in folders:
        if (folder / MARKER).is_file():
            record = json.loads((folder / MARKER).read_text())
            return RunState(spec, "finished", folder, record, read_progress(folder))
    checkpoint = latest_checkpoint(newest, verify_hashes=False) if verify else None
    return RunState(spec, "started", newest, None, read_progress(newest), checkpoint.num_timesteps if checkpoint else None)


def check_settings(spec: RunSpec, state: RunState) -> None:
    """Refuse to count a finished run of other settings as this grid's."""
    assert state.record is not None
    theirs = (state.record.get("n_timesteps"), tuple(state.record.get("params") or ()))
    if theirs != (spec.n_timesteps, spec.params):
        raise ValueError(
            f"{spec.name} in {state.path} finished with -n {theirs[0]} and -params {list(theirs[1])}, not -n "
            f"{spec.n_timesteps} and -params {list(spec.params)}: use another log folder (or variant name) for "
            "other settings, or the same settings to resume."
        )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to kill the training process if the process that started it dies (a Ray worker killed
    by Ray or by its node must not leave its training behind)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def execute_run(spec: RunSpec, logs: str, options: RunOptions) -> dict[str, Any]:
    """Run ``spec`` to completion (the body of a grid's Ray task; also callable without Ray).

    Starts or resumes the run (its command carries ``--resume``); if the process exits with an error (e.g.
    it was killed), resumes it from its newest checkpoint, up to ``options.attempts`` times. Writes
    ``run_finished.json`` when the run's final model holds ``n_timesteps`` env steps.

    :return: ``{"name", "finished", "path", "returncode", "wall_time_s", "attempts"}``.
    """
    state = run_state(spec, logs)
    if state.state == "finished":
        check_settings(spec, state)
        return {"name": spec.name, "finished": True, "path": str(state.path), "returncode": 0, "skipped": True}
    command = spec.launch_command(logs, options)
    out = spec.output_file(logs)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **THREAD_ENV, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    attempts: list[dict[str, Any]] = []
    returncode = -1
    for _ in range(options.attempts):
        before = run_state(spec, logs, verify=True)
        start = time.time()
        # returncode None: still running, or cut off with its runner (then its times are those last written).
        attempt: dict[str, Any] = {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(start)),
            "wall_time_s": 0.0,
            "cpu_time_s": None,
            "returncode": None,
            "resumed_from": before.checkpoint_steps,
        }
        attempts.append(attempt)
        with open(out, "a") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {command_line(command)}\n")
            log.flush()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
            try:
                returncode = _wait_recording(process, start, attempt, lambda: _record_attempts(spec, logs, attempts))
            except BaseException:  # cancelled (Ray raises in the worker): leave no training behind
                process.kill()
                process.wait()
                raise
        _record_attempts(spec, logs, attempts)
        if returncode == 0:
            break
    result = finish(spec, logs, options, command, attempts, returncode)
    return {"name": spec.name, **result, "attempts": len(attempts)}


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process so far (Linux's ``/proc``; ``None`` elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # utime, stime, cutime, cstime: fields 14-17 of proc(5), counted after the ")" that ends field 2.
        return round(sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK"), 1)
    except (OSError, ValueError, IndexError):
        return None


def _wait_recording(
    process: subprocess.Popen[bytes], start: float, attempt: dict[str, Any], record: Callable[[], None]
) -> int:
    """Wait for ``process`` (started at ``start``, a ``time.time()``), updating ``attempt``'s times and calling
    ``record()`` every ``ATTEMPT_UPDATE_S``; at the end, set its final times and exit code, and return the code.

    The final CPU time (user + system, the process's children included) is the kernel's accounting when the
    process is reaped: exact, unlike an elapsed-time estimate on a shared machine, and without the time the
    process was stopped.
    """
    last_update = time.time()
    while True:
        try:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by the system (SIGCHLD ignored): Popen's answer, the last CPU reading
            pid, status, usage = process.pid, None, None
        now = time.time()
        if pid == process.pid:
            returncode = process.wait() if status is None else os.waitstatus_to_exitcode(status)
            process.returncode = returncode  # reaped here: Popen must not wait again
            cpu = attempt["cpu_time_s"] if usage is None else round(usage.ru_utime + usage.ru_stime, 1)
            attempt.update(wall_time_s=round(now - start, 1), cpu_time_s=cpu, returncode=returncode)
            return returncode
        if now - last_update >= ATTEMPT_UPDATE_S:
            cpu = _cpu_seconds(process.pid)
            attempt.update(wall_time_s=round(now - start, 1), cpu_time_s=attempt["cpu_time_s"] if cpu is None else cpu)
            record()
            last_update = now
        time.sleep(min(0.5, ATTEMPT_UPDATE_S))


def _record_attempts(spec: RunSpec, logs: str, attempts: list[dict[str, Any]]) -> None:
    """Append this execution's attempts to the run folder's ``run_attempts.json`` (wall time across resumes)."""
    state = run_state(spec, logs)
    if state.path is None:
        return
    file = state.path / ATTEMPTS
    try:
        earlier = json.loads(file.read_text()).get("attempts", []) if file.is_file() else []
    except ValueError:
        earlier = []
    mine = {a["started_at"] for a in attempts}
    atomic_write_json(file, {"attempts": [a for a in earlier if a["started_at"] not in mine] + attempts})


def code_commit() -> str | None:
    """The git commit of the code that trains (this package's checkout; ``None`` outside git), with ``+dirty``
    when its files differ from that commit."""
    package = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(package), "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def finish(
    spec: RunSpec, logs: str, options: RunOptions, command: list[str], attempts: list[dict[str, Any]], returncode: int
) -> dict[str, Any]:
    """Write ``run_finished.json`` if the run is finished; return ``{"finished", "path", "returncode", ...}``."""
    state = run_state(spec, logs)
    steps = saved_num_timesteps(state.path / f"{spec.env}.zip") if state.path is not None else None
    if returncode != 0 or state.path is None or steps is None or steps < spec.n_timesteps:
        reason = f"exit code {returncode}" if returncode != 0 else f"final model holds {steps} of {spec.n_timesteps} env steps"
        return {"finished": False, "path": str(state.path), "returncode": returncode, "reason": reason}
    file = state.path / ATTEMPTS
    all_attempts = json.loads(file.read_text())["attempts"] if file.is_file() else attempts
    record = {
        "algo": spec.algo,
        "env": spec.env,
        "seed": spec.seed,
        "variant": spec.variant,
        "n_timesteps": spec.n_timesteps,
        "params": list(spec.params),
        "num_timesteps": steps,
        "command": command_line(command),
        "options": {k: v for k, v in asdict(options).items() if k != "extra"},
        "code_commit": code_commit(),
        "wall_time_s": round(sum(a["wall_time_s"] for a in all_attempts), 1),
        # None when an attempt has no CPU time (recorded by a version that did not measure it).
        "cpu_time_s": (
            round(sum(a["cpu_time_s"] for a in all_attempts), 1)
            if all(a.get("cpu_time_s") is not None for a in all_attempts)
            else None
        ),
        "attempts": len(all_attempts),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_json(state.path / MARKER, record, indent=2)
    return {"finished": True, "path": str(state.path), "returncode": 0, "wall_time_s": record["wall_time_s"]}


__all__ = [
    "MARKER",
    "RunOptions",
    "RunSpec",
    "RunState",
    "archive_folder",
    "archive_run",
    "check_settings",
    "code_commit",
    "command_line",
    "execute_run",
    "run_state",
    "seed_env_kwargs",
]
