"""A dataset version: its schema, sample key and the fragments (with deletions) that make it up.

Arrow is imported only to read or write the schema: what a manifest references (``Manifest.references``,
what push, clone and gc walk) is read without it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from assay.errors import FormatError

if TYPE_CHECKING:
    import pyarrow as pa

MANIFEST_FORMAT = 2  # 2: fragments may name a statistics object
ID_COLUMN = "_assay_id"
HASH_COLUMN = "_assay_hash"
INTERNAL_COLUMNS = (ID_COLUMN, HASH_COLUMN)


@dataclass(frozen=True)
class FragmentRef:
    """One fragment of a dataset version: a plain Parquet file of the rows, the id index giving each
    row's sample id and content hash, the rows of it that are deleted, and its statistics."""

    oid: str  # the Parquet file (the dataset's columns only)
    rows: int  # rows in the Parquet file
    bytes: int
    ids: str  # the id index: for each row, 16-byte sample id then 16-byte content hash
    deleted: str | None = None  # oid of a deletion vector (sorted u32 row positions)
    deleted_rows: int = 0
    stats: str | None = None  # oid of its statistics (of all its rows) and layout; None when written before them

    @property
    def live_rows(self) -> int:
        return self.rows - self.deleted_rows

    @property
    def objects(self) -> tuple[str, ...]:
        """The objects this fragment is made of."""
        return tuple(o for o in (self.oid, self.ids, self.deleted, self.stats) if o)

    def whole(self) -> FragmentRef:
        """The same fragment with no row deleted."""
        return replace(self, deleted=None, deleted_rows=0)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"oid": self.oid, "rows": self.rows, "bytes": self.bytes, "ids": self.ids}
        if self.deleted:
            d["deleted"], d["deleted_rows"] = self.deleted, self.deleted_rows
        if self.stats:
            d["stats"] = self.stats
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FragmentRef:
        return cls(d["oid"], d["rows"], d["bytes"], d["ids"], d.get("deleted"), d.get("deleted_rows", 0),
                   d.get("stats"))


@dataclass(frozen=True)
class Manifest:
    """A dataset version. Stored as canonical JSON, addressed by its hash."""

    name: str
    schema: pa.Schema
    key: tuple[str, ...] | None  # None: samples are keyed by content
    fragments: tuple[FragmentRef, ...] = ()
    kind: str = "table"  # "table" or "files" (a folder of blobs)
    source: str | None = None  # digest of the input that produced this version, for quick re-adds
    blob_columns: tuple[str, ...] = ()
    format: int = MANIFEST_FORMAT
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(f.live_rows for f in self.fragments)

    def with_fragments(self, fragments: list[FragmentRef] | tuple[FragmentRef, ...], **changes: Any) -> Manifest:
        """A new version with these fragments (written in the current format)."""
        return replace(self, fragments=tuple(f for f in fragments if f.live_rows > 0), format=MANIFEST_FORMAT,
                       **changes)

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "type": "manifest",
            "name": self.name,
            "kind": self.kind,
            "schema": schema_to_text(self.schema),
            "columns": [{"name": f.name, "type": str(f.type)} for f in self.schema],
            "key": list(self.key) if self.key is not None else None,
            "blob_columns": list(self.blob_columns),
            "fragments": [f.to_dict() for f in self.fragments],
            "rows": self.rows,
            "source": self.source,
            "meta": self.meta,
        }

    @classmethod
    def from_bytes(cls, data: bytes, oid: str = "?") -> Manifest:
        d = _parsed(data, oid)
        return cls(
            name=d["name"],
            schema=schema_from_text(d["schema"]),
            key=tuple(d["key"]) if d["key"] is not None else None,
            fragments=tuple(FragmentRef.from_dict(f) for f in d["fragments"]),
            kind=d.get("kind", "table"),
            source=d.get("source"),
            blob_columns=tuple(d.get("blob_columns", ())),
            format=d["format"],
            meta=d.get("meta", {}),
        )


    @staticmethod
    def references(data: bytes, oid: str = "?") -> ManifestRefs:
        """What the manifest stored as ``data`` references, read without its schema (no Arrow)."""
        d = _parsed(data, oid)
        return ManifestRefs(d["name"], tuple(FragmentRef.from_dict(f) for f in d["fragments"]),
                            tuple(d.get("blob_columns", ())))


@dataclass(frozen=True)
class ManifestRefs:
    """The part of a manifest that names other objects: its fragments and which columns hold blob ids."""

    name: str
    fragments: tuple[FragmentRef, ...]
    blob_columns: tuple[str, ...]


def _parsed(data: bytes, oid: str) -> dict[str, Any]:
    d = json.loads(data)
    if not isinstance(d, dict) or d.get("type") != "manifest":
        raise FormatError(f"object {oid} is not a dataset manifest")
    if d.get("format", 0) > MANIFEST_FORMAT:
        raise FormatError(
            f"manifest {oid} has format {d['format']}, newer than this assay reads "
            f"({MANIFEST_FORMAT}); upgrade assay"
        )
    return d


def schema_to_text(schema: pa.Schema) -> str:
    """Arrow IPC serialisation of a schema, base64 (pandas metadata dropped)."""
    return base64.b64encode(schema.remove_metadata().serialize().to_pybytes()).decode()


def schema_from_text(text: str) -> pa.Schema:
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
