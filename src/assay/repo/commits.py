"""Commits: immutable snapshots of every dataset's manifest, with lineage to the code that made them."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from assay.errors import FormatError

COMMIT_FORMAT = 1


@dataclass(frozen=True)
class Commit:
    """A snapshot. Stored as canonical JSON; its address is the hash of those bytes."""

    parents: tuple[str, ...]
    message: str
    author: str
    time: float  # seconds since the epoch, UTC
    datasets: dict[str, str]  # dataset name -> manifest oid
    code: dict[str, Any] | None = None  # {"git_commit": ..., "dirty": bool, "path": ...}
    models: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    format: int = COMMIT_FORMAT
    suites: dict[str, str] = field(default_factory=dict)  # dataset name -> suite oid (YAML)

    @property
    def when(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time, dt.UTC)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format, "type": "commit", "parents": list(self.parents), "message": self.message,
            "author": self.author, "time": self.time, "datasets": dict(sorted(self.datasets.items())),
            "code": self.code, "models": self.models, "meta": self.meta,
            "suites": dict(sorted(self.suites.items())),
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, oid: str = "?") -> Commit:
        try:
            d = json.loads(data)
        except ValueError as e:
            raise FormatError(f"object {oid} is not a commit") from e
        if not isinstance(d, dict) or d.get("type") != "commit":
            raise FormatError(f"object {oid} is not a commit")
        if d.get("format", 0) > COMMIT_FORMAT:
            raise FormatError(f"commit {oid} has format {d['format']}, newer than this assay reads "
                              f"({COMMIT_FORMAT}); upgrade assay")
        return cls(tuple(d["parents"]), d["message"], d["author"], d["time"], d["datasets"], d.get("code"),
                   d.get("models", {}), d.get("meta", {}), d["format"], d.get("suites", {}))
