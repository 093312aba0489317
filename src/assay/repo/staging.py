"""The staging area: dataset versions added but not yet committed, and the working branch (HEAD).

Both are small local files, replaced atomically, read and written under a lock file, so that several
processes working in one repository do not lose each other's changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assay.store.fs import ClosedAtExit, atomic_write


@dataclass
class StagedDataset:
    manifest: str  # oid of the staged manifest; "" marks a removal
    base: str | None  # manifest oid in the commit it was staged against (None: new dataset)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Staging:
    datasets: dict[str, StagedDataset] = field(default_factory=dict)
    suites: dict[str, str] = field(default_factory=dict)  # dataset -> suite oid ("" removes the suite)

    def __bool__(self) -> bool:
        return bool(self.datasets or self.suites)

    def to_bytes(self) -> bytes:
        d = {n: {"manifest": s.manifest, "base": s.base, "summary": s.summary} for n, s in self.datasets.items()}
        return json.dumps({"format": 1, "datasets": d, "suites": self.suites}, sort_keys=True, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Staging:
        d = json.loads(data)
        return cls({n: StagedDataset(s["manifest"], s["base"], s.get("summary", {}))
                    for n, s in d.get("datasets", {}).items()}, dict(d.get("suites", {})))


class WorkState:
    """HEAD and the staging area of one repository folder."""

    def __init__(self, root: Path):
        self.root = root
        self._lock_path = root / "lock"

    @contextmanager
    def locked(self) -> Iterator[None]:
        with open(self._lock_path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def read_staging(self) -> Staging:
        path = self.root / "staging.json"
        return Staging.from_bytes(path.read_bytes()) if path.exists() else Staging()

    def write_staging(self, staging: Staging) -> None:
        atomic_write(self.root / "staging.json", staging.to_bytes())

    def read_head(self) -> dict[str, str]:
        """``{"branch": name}`` or ``{"commit": oid}`` (detached)."""
        return dict(json.loads((self.root / "HEAD").read_bytes()))

    def write_head(self, head: dict[str, str]) -> None:
        atomic_write(self.root / "HEAD", json.dumps(head).encode())


class AddMemo:
    """Remembers what adding an input (by content digest) to a dataset version produced.

    Adding is deterministic in (base version, input digest, key, mode), so re-adding an input that was
    already added costs one hash of the file. A local cache: losing it only costs time.
    """

    def __init__(self, path: Path):
        try:
            self._con = self._open(str(path))
        except sqlite3.Error:  # a full disk or a damaged cache file: work without the cache
            self._con = self._open(":memory:")

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False, factory=ClosedAtExit)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("CREATE TABLE IF NOT EXISTS adds (base TEXT, digest TEXT, key TEXT, mode TEXT, "
                        "result TEXT, PRIMARY KEY (base, digest, key, mode))")
        except sqlite3.Error:
            con.close()
            raise
        return con

    def get(self, base: str | None, digest: str | None, key: Sequence[str] | None, mode: str) -> str | None:
        if digest is None:
            return None
        row = self._con.execute("SELECT result FROM adds WHERE base=? AND digest=? AND key=? AND mode=?",
                                (base or "", digest, json.dumps(list(key or [])), mode)).fetchone()
        return str(row[0]) if row else None

    def put(self, base: str | None, digest: str | None, key: Sequence[str] | None, mode: str, result: str) -> None:
        if digest is not None:
            with contextlib.suppress(sqlite3.OperationalError):  # a full disk: the cache only saves time
                self._con.execute("INSERT OR REPLACE INTO adds VALUES (?, ?, ?, ?, ?)",
                                  (base or "", digest, json.dumps(list(key or [])), mode, result))

    def close(self) -> None:
        self._con.close()
