"""Commits: immutable snapshots of every dataset's manifest, with lineage to the code that made them."""

from __future__ import annotations

import datetime as dt
import json
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from assay.errors import FormatError

COMMIT_FORMAT = 1
BUILTIN_KINDS = ("datasets", "suites", "models")  # kinds of content held in fields of their own


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
    kinds: dict[str, dict[str, str]] = field(default_factory=dict)  # any other kind: kind -> name -> oid

    @classmethod
    def child(cls, *, parent: Commit | None, parents: Sequence[str], message: str, author: str,
              time: float | None = None, code: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
              datasets: Mapping[str, str] | None = None, suites: Mapping[str, str] | None = None,
              models: Mapping[str, str] | None = None,
              kinds: Mapping[str, Mapping[str, str]] | None = None) -> Commit:
        """A new commit that carries every kind of content of ``parent`` except the kinds given.

        This is the one way to make a commit from another. Each kind given (``datasets``, ``suites``,
        ``models``, or any kind by name in ``kinds``) replaces that kind's whole mapping; every other kind is
        carried over unchanged. ``meta`` and ``code`` describe the new commit itself and are not carried.
        """
        content = parent.content() if parent is not None else {}
        named = {"datasets": datasets, "suites": suites, "models": models}
        for name, given in [*(kinds or {}).items(), *named.items()]:
            if given is not None:
                content[name] = dict(given)
        extra = {k: v for k, v in sorted(content.items()) if k not in BUILTIN_KINDS and v}
        return cls(tuple(parents), message, author, _time.time() if time is None else time,
                   content.get("datasets", {}), code, content.get("models", {}), dict(meta or {}),
                   suites=content.get("suites", {}), kinds=extra)

    def content(self) -> dict[str, dict[str, str]]:
        """Every kind of content: kind -> name -> oid (datasets, suites, models, and any other kind)."""
        out = {"datasets": dict(self.datasets), "suites": dict(self.suites), "models": dict(self.models)}
        out.update((k, dict(v)) for k, v in self.kinds.items())
        return out

    @property
    def when(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time, dt.UTC)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format, "type": "commit", "parents": list(self.parents), "message": self.message,
            "author": self.author, "time": self.time, "datasets": dict(sorted(self.datasets.items())),
            "code": self.code, "models": self.models, "meta": self.meta,
            "suites": dict(sorted(self.suites.items())),
            **({"kinds": {k: dict(sorted(v.items())) for k, v in sorted(self.kinds.items())}} if self.kinds else {}),
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
                   d.get("models", {}), d.get("meta", {}), d["format"], d.get("suites", {}),
                   {k: dict(v) for k, v in d.get("kinds", {}).items()})


@dataclass(frozen=True)
class ContentConflict:
    """An entry (a suite, a model, ...) that the two sides of a merge changed differently."""

    kind: str
    name: str
    ours: str  # what our side did: added, changed, removed
    theirs: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r}: ours {self.ours}, theirs {self.theirs}"


def merge_contents(base: Mapping[str, Mapping[str, str]], ours: Mapping[str, Mapping[str, str]],
                   theirs: Mapping[str, Mapping[str, str]]) -> tuple[dict[str, dict[str, str]], list[ContentConflict]]:
    """Every kind of content but datasets (kind -> name -> oid) merged three-way entry by entry, and the
    entries both sides changed differently (merge and revert use it; datasets merge by sample instead)."""
    out: dict[str, dict[str, str]] = {}
    conflicts: list[ContentConflict] = []
    for kind in sorted((set(base) | set(ours) | set(theirs)) - {"datasets"}):
        out[kind], found = merge_entries(kind, base.get(kind, {}), ours.get(kind, {}), theirs.get(kind, {}))
        conflicts.extend(found)
    return out, conflicts


def merge_entries(kind: str, base: Mapping[str, str], ours: Mapping[str, str],
                  theirs: Mapping[str, str]) -> tuple[dict[str, str], list[ContentConflict]]:
    """Three-way merge of one kind of content by name: a side's change wins over no change."""
    out: dict[str, str] = {}
    conflicts: list[ContentConflict] = []
    for name in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(name), ours.get(name), theirs.get(name)
        if o == t or t == b:
            value = o
        elif o == b:
            value = t
        else:
            conflicts.append(ContentConflict(kind, name, _change(b, o), _change(b, t)))
            continue
        if value:
            out[name] = value
    return out, conflicts


def _change(before: str | None, after: str | None) -> str:
    return "added" if before is None else "removed" if after is None else "changed"
