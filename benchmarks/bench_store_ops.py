"""What the packing store asks of its backend: LISTs made by ``has()`` misses, bytes read by ``stat``, and the
time of both, over a local folder and memory (an object-storage backend joins ``BACKENDS`` when it exists).

Before the store was split over raw backends every ``has()`` miss listed the pack indexes (a LIST per object on
S3) and ``stat`` decompressed the whole object; these figures show what is left.

    python benchmarks/bench_store_ops.py [--misses N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from assay.store import hash_bytes
from assay.store.backend import Backend, Buffer, Entry, LocalBackend, MemoryBackend
from assay.store.packing import PackingStore


class Counted(Backend):
    """Passes every call on to ``inner``, counting calls and bytes read."""

    def __init__(self, inner: Backend):
        self.inner, self.location = inner, inner.location
        self.calls: Counter[str] = Counter()
        self.read = 0

    def put(self, key: str, data: Buffer | Sequence[Buffer], *, sync: bool = True) -> None:
        self.calls["put"] += 1
        self.inner.put(key, data, sync=sync)

    def put_if_absent(self, key: str, data: Buffer) -> bool:
        self.calls["put"] += 1
        return self.inner.put_if_absent(key, data)

    def get(self, key: str) -> bytes:
        self.calls["get"] += 1
        out = self.inner.get(key)
        self.read += len(out)
        return out

    def get_split(self, key: str, head: int) -> tuple[bytes, bytes]:
        self.calls["get"] += 1
        a, b = self.inner.get_split(key, head)
        self.read += len(a) + len(b)
        return a, b

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        self.calls["get"] += 1
        out = self.inner.get_range(key, offset, length)
        self.read += len(out)
        return out

    def stat(self, key: str) -> Entry | None:
        self.calls["stat"] += 1
        return self.inner.stat(key)

    def exists(self, key: str) -> bool:
        self.calls["stat"] += 1
        return self.inner.exists(key)

    def list(self, prefix: str) -> Iterator[str]:
        self.calls["list"] += 1
        return self.inner.list(prefix)

    def scan(self, prefix: str) -> Iterator[Entry]:
        self.calls["list"] += 1
        return self.inner.scan(prefix)

    def delete(self, key: str) -> bool:
        self.calls["delete"] += 1
        return self.inner.delete(key)

    def sync(self, keys: Iterable[str]) -> None:
        self.inner.sync(keys)


BACKENDS: dict[str, Callable[[Path], Backend]] = {"local": lambda d: LocalBackend(d / "store"),
                                                  "memory": lambda d: MemoryBackend()}


def run(name: str, backend: Backend, misses: int) -> dict[str, str]:
    counted = Counted(backend)
    store = PackingStore(counted)
    for i in range(8):  # a few packs
        store.put_many([b"packed object %d %d" % (i, j) for j in range(200)])
    oid = store.put(b"compressible text " * 450_000)  # 8.1 MB, one zstd frame
    absent = [hash_bytes(b"absent %d" % i) for i in range(misses)]
    store = PackingStore(counted)  # another process's view: it has listed nothing yet
    counted.calls.clear()
    t = time.perf_counter()
    found = sum(store.has(o) for o in absent)
    has_s = time.perf_counter() - t
    lists = counted.calls["list"]
    store.stat(oid)  # loads the keep records once
    counted.read = 0
    t = time.perf_counter()
    size = store.stat(oid).size
    stat_ms = 1000 * (time.perf_counter() - t)
    assert found == 0 and size == 8_100_000
    return {"backend": name, f"{misses} has() misses": f"{has_s * 1e6 / misses:.1f} us each",
            "LISTs for them": str(lists), "stat of 8.1 MB zstd": f"{stat_ms:.2f} ms",
            "bytes read by stat": str(counted.read)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--misses", type=int, default=10_000)
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as d:
        rows = [run(name, make(Path(d)), args.misses) for name, make in BACKENDS.items()]
    for row in rows:
        print("  ".join(f"{k}: {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
