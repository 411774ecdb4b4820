"""Checkpointed zoo runs that continue where they stopped: ``python -m sb3_qmp.train ... --resume``.

Options of ``python -m sb3_qmp.train`` on top of rl-zoo3's (removed from the command line before rl-zoo3
parses it):

* ``--checkpoint-minutes M``: checkpoint the run every ``M`` minutes of wall time into
  ``<run folder>/checkpoints/`` (model with optimizers and statistics, replay buffer, normalisation,
  evaluation history; see :mod:`sb3_qmp.common.checkpoints`) and keep ``<run folder>/progress.json``
  current;
* ``--checkpoint-steps N``: (also) checkpoint every ``N`` env steps;
* ``--resume``: if the newest run of ``--algo``/``--env`` under ``-f`` has a usable checkpoint, continue
  that run in its own folder from the newest one (rl-zoo3's ``-i`` with the checkpoint's model, replay
  buffer and normalisation, ``-n`` reduced to the env steps still to go, the evaluation history
  continued); if that run already finished ``-n`` env steps, do nothing; otherwise start a new run.
  ``-n`` is always the run's total budget, so the same command starts, resumes and completes a run.
  Implies checkpoints every 10 minutes unless ``--checkpoint-minutes``/``--checkpoint-steps`` say otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sb3_qmp.common.checkpoints import EVAL_FILES, Checkpoint, latest_checkpoint
from sb3_qmp.common.files import atomic_copy

DEFAULT_CHECKPOINT_MINUTES = 10.0


@dataclass
class RunOptions:
    """What ``python -m sb3_qmp.train`` asks of the zoo run beyond rl-zoo3's own options.

    :param checkpoint_minutes: wall-clock checkpoint period (``None``: none by time).
    :param checkpoint_steps: env-step checkpoint period (``None``: none by steps).
    :param resume_dir: the run folder being continued (rl-zoo3 otherwise makes a new one).
    :param checkpoint: the checkpoint it continues from.
    """

    checkpoint_minutes: float | None = None
    checkpoint_steps: int | None = None
    resume_dir: Path | None = None
    checkpoint: Checkpoint | None = None

    @property
    def checkpointing(self) -> bool:
        return self.checkpoint_minutes is not None or self.checkpoint_steps is not None


# Read by the patched ExperimentManager (sb3_qmp.zoo); set by python -m sb3_qmp.train.
RUN_OPTIONS = RunOptions()


def _own_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--checkpoint-minutes", type=float, default=None)
    parser.add_argument("--checkpoint-steps", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    return parser


def _zoo_parser() -> argparse.ArgumentParser:
    """The rl-zoo3 options a resume needs (same names and defaults as ``rl_zoo3.train``)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("-f", "--log-folder", default="logs")
    parser.add_argument("-n", "--n-timesteps", type=int, default=-1)
    parser.add_argument("-i", "--trained-agent", default="")
    parser.add_argument("--uuid", action="store_true")
    parser.add_argument("-optimize", "--optimize-hyperparameters", action="store_true")
    return parser


