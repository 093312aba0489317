"""The prediction log: every answered request kept as a row of the dataset ``predictions.NAME``.

Dataset names allow letters, digits, '.', '_' and '-' only, so the log of model ``digits`` is the dataset
``predictions.digits`` (``dataset_name``), keyed by ``request_id``.

Each batch's rows are appended to a local buffer file (JSON lines) and fsynced before any of its requests is
answered: an acknowledged prediction is on disk. The fsync is a group commit: the requests wait for it
(``await durable()``), and one fsync covers the rows of every batch written since the last one. While fsyncs are
fast (their average under ``INLINE_SYNC_S``, 1 ms), it runs in the event loop itself, once for all the requests
waiting in that turn of the loop: handing it to a thread and back costs two context switches a request, more than
such an fsync blocks the loop, and the requests that arrive meanwhile wait in the socket buffers and join the
next one. A slower disk moves the fsync to a thread of its own, so that the event loop goes on answering others.

Every ``flush_rows`` rows or ``flush_seconds`` seconds the buffer is renamed aside (``.flushing``), a fresh
one is opened, and the rows are committed to the dataset on the branch (a new commit moved by compare-and-swap;
the working copy's staging is not touched); then the renamed file is removed. A crash at any point leaves rows
in the buffer or the renamed file, or both, and the next start replays them, skipping request ids the dataset
already holds: no acknowledged row is lost and none is written twice. Each worker process holds its own buffer
slot (an flock), so workers never share a file.

With ``durability="batch"`` the buffer is written (to the operating system, so a killed process loses nothing)
but fsynced every ``sync_window`` seconds rather than before each answer: a power loss or kernel crash can lose
the predictions answered in the last window. That removes the fsync from the latency of each request.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import ConflictError, InputError
from assay.repo.gitinfo import code_reference, default_author
from assay.repo.onbranch import Change, commit_on_branch
from assay.serve.committer import Committer
from assay.store.fs import fsync_dir

SCHEMA = pa.schema([("request_id", pa.string()), ("time", pa.float64()), ("model", pa.string()),
                    ("version", pa.int64()), ("key_name", pa.string()), ("latency_s", pa.float64()),
                    ("inputs", pa.string()), ("outputs", pa.string())])
COLUMNS = SCHEMA.names
DURABILITY = ("sync", "batch")  # fsync before each answer, or every sync_window seconds
INLINE_SYNC_S = 0.001  # an fsync that takes less than this on average runs in the event loop, not a thread


def dataset_name(model: str) -> str:
    return f"predictions.{model}"


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The rows of a buffer file; a torn last line (a crash while writing it, never acknowledged) is dropped."""
    return _parse_lines(path.read_bytes()) if path.exists() else []


def _parse_lines(data: bytes) -> list[dict[str, Any]]:
    rows = []
    for line in data.split(b"\n"):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "request_id" in row:
            rows.append(row)
    return rows


def read_table(paths: Sequence[Path]) -> pa.Table:
    """The rows of buffer files as one table, a request id once (its last row); a torn last line is dropped.

    Parsed by Arrow's JSON reader (in C++, off the GIL: a flush beside a serving event loop holds it for a few
    milliseconds, not the tens a line-by-line parse takes), up to each file's last newline; a file with a
    damaged line elsewhere (a disk that lost a block) is parsed line by line instead, skipping that line."""
    import pyarrow.json as pajson

    options = pajson.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")
    parts = []
    for path in paths:
        data = path.read_bytes() if path.exists() else b""
        end = data.rfind(b"\n") + 1  # a write cut short by a crash ends without its newline
        if not end:
            continue
        try:
            parts.append(pajson.read_json(pa.BufferReader(pa.py_buffer(data).slice(0, end)), parse_options=options))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            parts.append(_table([r for r in _parse_lines(data) if isinstance(r.get("request_id"), str)]))
    table = pa.concat_tables(parts) if parts else SCHEMA.empty_table()
    table = table.filter(pc.is_valid(table.column("request_id")))
    if pc.count_distinct(table.column("request_id")).as_py() < table.num_rows:  # a row replayed twice: keep the last
        last = {rid: i for i, rid in enumerate(table.column("request_id").to_pylist())}
        table = table.take(pa.array(sorted(last.values()), pa.int64()))
    return table


