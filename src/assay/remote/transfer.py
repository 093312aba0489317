"""Moving objects between two stores: only what the other side lacks, in an order that keeps it whole.

The objects to send are found by walking the object graph (``assay.repo.graph``: commits, their parents
and content, manifests, their fragments and blobs) from the commits being sent, and stopping at every
object the destination already has. That stop is safe because objects are written children first (a
post-order of the graph: fragments and blobs before their manifest, a manifest before its commit, a commit
after its parents), and refs move only after every object they reach is stored. So a destination that
holds an object holds everything it reaches, even after a transfer killed halfway, and the next transfer
sends only what is missing.

Objects move whole (``get`` / ``put``); a destination store chunks and packs them as it stores anything.
Every object's bytes are hashed on arrival and refused, never stored, when they do not match their id.

A partial clone fetches with a ``Filter``: every commit, manifest and model record, but the fragments and
blobs only of the datasets it names (``lazy``: of none, and no plain object outside them either); what it
leaves out is read from the remote on first use (``assay.remote.partial``). There, a manifest held is not
a promise that its fragments are: ``missing`` never walks below objects the destination has, so the filter
holds for every later fetch as well, and what was read since stays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from assay._types import Progress
from assay.engines import Engine
from assay.errors import CorruptObject
from assay.repo.graph import COMMIT, MANIFEST, OBJECT, Edge
from assay.store import ObjectStore
from assay.store.hashing import hash_bytes

SMALL = 256 * 1024  # objects up to this size are stored in batches (packed by the destination store)
BATCH = 512  # objects read at most at once
FIRST_READ = 16  # objects in the first read; the next reads as many as fit in WINDOW by the sizes seen so far
WINDOW = 128 << 20  # bytes a read holds, about; two at once (a push of 1,000 fragments of 30 MB does not read them all)
PUTS = 4  # large objects written at once


@dataclass
class TransferReport:
    """What one transfer moved."""

    objects: int = 0
    bytes: int = 0
    skipped: int = 0  # objects reached that the destination already had (their subgraph not walked)

    def to_dict(self) -> dict[str, int]:
        return {"objects": self.objects, "bytes": self.bytes, "skipped": self.skipped}


@dataclass(frozen=True)
class Filter:
    """What a partial clone fetches (see the module docstring). ``datasets``: the names whose fragments and
    blobs are fetched (None: every dataset, unless ``lazy``); ``lazy``: no plain object outside those datasets
    (model artifacts, suite texts) either."""

    datasets: frozenset[str] | None = None
    lazy: bool = False

    @property
    def full(self) -> bool:
        return self.datasets is None and not self.lazy

    def follows(self, edge: Edge, data: bytes) -> bool:
        """Whether to fetch what the object ``edge`` (its bytes ``data``) references."""
        if edge.node is not MANIFEST or self.full:
            return True
        from assay.table.manifest import Manifest

        return self.datasets is not None and Manifest.references(data, edge.oid).name in self.datasets

    def fetches(self, parent: Edge, child: Edge) -> bool:
        """Whether to fetch ``child``, referenced by ``parent`` (whose references are followed)."""
        return not (self.lazy and child.node is OBJECT and parent.node is not MANIFEST)


def missing(src: ObjectStore, dst: ObjectStore, commits: Iterable[str], *,
            only: Filter | None = None, plain: set[str] | None = None) -> tuple[list[str], int]:
    """The objects reachable from ``commits`` in ``src`` that ``dst`` lacks, children before parents (a
    post-order of the graph: fragments and blobs, then their manifest, ..., a commit after its parents).
    Also how many reached objects ``dst`` already had (whose subgraphs were not walked). ``plain``, when given,
    receives those of them that reference nothing (fragments, blobs: the leaves of the graph).

    ``dst`` is asked about the children of each object at once (``dst.missing``: on object storage one listing
    for the lot, not a request for each). ``only``: a partial clone's filter."""
    roots = list(dict.fromkeys(commits))
    order: list[str] = []
    seen: set[str] = set()
    absent = dst.missing(roots)
    asked = set(roots)
    skipped = 0
    stack: list[tuple[Edge, bool]] = [(Edge(c, COMMIT, "sent"), False) for c in reversed(roots)]
    while stack:
        edge, expanded = stack.pop()
        if expanded:  # every child is placed: the object comes after them
            order.append(edge.oid)
            continue
        if edge.oid in seen:
            continue
        seen.add(edge.oid)
        if edge.oid not in absent:
            skipped += 1
            continue
        stack.append((edge, True))
        if edge.node.children is None:
            if plain is not None:
                plain.add(edge.oid)
        else:
            data = src.get(edge.oid)
            if only is not None and not only.follows(edge, data):
                continue
            children = list(edge.node.children(src, edge.oid, data))
            if only is not None:
                children = [c for c in children if only.fetches(edge, c)]
            ask = {c.oid for c in children} - asked
            if ask:
                absent |= dst.missing(ask)
                asked |= ask
            stack.extend((child, False) for child in reversed(children))
    return order, skipped


