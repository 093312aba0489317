"""Helpers for the tests of fragment statistics: values with NaN, infinities and nulls, a store that
records what is read of it, and a version as a manifest written before statistics existed would give it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

from assay.store import ObjectStore
from assay.table import DatasetVersion, Manifest
from assay.table.manifest import FragmentRef

SPECIAL_FLOATS = [0.0, -0.0, 0.1, 1.5, -2.25, 3.0, 7.0, 1e-300, 1e300, float("nan"), float("inf"), float("-inf")]
SPECIAL_INTS = [0, 1, -1, 3, 2**53 + 1, -(2**62), 2**63 - 1, -(2**63)]
TEXTS = ["", "a", "ab", "abc", "é", "e\u0301", "日本", "xxxxxxxxxx", "a\nb"]
floats = st.one_of(st.none(), st.sampled_from(SPECIAL_FLOATS), st.floats(-1e6, 1e6))
ints = st.one_of(st.none(), st.sampled_from(SPECIAL_INTS), st.integers(-5, 5))
texts = st.one_of(st.none(), st.sampled_from(TEXTS), st.text(max_size=4))


class SpyStore(ObjectStore):
    """A store that records what is read of it."""

    def __init__(self, inner: ObjectStore):
        self.inner = inner
        self.read: list[str] = []
        self.ranges: list[tuple[int, int]] = []

    def get(self, oid: str) -> bytes:
        self.read.append(oid)
        return self.inner.get(oid)

    def get_ranges(self, oid: str, ranges: Any) -> list[bytes]:
        self.ranges.extend(ranges)
        return self.inner.get_ranges(oid, ranges)

    def put(self, data: bytes, *, chunk: bool = True, compress: bool = True) -> str:
        raise NotImplementedError

    def put_many(self, items: Any) -> list[str]:
        raise NotImplementedError

    def has(self, oid: str) -> bool:
        return self.inner.has(oid)

    def stat(self, oid: str) -> Any:
        return self.inner.stat(oid)

    def iter_oids(self) -> Iterator[str]:
        return self.inner.iter_oids()

    def children(self, oid: str) -> list[str]:
        return self.inner.children(oid)

    def delete(self, oids: Any, *, older_than: float) -> int:
        raise NotImplementedError


def without_statistics(version: DatasetVersion) -> DatasetVersion:
    """The version as a manifest of format 1 would give it: no statistics."""
    m = version.manifest
    old = Manifest(m.name, m.schema, m.key, tuple(FragmentRef(f.oid, f.rows, f.bytes, f.ids, f.deleted, f.deleted_rows)
                                                  for f in m.fragments), m.kind, m.source, m.blob_columns, format=1)
    return DatasetVersion(version._store, old, commit=version.commit)
