"""Atomic file writes: a temporary file in the same folder, flushed, then renamed over the target."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, data: bytes | memoryview, *, durable: bool = True,
                 tmp_dir: Path | None = None) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the whole new one."""
    with atomic_file(path, durable=durable, tmp_dir=tmp_dir) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(path: Path, *, durable: bool = True, sync_folder: bool = True,
                tmp_dir: Path | None = None) -> Iterator[BinaryIO]:
    """A file to write; renamed over ``path`` (after fsync when ``durable``) only if the block succeeds.

    With ``sync_folder`` False the caller syncs the folder itself (once for many files).
    """
    folder = tmp_dir or path.parent
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb", buffering=0) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if durable and sync_folder:
        fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Persist a rename in ``folder``."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