class PredictionLog:
    """The buffer and flusher of one worker for one model in the repository at ``root``."""

    def __init__(self, root: Path, model: str, *, branch: str | None = None, flush_rows: int = 10_000,
                 flush_seconds: float = 1.0, durability: str = "sync", sync_window: float = 0.05,
                 commit_process: bool = False):
        if durability not in DURABILITY:
            raise InputError(f"unknown log durability {durability!r}; use one of {', '.join(DURABILITY)}")
        self.root, self.model, self.branch = root, model, branch
        self.durability, self.sync_window = durability, sync_window
        self.dataset = dataset_name(model)
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.folder = root / ".assay" / "serve" / "log" / model
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._slot_file = self._take_slot()
        self.pending = 0  # rows in the buffer, not yet in the dataset
        self.flushed = 0
        self.errors = 0
        self.last_error: str | None = None
        self._file: IO[bytes] | None = None
        self._thread: threading.Thread | None = None
        # the group commit (durability "sync"): appends written and synced so far, and the requests waiting
        self._written = self._synced = 0
        self._sync_error: OSError | None = None
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._sync_wake = threading.Condition(self._lock)
        self._syncer: threading.Thread | None = None
        self._sync_cost: float | None = None  # average seconds of an fsync, from both paths
        self._inline_due: asyncio.AbstractEventLoop | None = None  # the loop an fsync is scheduled in
        self.syncs = 0
        self.commit_process = commit_process
        self._committer: Committer | None = None
        self._provenance: tuple[str, dict[str, Any] | None] | None = None  # author and code of the log's commits

    # -- slots ----------------------------------------------------------------------------------------------

    def _take_slot(self) -> IO[bytes]:
        for i in range(1024):
            f = open(self.folder / f"slot-{i}.lock", "ab")  # noqa: SIM115 (held for the worker's life)
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            self.slot = i
            return f
        raise ConflictError(f"1024 workers already log predictions of {self.model!r} here")

    @property
    def buffer(self) -> Path:
        return self.folder / f"slot-{self.slot}.jsonl"

    @property
    def aside(self) -> Path:
        return self.folder / f"slot-{self.slot}.flushing.jsonl"

    # -- life -----------------------------------------------------------------------------------------------

    def start(self) -> int:
        """Replay what a previous run of this slot left (returns the rows written), then start flushing."""
        replayed = self.replay()
        if self.commit_process:
            self._committer = Committer()
        self._file = open(self.buffer, "ab")  # noqa: SIM115 (closed by close or a rotation)
        self._thread = threading.Thread(target=self._run, name="assay-log-flush", daemon=True)
        self._thread.start()
        if self.durability == "sync":
            self._syncer = threading.Thread(target=self._sync_loop, name="assay-log-sync", daemon=True)
            self._syncer.start()
        return replayed

    def close(self) -> None:
        """Flush what is buffered and stop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()
        with self._lock:
            if self._file is not None:
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None
            self._synced_upto(self._written)
            self._sync_wake.notify_all()
        if self._syncer is not None:
            self._syncer.join()
        if self._committer is not None:
            self._committer.close()
        self._slot_file.close()

    def replay(self) -> int:
        rows = read_table([self.aside, self.buffer])
        written = self._commit(rows, skip_present=True) if rows.num_rows else 0
        for path in (self.aside, self.buffer):
            path.unlink(missing_ok=True)
        fsync_dir(self.folder)
        return written

    # -- writing --------------------------------------------------------------------------------------------

    def append(self, rows: Sequence[dict[str, Any]], *, wait: bool = True) -> None:
        """Write ``rows`` to the buffer (to the operating system: a killed process loses none of them). With
        durability "sync" and ``wait``, return once they are fsynced; with ``wait=False`` return at once, and
        ``await durable()`` before acknowledging them (the serving path: the event loop does not block)."""
        import orjson  # the serve extra's (this module also serves `assay predictions`, which needs no server)

        data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
        with self._lock:
            if self._file is None:
                raise ConflictError("the prediction log is closed")
            self._file.write(data)
            self._file.flush()
            self.pending += len(rows)
            if self.durability == "sync":
                self._written += 1
                if wait:
                    os.fsync(self._file.fileno())
                    self._synced_upto(self._written)
        if self.pending >= self.flush_rows:
            self._wake.set()

    async def durable(self) -> None:
        """Return once everything appended before this call is fsynced (at once with durability "batch");
        raises the OSError of a failed fsync, so that no prediction is acknowledged that is not on disk."""
        if self.durability != "sync":
            return
        with self._lock:
            if self._sync_error is not None:
                raise self._sync_error
            target = self._written
            if self._synced >= target:
                return
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((target, loop, future))
            if self._sync_cost is None or self._sync_cost >= INLINE_SYNC_S:
                self._sync_wake.notify()  # the first fsyncs, or a slow disk: the sync thread
            elif self._inline_due is not loop:  # (a loop closed with one scheduled never runs it)
                self._inline_due = loop  # once for all the requests of this turn of the loop
                loop.call_soon(self._sync_inline)
        await future

    def _sync_inline(self) -> None:
        """The group commit in the event loop: fsync what was written so far and wake the requests it covers."""
        self._inline_due = None
        with self._lock:
            if self._sync_error is not None or self._file is None or self._synced >= self._written:
                return  # failed for good, closed (close wakes everyone), or the sync thread got there first
            target = self._written
            error = self._timed_fsync(self._file.fileno())
            if error is not None:
                self._sync_failed(error)
                return
            self._synced_upto(target)

    def _timed_fsync(self, fd: int) -> OSError | None:
        start = time.perf_counter()
        try:
            os.fsync(fd)
        except OSError as e:
            return e
        took = time.perf_counter() - start
        self._sync_cost = took if self._sync_cost is None else 0.9 * self._sync_cost + 0.1 * took
        self.syncs += 1
        return None

    def _sync_loop(self) -> None:
        """The group commit: fsync what was written since the last sync, then wake the requests it covers."""
        while True:
            with self._lock:
                while self._synced >= self._written and not self._stop.is_set():
                    self._sync_wake.wait()
                if self._synced >= self._written or self._file is None:
                    if self._stop.is_set():
                        return
                    continue
                target, fd = self._written, os.dup(self._file.fileno())  # the file may be rotated meanwhile
            try:
                error = self._timed_fsync(fd)  # outside the lock: appends go on meanwhile and wait for the next sync
            finally:
                os.close(fd)
            with self._lock:
                if error is not None:
                    self._sync_failed(error)
                    return
                self._synced_upto(target)

    def _synced_upto(self, target: int) -> None:
        """Record (holding the lock) that the appends up to ``target`` are on disk, and wake their requests."""
        self._synced = max(self._synced, target)
        self._release(self._synced, None)

    def _sync_failed(self, error: OSError) -> None:
        """Record (holding the lock) a failed fsync and fail every waiting request with it. For good: after a failed
        fsync the kernel may have dropped the pages, so a later one that succeeds proves nothing (PostgreSQL's
        "fsyncgate")."""
        self._sync_error = error
        self._release(None, error)

    def _release(self, upto: int | None, error: BaseException | None) -> None:
        """Resolve (holding the lock) the waiters for appends up to ``upto`` (None: all of them) with ``error``
        or success, one hand-off to each event loop."""
        woken: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        keep = []
        for gen, loop, future in self._waiters:
            if upto is None or gen <= upto:
                woken.setdefault(loop, []).append(future)
            else:
                keep.append((gen, loop, future))
        self._waiters = keep
        for loop, futures in woken.items():
            _wake(loop, futures, error)

    def _sync(self) -> None:
        """The sync of durability "batch", every ``sync_window`` seconds (counted in ``syncs`` too)."""
        with self._lock:
            if self._file is not None and (error := self._timed_fsync(self._file.fileno())) is not None:
                raise error

    def _run(self) -> None:
        last = time.monotonic()
        window = self.sync_window if self.durability == "batch" else self.flush_seconds
        while not self._stop.is_set():
            woken = self._wake.wait(min(window, self.flush_seconds))
            self._wake.clear()
            try:
                if self.durability == "batch":
                    self._sync()
                if not woken and time.monotonic() - last < self.flush_seconds:
                    continue
                last = time.monotonic()
                self.flush()
            except Exception as e:  # the repository is busy or full: the rows stay buffered, tried again later
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                time.sleep(min(self.flush_seconds, 1.0))

    def flush(self) -> int:
        """Commit the buffered rows to the dataset; returns how many were written."""
        with self._flush_lock:
            if not self.aside.exists():
                with self._lock:
                    if self.pending == 0 or self._file is None:
                        return 0
                    os.fsync(self._file.fileno())  # what the group commit has not synced yet
                    self._synced_upto(self._written)
                    self._file.close()
                    os.replace(self.buffer, self.aside)
                    self._file = open(self.buffer, "ab")  # noqa: SIM115
                    fsync_dir(self.folder)
                    moved, self.pending = self.pending, 0
            else:
                moved = 0
            written = self._commit_aside(skip_present=moved == 0)  # a retry: part may be in already
            self.aside.unlink()
            fsync_dir(self.folder)
            self.flushed += written
            return written

    def _commit(self, unique: pa.Table, *, skip_present: bool) -> int:
        """Commit ``unique`` (one row per request id) to the dataset; ``skip_present``: leave out the request ids
        the dataset holds already (a replay)."""
        return commit_rows(self.root, self.model, self.branch, unique, skip_present=skip_present,
                           provenance=self.provenance())

    def provenance(self) -> tuple[str, dict[str, Any] | None]:
        """The author and code of the log's commits: the server's, found once (no git process at every flush)."""
        if self._provenance is None:
            self._provenance = (default_author(self.root), code_reference(Path.cwd()))
        return self._provenance

    def _commit_aside(self, *, skip_present: bool) -> int:
        """Commit the renamed buffer's rows: in the committer process when there is one, else here."""
        if self._committer is not None:
            return self._committer.commit(self.root, self.model, self.branch, self.aside, skip_present=skip_present,
                                          provenance=self.provenance())
        return commit_file(self.root, self.model, self.branch, self.aside, skip_present=skip_present,
                           provenance=self.provenance())


