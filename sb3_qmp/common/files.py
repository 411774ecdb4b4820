"""Crash-safe file writing: a file is either its old complete version or its new complete version.

Every writer here writes to a temporary name in the target's folder, flushes it to disk, then renames it
over the target (``os.replace`` is atomic on POSIX file systems, NFS included, within one folder). A
process killed mid-write leaves at most a stray ``.tmp-*`` file, never a truncated target.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

TMP_PREFIX = ".tmp-"


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path``; on a clean exit the file written there replaces ``path``.

    For writers that take a file name (``np.savez``, ``model.save``)::

        with atomic_path("model.zip") as tmp:
            model.save(tmp)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` whose content replaces ``path`` only when the block exits cleanly."""
    if "w" not in mode:
        raise ValueError(f"atomic_open writes whole files: mode must contain 'w', got {mode!r}.")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_savez(path: str | os.PathLike[str], **arrays: Any) -> None:
    """``np.savez(path, **arrays)`` atomically (``path`` is used as given: name it ``*.npz``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def atomic_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy the file ``src`` to ``dst`` atomically."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def atomic_save(path: str | os.PathLike[str], save: Callable[[Path], Any]) -> None:
    """Call ``save(tmp)`` (e.g. ``model.save``, ``vec_normalize.save``) and move the result to ``path``.

    ``save`` must write exactly the path it is given (SB3's ``save`` appends ``.zip`` to a name without
    it: give ``path`` its suffix).
    """
    with atomic_path(path) as tmp:
        save(tmp)


def sha256(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """The SHA-256 hex digest of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


__all__ = [
    "atomic_copy",
    "atomic_open",
    "atomic_path",
    "atomic_save",
    "atomic_savez",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "sha256",
]
