"""Object stores from URLs: ``open_store(url)`` and the schemes it knows.

``file:///path/to/.assay`` (the path as it is, not percent-encoded; or a plain path) is a folder on this
machine. Other schemes (``s3://bucket/prefix``) are added with ``register_store_scheme``; an unknown scheme
is a clear error. A store opened here has a ``url``
and is pickled as that URL, so another process (a Ray worker) opens its own store instead of a copy of this one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assay.errors import InputError
from assay.store.base import ObjectStore
from assay.store.local import LocalObjectStore
from assay.store.packing import PackingStore

Opener = Callable[[str], ObjectStore]


class FileObjectStore(LocalObjectStore):
    """The local store, opened from (and reopened from) its ``file://`` URL."""

    def __init__(self, root: str | os.PathLike[str], **kwargs: Any):
        super().__init__(root, **kwargs)
        self.url = "file://" + str(Path(root).resolve())  # the path as it is (not percent-encoded)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return open_store, (self.url,)


def _open_file(url: str) -> ObjectStore:
    path = url[len("file://"):] if url.lower().startswith("file://") else url
    return FileObjectStore(path)


class S3ObjectStore(PackingStore):
    """The packing store over S3-compatible object storage (``s3://bucket/prefix``), reopened from its URL.

    The endpoint comes from ``AWS_ENDPOINT_URL`` (or the AWS configuration), credentials from the AWS chain;
    neither is part of the URL, so the URL can be written into a repository's config."""

    remote = True

    def __init__(self, url: str, *, endpoint_url: str | None = None):
        from assay.store.s3 import S3Backend

        super().__init__(S3Backend.from_url(url, endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL")))
        self.url = url

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return open_store, (self.url,)


_OPENERS: dict[str, Opener] = {"file": _open_file, "s3": S3ObjectStore}


def register_store_scheme(scheme: str, opener: Opener) -> None:
    """Make ``open_store`` open ``scheme://...`` URLs with ``opener(url)``."""
    _OPENERS[scheme] = opener


def open_store(url: str | os.PathLike[str]) -> ObjectStore:
    """The object store at ``url``: ``file:///path`` or a path; other schemes once registered."""
    text = os.fspath(url)
    scheme = text.partition("://")[0].lower() if "://" in text else "file"
    opener = _OPENERS.get(scheme)
    if opener is None:
        raise InputError(f"unknown object store URL scheme {scheme!r} in {text!r}; assay opens stores at "
                         f"{', '.join(s + '://' for s in sorted(_OPENERS))} or a path to a folder")
    return opener(text)
