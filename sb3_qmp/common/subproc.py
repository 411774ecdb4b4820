"""``SubprocVecEnv`` whose worker errors name the env and the exception instead of hanging or saying
``EOFError``.

SB3's ``SubprocVecEnv`` leaves a worker's exception to its stderr: with the ``fork`` start method the main
process then waits forever (other workers inherited the dead worker's pipe), with ``forkserver``/``spawn``
it gets a bare ``EOFError``. Here every sub-env writes its exception to a report file before it dies, and
the main process raises a ``RuntimeError`` with the reports, and ``forkserver`` (``spawn`` where that is
not available) is the default start method.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import SubprocVecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

WORKER_ERRORS = (EOFError, ConnectionError, BrokenPipeError)


def default_start_method() -> str:
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


class ReportErrors(gym.Wrapper):
    """Write an exception raised by the env (in ``reset`` / ``step``) to ``report_dir`` before re-raising it.

    :param env: the sub-env.
    :param report_dir: a folder the main process reads when a worker dies.
    :param label: how the report names the env (e.g. its id).
    """

    def __init__(self, env: gym.Env, report_dir: str, label: str) -> None:
        super().__init__(env)
        self.report_dir, self.label = report_dir, label

    def _report(self, where: str, error: BaseException) -> None:
        try:
            task = self.env.get_wrapper_attr("task_id")
        except AttributeError:
            task = None
        text = f"{self.label} (task {task}, process {os.getpid()}) raised in {where}: {type(error).__name__}: {error}\n"
        text += "".join(traceback.format_exception(error)[-4:])
        Path(self.report_dir, f"{os.getpid()}.txt").write_text(text)

    def _reported(self, where: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as error:
            self._report(where, error)
            raise

    def reset(self, **kwargs: Any) -> Any:
        return self._reported("reset", lambda: self.env.reset(**kwargs))

    def step(self, action: Any) -> Any:
        return self._reported("step", lambda: self.env.step(action))


class _ReportingFactory:
    """Picklable env factory: the sub-env inside :class:`ReportErrors`."""

    def __init__(self, factory: Callable[[], gym.Env], report_dir: str, label: str) -> None:
        self.factory, self.report_dir, self.label = factory, report_dir, label

    def __call__(self) -> gym.Env:
        return ReportErrors(self.factory(), self.report_dir, self.label)


class MultiTaskSubprocVecEnv(SubprocVecEnv):
    """:class:`~stable_baselines3.common.vec_env.SubprocVecEnv` that raises a worker's exception by name.

    :param env_fns: env factories (each is wrapped in :class:`ReportErrors`).
    :param start_method: ``forkserver`` by default (``fork`` works, but a raising env hangs it; warned).
    :param label: how errors name the env.
    """

    def __init__(self, env_fns: list[Callable[[], gym.Env]], start_method: str | None = None, label: str = "env") -> None:
        if start_method == "fork":
            warnings.warn(
                "SubprocVecEnv with start_method='fork': an env that raises makes the main process wait forever "
                "(SB3); the default 'forkserver' reports the error instead.",
                stacklevel=2,
            )
        self.start_method = start_method or default_start_method()
        self.report_dir = tempfile.mkdtemp(prefix="sb3_qmp_env_errors_")
        wrapped: list[Callable[[], gym.Env]] = [_ReportingFactory(fn, self.report_dir, label) for fn in env_fns]
        super().__init__(wrapped, start_method=self.start_method)

    def _raise_worker_error(self, error: BaseException) -> None:
        reports = sorted(Path(self.report_dir).glob("*.txt"))
        details = "\n".join(report.read_text() for report in reports) or "(no report: the worker died without an exception)"
        self.closed = True  # the pipes are broken: close() must not wait on them
        raise RuntimeError(f"A SubprocVecEnv worker died ({type(error).__name__}):\n{details}") from error

    def _guarded(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except WORKER_ERRORS as error:
            self._raise_worker_error(error)
            raise

    def step_wait(self) -> VecEnvStepReturn:
        return self._guarded(super().step_wait)

    def reset(self) -> VecEnvObs:
        return self._guarded(super().reset)

    def close(self) -> None:
        if not self.closed:
            super().close()
        else:
            for process in self.processes:
                process.kill()
        shutil.rmtree(self.report_dir, ignore_errors=True)


__all__ = ["MultiTaskSubprocVecEnv", "ReportErrors", "default_start_method"]
