"""Partial clones: a repository that holds part of a remote's objects and reads the rest from it on first use.

``assay clone URL --datasets A,B`` fetches every commit, manifest and model record, and the fragments and
blobs of datasets A and B only; ``--lazy`` fetches none (nor model artifacts and suite texts). Like git's
partial clone, the remote it came from stays the *promisor*: the repository's store is a ``PartialStore``,
which answers a read of an object it lacks by fetching it from that remote, checking its hash on arrival
(bytes that do not match are refused and never stored) and keeping it here, so each object crosses once.

What was left out is written down in ``.assay/partial.json`` (the remote's name and the filter); later
fetches from that remote apply the same filter. Upkeep sees only what is here: gc keeps what it reaches
of the local objects and never reads from the remote; fsck reports an absent object as *not fetched* when
the remote has it, and as missing only when the remote lacks it too.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.errors import FormatError, ObjectNotFound
from assay.remote.transfer import Filter, TransferReport, store_verified
from assay.store import ObjectStore
from assay.store.base import StoredObject
from assay.store.fs import atomic_write

if TYPE_CHECKING:
    from assay.remote.ends import RemoteEnd
    from assay.repo.repository import Repository

PARTIAL_FILE = "partial.json"


def read_partial(adir: Path) -> tuple[str, Filter] | None:
    """The promisor remote's name and the filter of the partial clone whose ``.assay`` folder is ``adir``
    (None for a full repository)."""
    path = adir / PARTIAL_FILE
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        names = d.get("datasets")
        return str(d["remote"]), Filter(None if names is None else frozenset(map(str, names)), bool(d["lazy"]))
    except (ValueError, KeyError, TypeError) as e:
        raise FormatError(f"{path} is damaged ({e}): it says which remote this partial clone reads from; "
                          'write {"format": 1, "remote": "origin", "datasets": null, "lazy": true} there') from e


def write_partial(adir: Path, remote: str, only: Filter) -> None:
    data = {"format": 1, "remote": remote, "lazy": only.lazy,
            "datasets": None if only.datasets is None else sorted(only.datasets)}
    atomic_write(adir / PARTIAL_FILE, json.dumps(data, indent=2).encode())


def promise(repo: Repository) -> None:
    """Give ``repo``, if it is a partial clone, the store that reads what it lacks from its remote (``assay.Repo``
    and a folder remote do this when they open one; the core alone sees only the local objects)."""
    if isinstance(repo.store, PartialStore):
        return
    promisor = read_partial(repo.dir)
    if promisor is not None:
        repo.store = PartialStore(repo.store, repo.dir, promisor[0])


def _open_promisor(adir: Path, name: str) -> RemoteEnd:
    from assay.errors import RefNotFound
    from assay.remote.ends import open_url
    from assay.remote.remotes import REMOTES_FILE

    path = adir / REMOTES_FILE
    entries = json.loads(path.read_text(encoding="utf-8")).get("remotes", {}) if path.exists() else {}
    if name not in entries:
        raise RefNotFound(f"this is a partial clone of remote {name!r}, which is no longer configured, so the "
                          f"objects not fetched cannot be read; add it again with `assay remote add {name} URL`")
    e = entries[name]
    return open_url(e["url"], catalog=e.get("catalog"), endpoint_url=e.get("endpoint_url"))


class PartialStore(ObjectStore):
    """The local store of a partial clone, which fetches an object it lacks from the promisor remote.

    Writes, listings, ``has``, ``stat`` and upkeep see the local objects only (``local``); reads (``get``,
    ``get_many``, ``get_ranges``) fetch what is absent, verified, and store it here first. ``fetched`` counts
    what was read from the remote. The remote is opened on the first miss and closed with ``close``.
    """

    def __init__(self, local: ObjectStore, adir: str | Path, remote: str):
        self.local = local
        self.adir = Path(adir)
        self.remote_name = remote
        self.fetched = TransferReport()
        self._remote: RemoteEnd | None = None
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # to a Ray worker: its own local store and promisor
        return PartialStore, (self.local, self.adir, self.remote_name)

    def __repr__(self) -> str:
        return f"<PartialStore {self.local!r} promisor={self.remote_name}>"

    def __getattr__(self, name: str) -> Any:  # what a concrete store has beyond the interface (clean_tmp, url, ...)
        if name == "local":
            raise AttributeError(name)
        return getattr(self.local, name)

    def stored_as(self, oid: str) -> tuple[bool, bool]:
        if self.local.has(oid):
            return self.local.stored_as(oid)
        return self._promisor().store.stored_as(oid)

    # -- what comes from the remote ---------------------------------------------------------------------------

    def fetch(self, oids: Iterable[str]) -> int:
        """Fetch those of ``oids`` not held here from the promisor (verified); how many came."""
        want = sorted(self.local.missing(set(oids)))
        if not want:
            return 0
        with self._lock:
            want = sorted(self.local.missing(want))  # another thread may have fetched them meanwhile
            if not want:
                return 0
            remote = self._promisor()
            try:
                datas = remote.store.get_many(want)
            except ObjectNotFound as e:
                raise ObjectNotFound(f"{e.args[0] if e.args else e} (this partial clone reads it from remote "
                                     f"{self.remote_name}, which does not hold it either: run `assay fsck` there)"
                                     ) from e
            store_verified(self.local, list(zip(want, datas, strict=True)), self.fetched,
                           layout=remote.store.stored_as)
        return len(want)

    def _promisor(self) -> RemoteEnd:
        if self._remote is None:
            self._remote = _open_promisor(self.adir, self.remote_name)
        return self._remote

    def remote_missing(self, oids: Iterable[str]) -> set[str]:
        """Those of ``oids`` that the promisor does not hold either (fsck: lost, not merely not fetched)."""
        with self._lock:
            return self._promisor().store.missing(oids)

    def close(self) -> None:
        with self._lock:
            if self._remote is not None:
                self._remote.close()
                self._remote = None
        close = getattr(self.local, "close", None)
        if close is not None:
            close()

    # -- reads: here, else from the remote ---------------------------------------------------------------------

    def get(self, oid: str) -> bytes:
        try:
            return self.local.get(oid)
        except ObjectNotFound:
            if not self.fetch([oid]):
                raise
            return self.local.get(oid)

    def get_many(self, oids: Sequence[str]) -> list[bytes]:
        try:
            return self.local.get_many(oids)
        except ObjectNotFound:
            self.fetch(oids)
            return self.local.get_many(oids)

    def get_ranges(self, oid: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        try:
            return self.local.get_ranges(oid, ranges)
        except ObjectNotFound:
            if not self.fetch([oid]):
                raise
            return self.local.get_ranges(oid, ranges)

    # -- everything else: the local store ----------------------------------------------------------------------

    def put(self, data: bytes | memoryview, *, chunk: bool = True, compress: bool = True) -> str:
        return self.local.put(data, chunk=chunk, compress=compress)

    def put_many(self, items: Iterable[bytes]) -> list[str]:
        return self.local.put_many(items)

    def put_file(self, path: Any) -> str:
        return self.local.put_file(path)

    def put_files(self, paths: Any, callback: Any = None) -> list[str]:
        return self.local.put_files(paths, callback)

    def has(self, oid: str) -> bool:
        return self.local.has(oid)

    def missing(self, oids: Iterable[str]) -> set[str]:
        return self.local.missing(oids)

    def stat(self, oid: str) -> StoredObject:
        return self.local.stat(oid)

    def iter_oids(self) -> Iterator[str]:
        return self.local.iter_oids()

    def children(self, oid: str) -> list[str]:
        return self.local.children(oid)

    def delete(self, oids: Iterable[str], *, older_than: float) -> int:
        return self.local.delete(oids, older_than=older_than)

    @contextlib.contextmanager
    def cache_scope(self) -> Iterator[None]:
        with self.local.cache_scope():
            yield

    def repair(self, data: bytes) -> str:
        return self.local.repair(data)

    def freshen(self, oids: Iterable[str]) -> None:
        self.local.freshen(oids)

    def verify(self, oid: str) -> None:
        self.local.verify(oid)

    def stored_bytes(self) -> int:
        return self.local.stored_bytes()

