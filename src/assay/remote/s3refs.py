"""The refs of a remote on S3 without a catalog: one JSON object, moved by compare-and-swap with S3 conditional writes.

A bare remote at ``s3://bucket/prefix`` is its objects (the packing store under that prefix, as a repository on
S3 keeps them) and ``prefix/refs.json``: every branch and tag with its commit, the default branch, and the last
``LOG`` ref moves. Updating refs reads that object with its ETag, checks every update's expected commit against
it, and writes the new version with ``If-Match: ETAG`` (``If-None-Match: *`` when there is none yet). When
another writer moved any ref in between, S3 answers 412 and nothing is written: the update reads again and
re-checks, so a concurrent move of another ref is merged in, and a concurrent move of the same ref is a
ConflictError (the push turns it into a non-fast-forward). No ref update is lost and none races, on any server
that implements conditional writes (AWS S3 since 2024, MinIO, moto); on one that does not, updates fail with a
clear error rather than race.

What it leaves: every ref of the remote lives in one object, so concurrent pushes to different branches
serialise on it (each retries on 412; fine for tens of pushes a second, not for thousands), and there is no
lock for gc (nothing collects garbage in a bare remote: objects of a push killed halfway stay, unreferenced,
and the next push does not send them again).
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from assay.errors import ConflictError, FormatError, StorageError
from assay.repo.catalog import Ref, RefUpdate
from assay.store.s3 import S3Backend

REFS_KEY = "refs.json"
FORMAT = 1
LOG = 200  # ref moves kept in the object
ATTEMPTS = 20


class S3Refs:
    """Branches and tags of a bare remote on S3 (the ref half of ``Catalog``: get, list, update by CAS)."""

    def __init__(self, backend: S3Backend):
        self.backend = backend
        self.where = f"{backend.location}{REFS_KEY}"

    def _read(self) -> tuple[dict[str, Any], str | None]:
        found = self.backend.get_tagged(REFS_KEY)
        if found is None:
            return {"format": FORMAT, "head": None, "refs": {}, "log": []}, None
        data, etag = found
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise FormatError(f"{self.where} is not JSON: the remote's refs are damaged; restore that object from "
                              "a backup or a clone (`assay push --force` from a clone rewrites a branch)") from e
        if not isinstance(doc, dict) or int(doc.get("format", 0)) > FORMAT:
            raise FormatError(f"{self.where} has format {doc.get('format') if isinstance(doc, dict) else '?'}, "
                              f"newer than this assay reads ({FORMAT}); upgrade assay")
        return doc, etag

    @property
    def head(self) -> str | None:
        """The remote's default branch (the first branch ever pushed, while it exists)."""
        doc, _ = self._read()
        head = doc.get("head")
        return head if head in doc["refs"] else None

    def exists(self) -> bool:
        return self.backend.get_tagged(REFS_KEY) is not None

    def get_ref(self, name: str) -> Ref | None:
        entry = self._read()[0]["refs"].get(name)
        return Ref(name, entry["kind"], entry["commit"]) if entry else None

    def list_refs(self, kind: str | None = None) -> list[Ref]:
        refs = self._read()[0]["refs"]
        return [Ref(n, e["kind"], e["commit"]) for n, e in sorted(refs.items()) if kind is None or e["kind"] == kind]

    def update_ref(self, name: str, kind: str, new: str | None, expected: str | None, message: str = "") -> None:
        self.update_refs([RefUpdate(name, kind, new, expected)], message)

    def update_refs(self, updates: list[RefUpdate], message: str = "") -> None:
        """Apply every update (each a compare-and-swap) or none; ConflictError when one's ref moved."""
        for attempt in range(ATTEMPTS):
            doc, etag = self._read()
            _apply(doc, updates, message)
            body = json.dumps(doc, indent=1, sort_keys=True).encode()
            if self.backend.put_if_match(REFS_KEY, body, etag):
                return
            time.sleep(random.uniform(0, 0.02 * (attempt + 1)))  # another writer moved a ref: read again
        raise StorageError(f"the refs at {self.where} kept moving under {ATTEMPTS} attempts to update them "
                           "(many pushes at once); nothing was changed by this one: run it again")

    def close(self) -> None:
        """Nothing to release (the backend's connections close with it)."""


def _apply(doc: dict[str, Any], updates: list[RefUpdate], message: str) -> None:
    refs: dict[str, dict[str, str]] = doc["refs"]
    for u in updates:
        current = refs.get(u.name)
        if (current["commit"] if current else None) != u.expected:
            raise ConflictError(f"ref {u.name} moved: expected {u.expected or 'absent'}, found "
                                f"{current['commit'] if current else 'absent'}")
        if current and current["kind"] != u.kind:
            raise ConflictError(f"{u.name} is a {current['kind']} on the remote, not a {u.kind}")
    now = time.time()
    for u in updates:
        if u.new is None:
            refs.pop(u.name, None)
        else:
            refs[u.name] = {"kind": u.kind, "commit": u.new}
        if u.kind == "branch" and u.new is not None and doc.get("head") not in refs:
            doc["head"] = u.name
        doc["log"] = [[u.name, u.expected, u.new, now, message], *doc.get("log", [])][:LOG]