def commit_file(root: Path, model: str, branch: str | None, path: Path, *, skip_present: bool,
                provenance: tuple[str, dict[str, Any] | None]) -> int:
    """Commit the rows of the buffer file ``path`` (``commit_rows``); returns the rows written."""
    rows = read_table([path])
    return commit_rows(root, model, branch, rows, skip_present=skip_present, provenance=provenance) \
        if rows.num_rows else 0


def commit_rows(root: Path, model: str, branch: str | None, unique: pa.Table, *, skip_present: bool,
                provenance: tuple[str, dict[str, Any] | None]) -> int:
    """Commit ``unique`` (one row per request id) to the dataset ``predictions.MODEL`` on ``branch`` (else the
    repository's), by compare-and-swap; ``skip_present``: leave out the request ids the dataset holds already."""
    from assay.repo.repository import Repository as Repo
    from assay.table.compaction import merge_tail

    dataset = dataset_name(model)
    with Repo(root) as repo:
        target = branch or repo.branch or "main"

        tries = 0

        def build(_tip: str | None, datasets: dict[str, str]) -> Change:
            nonlocal tries
            tries += 1
            base = datasets.get(dataset)
            # rows fresh from the buffer were never committed (their request ids are the server's, and a file
            # that a flush may have committed in part is retried with skip_present), so the append does not read
            # every id the log holds to refuse one: a flush costs its own rows, not the log's size. A second try
            # means the branch moved under this one, and the one that moved it may have committed these rows: a
            # server killed mid-flush leaves its committer child to finish while the restarted one replays the file
            todo = _new_rows(repo, base, unique) if skip_present or tries > 1 else unique
            if not todo.num_rows:
                return Change(None, result=0)
            oid, result = repo.build_version(dataset, todo, base=base, key="request_id", mode="append",
                                             fresh_keys=True)
            # each flush adds a small fragment at the end: merged in tiers, so that a log flushed every second
            # for a year is still read in a few hundred fragments (assay.table.compaction)
            merged = merge_tail(repo.store, result.manifest)
            datasets[dataset] = oid if merged is result.manifest else repo.write_manifest(merged)
            return Change(datasets, f"serve: log {todo.num_rows} predictions of {model}", todo.num_rows,
                          {"serve": {"model": model, "rows": todo.num_rows}})

        _, written = commit_on_branch(repo, target, build, refused=f"branch kept moving while logging predictions "
                                                                   f"of {model!r}; they stay buffered",
                                      provenance=provenance)
        return int(written)


def _new_rows(repo: Any, base: str | None, rows: pa.Table) -> pa.Table:
    if base is None:
        return rows
    from assay.table import DatasetVersion

    present = DatasetVersion(repo.store, repo.read_manifest(base)).to_arrow(["request_id"]).column("request_id")
    return rows.filter(pc.invert(pc.is_in(rows.column("request_id"), value_set=present)))


def _wake(loop: asyncio.AbstractEventLoop, futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    """Resolve ``futures`` in their event loop (from the sync thread: one hand-off for all of them)."""

    def resolve() -> None:
        for f in futures:
            if not f.done():
                if error is None:
                    f.set_result(None)
                else:
                    f.set_exception(error)

    if loop.is_closed():
        return
    if error is None and _running_loop() is loop:
        resolve()
    else:
        loop.call_soon_threadsafe(resolve)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=SCHEMA)

