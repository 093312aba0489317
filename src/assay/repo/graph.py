"""The object graph: which objects each kind of commit content references, walked in one place.

Each type of stored object (a ``Node``) says what it references; each kind of commit content (a ``Kind``:
datasets, suites, models, ...) says which type of object its entries name. gc, fsck (and push and clone)
walk the graph through ``walk`` only, so content of a new kind is kept and checked once its kind is
registered with ``register_kind``; entries of a kind nobody registered are kept as plain objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from assay.errors import AssayError, FormatError, ObjectNotFound
from assay.repo.commits import Commit
from assay.store import ObjectStore


@dataclass(frozen=True)
class Edge:
    """An edge of the graph: an object, its type, and what refers to it."""

    oid: str
    node: Node
    why: str


@dataclass(frozen=True)
class Node:
    """A type of stored object; ``children`` reads one (store, oid, bytes) and returns what it references.

    Without ``children`` the object is plain: only its chunks (if stored in chunks) are followed.
    """

    name: str
    children: Callable[[ObjectStore, str, bytes], Iterable[Edge]] | None = None


@dataclass(frozen=True)
class Kind:
    """A kind of commit content (name -> oid) and the type of the objects its entries name."""

    name: str
    node: Node


def _manifest_children(store: ObjectStore, oid: str, data: bytes) -> Iterator[Edge]:
    from assay.table.manifest import Manifest

    m = Manifest.references(data, oid)  # no Arrow: a push or clone of tables walks without it
    for f in m.fragments:
        yield from (Edge(o, OBJECT, f"manifest {oid[:12]} ({m.name})") for o in f.objects if o)
    if not m.blob_columns:
        return
    from assay.table.fragments import read_fragment  # Arrow: the blob ids are a column of the fragments

    try:
        for f in m.fragments:
            t = read_fragment(store, f, list(m.blob_columns))
            for col in m.blob_columns:
                yield from (Edge(b, OBJECT, f"blob of dataset {m.name}") for b in t.column(col).to_pylist() if b)
    except AssayError:
        pass  # the fragment itself is reported


def _commit_children(store: ObjectStore, oid: str, data: bytes) -> Iterator[Edge]:
    c = Commit.from_bytes(data, oid)
    yield from (Edge(p, COMMIT, f"parent of {oid[:12]}") for p in c.parents)
    for kind, entries in c.content().items():
        node = kind_of(kind).node
        yield from (Edge(o, node, f"{kind} {n} in {oid[:12]}") for n, o in entries.items() if o)


def _model_children(store: ObjectStore, oid: str, data: bytes) -> Iterator[Edge]:
    """A model index or version record (JSON): it declares what it references in ``refs``, by type of object
    (``{"model": [...], "manifest": [...], "object": [...]}``), so that this layer need not know its format."""
    d = json.loads(data)
    if not isinstance(d, dict) or not isinstance(d.get("refs", {}), dict):
        raise FormatError(f"object {oid} is not a model record")
    nodes = {"model": MODEL, "manifest": MANIFEST, "object": OBJECT}
    what = f"{d.get('type', 'model')} {d.get('name', '?')}" + (f"@{d['version']}" if "version" in d else "")
    for node, oids in sorted(d.get("refs", {}).items()):
        yield from (Edge(o, nodes.get(node, OBJECT), f"{node} of {what}") for o in oids if o)


OBJECT = Node("object")
MANIFEST = Node("manifest", _manifest_children)
COMMIT = Node("commit", _commit_children)
MODEL = Node("model", _model_children)
KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    """Declare a kind of commit content and the type of object its entries name (replaces one of that name)."""
    KINDS[kind.name] = kind
    return kind


def kind_of(name: str) -> Kind:
    """The registered kind ``name``; an unknown kind's entries are taken as plain objects (kept, not read)."""
    return KINDS.get(name) or Kind(name, OBJECT)


register_kind(Kind("datasets", MANIFEST))
register_kind(Kind("suites", OBJECT))  # the YAML text of a suite
register_kind(Kind("models", MODEL))  # a model's index: its version records, their artifacts and data

# Called with (oid, what refers to it, the error) for an object that is missing or cannot be read.
OnError = Callable[[str, str, Exception], None]


def walk(store: ObjectStore, roots: Iterable[Edge], *, on_error: OnError | None = None) -> Iterator[tuple[str, str]]:
    """Yield every object reachable from ``roots`` once, with what refers to it (its chunks included)."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        ref = stack.pop()
        if ref.oid in seen:
            continue
        seen.add(ref.oid)
        yield ref.oid, ref.why
        if ref.node.children is not None:
            try:
                stack.extend(ref.node.children(store, ref.oid, store.get(ref.oid)))
            except (AssayError, ValueError, KeyError) as e:
                if on_error is not None:
                    on_error(ref.oid, ref.why, e)
                continue
        stack.extend(_chunks(store, ref, on_error))


def _chunks(store: ObjectStore, ref: Edge, on_error: OnError | None) -> list[Edge]:
    try:
        return [Edge(c, OBJECT, f"chunk of {ref.oid[:12]}") for c in store.children(ref.oid)]
    except ObjectNotFound:
        return []  # reported where it is read, or by fsck against the stored objects
    except AssayError as e:
        if on_error is not None:
            on_error(ref.oid, ref.why, e)
        return []
