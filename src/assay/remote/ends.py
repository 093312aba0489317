"""The other end of a transfer, opened from a remote's URL: its object store, its refs and its default branch.

=====================================  ========================================================================
``/path``, ``file:///path``            another repository folder (its store and catalog, whatever they are)
``s3://bucket/prefix``                 a bare remote on S3: objects under the prefix, refs in ``refs.json``
                                       moved by S3 conditional writes (``assay.remote.s3refs``)
``s3://bucket/prefix`` + a catalog     objects on S3, refs in that catalog (PostgreSQL): the shared repository
                                       that ``assay init --store s3://... --catalog postgresql://...`` makes
=====================================  ========================================================================

The S3 endpoint comes from ``--endpoint-url`` (kept with the remote: it is no secret) or ``AWS_ENDPOINT_URL``;
credentials only from the AWS chain, and the catalog's from ``PGPASSWORD``, ``PGPASSFILE`` or ``~/.pgpass``.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

from assay.errors import InputError, RefNotFound
from assay.repo.catalog import Ref, RefUpdate
from assay.store import ObjectStore

if TYPE_CHECKING:
    from assay.repo.repository import Repository as Repo


class Refs(Protocol):
    """What a transfer needs of the other end's refs (a ``Catalog`` is one)."""

    def get_ref(self, name: str) -> Ref | None: ...
    def list_refs(self, kind: str | None = None) -> list[Ref]: ...
    def update_ref(self, name: str, kind: str, new: str | None, expected: str | None, message: str = "") -> None: ...
    def update_refs(self, updates: list[RefUpdate], message: str = "") -> None: ...


class RemoteEnd:
    """An opened remote: ``store``, ``catalog`` (its refs) and ``branch`` (the one a clone checks out)."""

    def __init__(self, store: ObjectStore, catalog: Refs, branch: str | None, closer: Any = None):
        self.store = store
        self.catalog = catalog
        self.branch = branch
        self._closer = closer

    def close(self) -> None:
        for part in (self._closer, self.catalog, self.store):
            close = getattr(part, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> RemoteEnd:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def normalise_url(url: str) -> str:
    """A remote URL as stored: a folder's absolute path, or an ``s3://`` URL (never with credentials)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else url).expanduser()
        return str(path.resolve())
    if parsed.username or parsed.password:
        raise InputError(f"{_safe(url)}: credentials do not go in a remote URL (they would be stored in "
                         ".assay/remotes.json); use the environment or your credential files instead")
    if parsed.scheme == "s3":
        from assay.store.s3 import parse_s3_url

        parse_s3_url(url)  # the URL's form, now (no client, no request)
        return f"s3://{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
    raise InputError(f"{_safe(url)}: unsupported remote URL scheme {parsed.scheme!r}; use a repository folder "
                     "(a path or file:// URL) or S3 (s3://bucket/prefix)")


def normalise_catalog(url: str | None) -> str | None:
    """A remote's catalog URL as stored (no credentials: they come from libpq's environment)."""
    if url is None:
        return None
    from assay.repo.catalog import parse_catalog_url

    parsed = parse_catalog_url(url)
    if parsed.password:
        raise InputError(f"{parsed.public()}: the password does not go in a remote's catalog URL (it would be "
                         "stored in .assay/remotes.json); give it in PGPASSWORD, PGPASSFILE or ~/.pgpass")
    if parsed.backend == "sqlite":
        raise InputError("a remote's catalog is a database server (postgresql://HOST/DB); a remote with a "
                         "SQLite catalog is a repository folder: add the folder as the remote")
    return parsed.public() if not parsed.user else url


def _safe(url: str) -> str:
    p = urlparse(url)
    return url.replace(f"{p.username}:{p.password}@", "***@") if p.password else url


def open_url(url: str, *, catalog: str | None = None, endpoint_url: str | None = None,
             create: bool = False) -> RemoteEnd:
    """The remote at ``url``; ``create`` (a push) lets a bare S3 remote that has no refs yet be made."""
    url = normalise_url(url)
    if url.startswith("s3://"):
        return _open_s3(url, catalog, endpoint_url, create)
    return _open_folder(Path(url))


def _open_folder(path: Path) -> RemoteEnd:
    from assay.repo.repository import Repository

    if not (path / ".assay" / "config.json").exists():
        raise RefNotFound(f"no assay repository at {path}: create one there with `assay init {path}`, or check "
                          "the remote's URL (`assay remote list`)")
    repo: Repo = Repository(path)
    if (repo.dir / "partial.json").exists():  # itself a partial clone: what it lacks, it reads from its remote
        from assay.remote.partial import promise

        promise(repo)
    return RemoteEnd(repo.store, repo.catalog, repo.branch, closer=repo)


def _open_s3(url: str, catalog: str | None, endpoint_url: str | None, create: bool) -> RemoteEnd:
    from assay.remote.s3refs import S3Refs
    from assay.store.packing import PackingStore
    from assay.store.s3 import S3Backend

    backend = S3Backend.from_url(url, endpoint_url=endpoint_url)  # a missing bucket or bad credentials: now
    store = PackingStore(backend)
    if catalog is not None:
        from assay.repo.catalog import open_catalog

        refs = open_catalog(catalog)
        branches = sorted(r.name for r in refs.list_refs("branch"))
        return RemoteEnd(store, refs, "main" if "main" in branches else (branches[0] if branches else None))
    bare = S3Refs(backend)
    if not create and not bare.exists():
        raise RefNotFound(f"no assay remote at {url}{' at ' + backend.endpoint_url if backend.endpoint_url else ''}"
                          f": nothing was pushed there yet (push to it first: `assay push NAME`), or check the "
                          "URL and --endpoint-url (`assay remote list`)")
    return RemoteEnd(store, bare, bare.head)
