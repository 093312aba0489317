"""Atomic file writes: a temporary file in the same folder, written whole and synced, then renamed over the target.

Every byte handed to ``write`` is written, or an error is raised (a plain unbuffered file may write only part of
what it is given); the temporary file is removed on any error, so a failed write (a full disk, an I/O error)
leaves nothing under the final name and nothing behind. A full disk is raised as ``OutOfSpace``.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import sqlite3
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from assay.errors import OutOfSpace

_FULL = (errno.ENOSPC, errno.EDQUOT)
# The store's only two write calls; module attributes so that a fault-injection test can wrap them.
_write = os.write
_writev = os.writev


class WholeWriter:
    """A file descriptor whose ``write`` writes every byte it is given (looping over short writes)."""

    def __init__(self, fd: int):
        self._fd = fd
        self.written = 0

    def fileno(self) -> int:
        return self._fd

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        while view:
            n = _write(self._fd, view)
            if n <= 0:  # pragma: no cover - os.write raises rather than returning 0 on regular files
                raise OSError(errno.EIO, "write made no progress")
            view = view[n:]
            self.written += n
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered."""


def write_all(fd: int, buffers: list[bytes | bytearray | memoryview]) -> int:
    """``os.writev`` until every buffer is written (a write may stop short); the number of bytes written."""
    views = [memoryview(b).cast("B") for b in buffers]
    total = 0
    while views:
        n = _writev(fd, views)
        total += n
        while views and n >= len(views[0]):
            n -= len(views.pop(0))
        if views and n:
            views[0] = views[0][n:]
    return total


def atomic_write(path: Path, data: bytes | memoryview, *, durable: bool = True,
                 tmp_dir: Path | None = None) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the whole new one."""
    with atomic_file(path, durable=durable, tmp_dir=tmp_dir) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(path: Path, *, durable: bool = True, sync_folder: bool = True,
                tmp_dir: Path | None = None, mode: int | None = None) -> Iterator[WholeWriter]:
    """A file to write; renamed over ``path`` (after fsync when ``durable``) only if the block succeeds.

    With ``sync_folder`` False the caller syncs the folder itself (once for many files). ``mode`` sets the
    file's permissions (the temporary file is created 0600).
    """
    folder = tmp_dir or path.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    except OSError as e:
        raise _translated(e, path) from e
    try:
        try:
            yield WholeWriter(fd)
            if durable:
                os.fsync(fd)
            if mode is not None:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        _unlink_quietly(tmp)
        if isinstance(e, OSError) and not isinstance(e, OutOfSpace):
            raise _translated(e, path) from e
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


def is_full(e: BaseException) -> bool:
    """Whether ``e`` says the filesystem (or the user's quota) is full."""
    return isinstance(e, OutOfSpace) or (isinstance(e, OSError) and e.errno in _FULL)


def out_of_space(path: Path | str, needed: int | None = None) -> OutOfSpace:
    """The error for a write to ``path`` that found its filesystem full."""
    need = f" ({_human(needed)} were being written)" if needed else ""
    return OutOfSpace(
        errno.ENOSPC,
        f"no space left on the device holding {path}{need}. Nothing was changed: the repository is as it was "
        "before this command. Free space on that filesystem (remove files, or `assay gc` to drop unreachable "
        "objects), then run the command again.",
    )


def _translated(e: OSError, path: Path) -> OSError:
    return out_of_space(path) if e.errno in _FULL else e


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# SQLite connections (the catalog's, the add memo's, the key store's) still open when the process exits are
# closed by its exit handlers: closing the last one checkpoints the WAL into the database file and removes the
# -wal and -shm files, which a process that ends without the interpreter's teardown (``assay.cli.app.run``)
# would otherwise leave, with the last commits only in the WAL.
_OPEN: weakref.WeakSet[Any] = weakref.WeakSet()


class ClosedAtExit(sqlite3.Connection):
    """A SQLite connection closed by the exit handlers if it is still open then (``sqlite3.connect(...,
    factory=ClosedAtExit)``; a subclass, as the base type takes no weak reference)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _OPEN.add(self)


@atexit.register
def _close_open() -> None:
    for resource in list(_OPEN):
        with contextlib.suppress(Exception):  # exiting: a resource that cannot close is left as it is
            resource.close()