def saved_num_timesteps(model_zip: str | Path) -> int | None:
    """``num_timesteps`` stored in an SB3 model zip (``None``: no readable zip)."""
    try:
        with zipfile.ZipFile(model_zip) as archive:
            return int(json.loads(archive.read("data"))["num_timesteps"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def run_folders(log_folder: str | Path, algo: str, env_id: str) -> list[Path]:
    """rl-zoo3's run folders ``<log_folder>/<algo>/<env_id>_<k>``, newest (largest ``k``) first."""
    pattern = re.compile(rf"{re.escape(env_id)}_(\d+)")
    folder = Path(log_folder) / algo
    runs = [p for p in folder.glob(f"{env_id}_*") if p.is_dir() and pattern.fullmatch(p.name)] if folder.is_dir() else []
    return sorted(runs, key=lambda p: int(p.name.rsplit("_", 1)[1]), reverse=True)


def split_run_options(argv: list[str]) -> tuple[list[str], argparse.Namespace]:
    """Separate this package's options from rl-zoo3's."""
    own, rest = _own_parser().parse_known_args(argv)
    if own.checkpoint_minutes is not None and not own.checkpoint_minutes > 0:
        raise SystemExit(f"--checkpoint-minutes must be > 0, got {own.checkpoint_minutes}.")
    if own.checkpoint_steps is not None and own.checkpoint_steps < 1:
        raise SystemExit(f"--checkpoint-steps must be >= 1, got {own.checkpoint_steps}.")
    if own.resume and own.checkpoint_minutes is None and own.checkpoint_steps is None:
        own.checkpoint_minutes = DEFAULT_CHECKPOINT_MINUTES
    return rest, own


def prepare_run(argv: list[str]) -> list[str] | None:
    """Set :data:`RUN_OPTIONS` from ``argv`` and return rl-zoo3's arguments (``None``: nothing to do,
    the run already finished).

    :param argv: the command line of ``python -m sb3_qmp.train`` without the program name.
    """
    rest, own = split_run_options(argv)
    RUN_OPTIONS.checkpoint_minutes, RUN_OPTIONS.checkpoint_steps = own.checkpoint_minutes, own.checkpoint_steps
    RUN_OPTIONS.resume_dir = RUN_OPTIONS.checkpoint = None
    if not own.resume:
        return rest
    zoo, _ = _zoo_parser().parse_known_args(rest)
    if zoo.trained_agent or zoo.uuid or zoo.optimize_hyperparameters:
        raise SystemExit("--resume picks the run folder and checkpoint itself: leave out -i, --uuid and -optimize.")
    if zoo.n_timesteps <= 0:
        raise SystemExit("--resume needs -n <total env steps of the run> (the same -n on every resume).")
    runs = run_folders(zoo.log_folder, zoo.algo, zoo.env)
    if runs:
        steps = saved_num_timesteps(runs[0] / f"{zoo.env}.zip")
        if steps is not None and steps >= zoo.n_timesteps:
            print(f"{runs[0]} already finished {steps} env steps (>= -n {zoo.n_timesteps}): nothing to resume.")
            return None
    for run in runs:
        checkpoint = latest_checkpoint(run)
        if checkpoint is None:
            continue
        remaining = zoo.n_timesteps - checkpoint.num_timesteps
        if remaining <= 0:
            raise SystemExit(
                f"The checkpoint {checkpoint.path} already holds {checkpoint.num_timesteps} env steps (>= -n "
                f"{zoo.n_timesteps}): raise -n to extend the run, or use its checkpoint's model.zip as the result."
            )
        RUN_OPTIONS.resume_dir, RUN_OPTIONS.checkpoint = run, checkpoint
        print(f"Resuming {run} from {checkpoint.path} ({checkpoint.num_timesteps} env steps; {remaining} to go)")
        return [*replace_n_timesteps(rest, remaining), "-i", str(checkpoint.model)]
    return rest


def replace_n_timesteps(argv: list[str], value: int) -> list[str]:
    """``argv`` with its ``-n``/``--n-timesteps`` value replaced (both spellings, ``=`` forms included)."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in ("-n", "--n-timesteps") and i + 1 < len(argv):
            out += [arg, str(value)]
            skip = True
        elif arg.startswith("--n-timesteps="):
            out.append(f"--n-timesteps={value}")
        else:
            out.append(arg)
    return out


def restore_evaluations(checkpoint: Checkpoint, run_dir: Path) -> Path | None:
    """Put the checkpoint's evaluation files back into the run folder (rows written after the checkpoint
    are dropped: they are redone); return the restored npz (``None``: the checkpoint has none)."""
    restored = None
    for name in EVAL_FILES:
        if (checkpoint.path / name).is_file():
            atomic_copy(checkpoint.path / name, run_dir / name)
            restored = restored or run_dir / EVAL_FILES[0]
    return restored


__all__ = ["RUN_OPTIONS", "RunOptions", "prepare_run", "restore_evaluations", "run_folders", "saved_num_timesteps"]
