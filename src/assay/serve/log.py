"""The prediction log: every answered request kept as a row of the dataset ``predictions.NAME``.

Dataset names allow letters, digits, '.', '_' and '-' only, so the log of model ``digits`` is the dataset
``predictions.digits`` (``dataset_name``), keyed by ``request_id``.

Each batch's rows are appended to a local buffer file (JSON lines) and fsynced before any of its requests is
answered: an acknowledged prediction is on disk. Every ``flush_rows`` rows or ``flush_seconds`` seconds the
buffer is renamed aside (``.flushing``), a fresh one is opened, and the rows are committed to the dataset on
the branch (a new commit moved by compare-and-swap; the working copy's staging is not touched); then the
renamed file is removed. A crash at any point leaves rows in the buffer or the renamed file, or both, and the
next start replays them, skipping request ids the dataset already holds: no acknowledged row is lost and none
is written twice. Each worker process holds its own buffer slot (an flock), so workers never share a file.

With ``durability="batch"`` the buffer is written (to the operating system, so a killed process loses nothing)
but fsynced every ``sync_window`` seconds rather than before each answer: a power loss or kernel crash can lose
the predictions answered in the last window. That removes the fsync from the latency of each request.
"""

from __future__ import annotations

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

from assay.errors import ConflictError, InputError, KeyViolation
from assay.repo.gitinfo import code_reference, default_author
from assay.repo.onbranch import Change, commit_on_branch
from assay.store.fs import fsync_dir

SCHEMA = pa.schema([("request_id", pa.string()), ("time", pa.float64()), ("model", pa.string()),
                    ("version", pa.int64()), ("key_name", pa.string()), ("latency_s", pa.float64()),
                    ("inputs", pa.string()), ("outputs", pa.string())])
COLUMNS = SCHEMA.names
DURABILITY = ("sync", "batch")  # fsync before each answer, or every sync_window seconds


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

    def __init__(self, root: Path, model: str, *, branch: str | None = None, flush_rows: int = 1000,
                 flush_seconds: float = 1.0, durability: str = "sync", sync_window: float = 0.05):
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
        self._file = open(self.buffer, "ab")  # noqa: SIM115 (closed by close or a rotation)
        self._thread = threading.Thread(target=self._run, name="assay-log-flush", daemon=True)
        self._thread.start()
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
        self._slot_file.close()

    def replay(self) -> int:
        rows = read_table([self.aside, self.buffer])
        written = self._commit(rows, skip_present=True) if rows.num_rows else 0
        for path in (self.aside, self.buffer):
            path.unlink(missing_ok=True)
        fsync_dir(self.folder)
        return written

    # -- writing --------------------------------------------------------------------------------------------

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Write ``rows`` to the buffer and fsync it; when this returns, they survive a crash."""
        import orjson  # the serve extra's (this module also serves `assay predictions`, which needs no server)

        data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
        with self._lock:
            if self._file is None:
                raise ConflictError("the prediction log is closed")
            self._file.write(data)
            self._file.flush()
            if self.durability == "sync":
                os.fsync(self._file.fileno())
            self.pending += len(rows)
        if self.pending >= self.flush_rows:
            self._wake.set()

    def _sync(self) -> None:
        with self._lock:
            if self._file is not None:
                os.fsync(self._file.fileno())

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
                    os.fsync(self._file.fileno())  # already done per append with durability "sync"; cheap then
                    self._file.close()
                    os.replace(self.buffer, self.aside)
                    self._file = open(self.buffer, "ab")  # noqa: SIM115
                    fsync_dir(self.folder)
                    moved, self.pending = self.pending, 0
            else:
                moved = 0
            rows = read_table([self.aside])
            written = self._commit(rows, skip_present=moved == 0) if rows.num_rows else 0  # a retry: part may be in
            self.aside.unlink()
            fsync_dir(self.folder)
            self.flushed += written
            return written

    def _commit(self, unique: pa.Table, *, skip_present: bool) -> int:
        """Commit ``unique`` (one row per request id) to the dataset; ``skip_present``: leave out the request ids
        the dataset holds already (a replay)."""
        from assay.repo.repository import Repository as Repo

        if self._provenance is None:  # the server's, once: no git process at every flush
            self._provenance = (default_author(self.root), code_reference(Path.cwd()))
        with Repo(self.root) as repo:
            target = self.branch or repo.branch or "main"

            def build(_tip: str | None, datasets: dict[str, str]) -> Change:
                base = datasets.get(self.dataset)
                todo = self._new_rows(repo, base, unique) if skip_present else unique
                if not todo.num_rows:
                    return Change(None, result=0)
                try:
                    oid, _ = repo.build_version(self.dataset, todo, base=base, key="request_id", mode="append")
                except KeyViolation:  # some were written by a run that crashed before removing its file
                    todo = self._new_rows(repo, base, unique)
                    if not todo.num_rows:
                        return Change(None, result=0)
                    oid, _ = repo.build_version(self.dataset, todo, base=base, key="request_id", mode="append")
                datasets[self.dataset] = oid
                return Change(datasets, f"serve: log {todo.num_rows} predictions of {self.model}", todo.num_rows,
                              {"serve": {"model": self.model, "rows": todo.num_rows}})

            _, written = commit_on_branch(repo, target, build, refused=f"branch kept moving while logging "
                                                                       f"predictions of {self.model!r}; they stay "
                                                                       "buffered", provenance=self._provenance)
            return int(written)

    @staticmethod
    def _new_rows(repo: Any, base: str | None, rows: pa.Table) -> pa.Table:
        if base is None:
            return rows
        from assay.table import DatasetVersion

        present = DatasetVersion(repo.store, repo.read_manifest(base)).to_arrow(["request_id"]).column("request_id")
        return rows.filter(pc.invert(pc.is_in(rows.column("request_id"), value_set=present)))


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=SCHEMA)