def send(src: ObjectStore, dst: ObjectStore, commits: Sequence[str], *, progress: Progress | None = None,
         stage: str = "objects", engine: Engine | None = None, only: Filter | None = None) -> TransferReport:
    """Copy into ``dst`` every object reachable from ``commits`` that it lacks (verified, children first).

    By default the source store reads each batch (``get_many``: objects near each other in a pack in one
    request, the others on its threads); an ``engine`` reads them one by one on its workers instead. They are
    stored in order, here. ``only``: a partial clone's filter."""
    plain: set[str] = set()
    order, skipped = missing(src, dst, commits, only=only, plain=plain)
    report = TransferReport(skipped=skipped)
    if progress:
        progress(stage, 0, len(order))

    def read(part: list[str]) -> list[bytes | memoryview]:
        return src.get_many_views(part) if engine is None else list(engine.map(src.get, part))

    # the next part is read while this one is stored: a clone downloads while it writes, a push reads its packs
    # while it uploads (two parts in memory at most, each about WINDOW bytes)
    with ThreadPoolExecutor(1, thread_name_prefix="assay-read") as reader:
        start, part = 0, order[:FIRST_READ]
        pending = reader.submit(read, part) if part else None
        while pending is not None:
            datas = pending.result()
            start += len(part)
            # as many objects a read as fit in WINDOW bytes, by the size of those just read (at most BATCH)
            per_read = max(1, min(BATCH, WINDOW * len(datas) // max(1, sum(len(d) for d in datas))))
            following = order[start:start + per_read]
            pending = reader.submit(read, following) if following else None
            try:
                store_verified(dst, list(zip(part, datas, strict=True)), report, layout=src.stored_as, plain=plain)
            except BaseException:
                if pending is not None:
                    pending.cancel()
                raise
            part = following
            if progress:
                progress(stage, report.objects, len(order))
    return report


def store_verified(dst: ObjectStore, items: list[tuple[str, bytes | memoryview]], report: TransferReport, *,
                   layout: Callable[[str], tuple[bool, bool]] | None = None, plain: set[str] | None = None) -> None:
    """Store ``items`` in their order (small ones together in one pack, flushed before each large one), each
    hashed first: bytes that do not match their id are refused (CorruptObject) and nothing of the batch is stored.
    ``layout``: how the source stores a large object (``ObjectStore.stored_as``), which its copy keeps (a fragment
    stored whole is not split into chunks at the destination).

    ``plain``: the ids that reference nothing. The large ones of those are stored first, several at once (PUT
    requests in flight together), and only then the others in their order: a leaf stored earlier is still
    stored before everything that references it, so the destination stays whole at every point."""
    for oid, data in items:
        actual = hash_bytes(data)
        if actual != oid:
            raise CorruptObject(f"object {oid[:16]} arrived with bytes that hash to {actual[:16]}: the other side's "
                                "copy is damaged, so it was not stored. Run `assay fsck` there (or repair it with "
                                "`assay fsck --repair`), then try again")

    def put(oid: str, data: bytes | memoryview) -> None:
        chunk, compress = layout(oid) if layout is not None else (True, True)
        dst.put(data, chunk=chunk, compress=compress)

    rest = items
    if plain:
        large = [(o, d) for o, d in items if o in plain and len(d) > SMALL]
        rest = [(o, d) for o, d in items if o not in plain or len(d) <= SMALL]
        if len(large) > 1:
            with ThreadPoolExecutor(min(PUTS, len(large)), thread_name_prefix="assay-put") as pool:
                for f in [pool.submit(put, o, d) for o, d in large]:
                    f.result()  # every leaf stored (or the first error raised) before anything that references one
        elif large:
            put(*large[0])
    small_run: list[bytes] = []
    for oid, data in rest:
        if len(data) <= SMALL:
            small_run.append(bytes(data))  # views come only for objects of 1 MiB or more: bytes already, not copied
            continue
        if small_run:
            dst.put_many(small_run)
            small_run = []
        put(oid, data)
    if small_run:
        dst.put_many(small_run)
    report.objects += len(items)
    report.bytes += sum(len(data) for _, data in items)
