"""Hashing and storing one 1 GiB file of random bytes: BLAKE3 (one thread) against assay's ``hash_file``
and ``LocalObjectStore.put_file`` into a fresh store; then 1 MiB changed in the middle and stored again.

The file is read once before timing (warm page cache); each figure is the best of ``--repeat`` runs.

    python benchmarks/bench_hashing.py [--quick] [--repeat N] [--workdir DIR] [--keep] [--profile]
"""

from __future__ import annotations

import mmap
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import fastcdc
import numpy as np
from _common import dir_bytes, fmt_bytes, fmt_s, parser, print_table, read_all, scratch, setup, timed, yes_no
from blake3 import blake3

from assay.store import LocalObjectStore, hash_file
from assay.store.local import CHUNK_AVG, CHUNK_MAX, CHUNK_MIN

MiB = 1 << 20


def make_file(path: Path, size: int) -> None:
    rng = np.random.default_rng(5)
    with open(path, "wb") as f:
        for _ in range(size // (64 * MiB)):
            f.write(rng.bytes(64 * MiB))
        f.write(rng.bytes(size % (64 * MiB)))


def best(label: str, fn: Callable[[], object], repeat: int, before: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if before:
            before()
        times.append(timed(label, fn)[0])
    return min(times)


def chunk_only(path: Path) -> int:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        cuts = fastcdc.fastcdc(memoryview(mm), min_size=CHUNK_MIN, avg_size=CHUNK_AVG, max_size=CHUNK_MAX)
        return sum(1 for _ in cuts)


def loose_objects(store_root: Path) -> int:
    """How many objects the store holds (loose and packed)."""
    return sum(1 for _ in LocalObjectStore(store_root).iter_oids())


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is shown")
    args = p.parse_args()
    setup(args, "bench_hashing")
    size = (1 << 30) // 10 if args.quick else 1 << 30
    rows: list[list[str]] = []
    with scratch(args, "bench-hashing-") as root:
        path = root / "random.bin"
        make_file(path, size)
        read_all(path)
        print(f"file: {fmt_bytes(size)} ({size:,} bytes) of random bytes, read once (warm page cache); "
              f"best of {args.repeat}")

        def rate(seconds: float) -> str:
            return f"{size / seconds / 1e9:.2f}"

        b3 = best("blake3 one thread", lambda: blake3(max_threads=1).update_mmap(path).digest(), args.repeat)
        print(f"  blake3 update_mmap, max_threads=1:   {b3:.3f} s  {rate(b3)} GB/s")
        b3n = best("blake3 auto threads", lambda: blake3(max_threads=blake3.AUTO).update_mmap(path).digest(),
                   args.repeat)
        print(f"  blake3 update_mmap, max_threads=AUTO: {b3n:.3f} s  {rate(b3n)} GB/s ({os.cpu_count()} CPUs)")
        hf = best("assay hash_file", lambda: hash_file(path), args.repeat)
        print(f"  assay.store.hash_file:               {hf:.3f} s  {rate(hf)} GB/s")

        copy = root / "copy.bin"

        def copy_file() -> None:
            copy.unlink(missing_ok=True)
            with open(path, "rb") as src, open(copy, "wb") as dst:
                shutil.copyfileobj(src, dst, 8 * MiB)
                dst.flush()
                os.fsync(dst.fileno())
        cp = best("copy + fsync", copy_file, args.repeat)
        copy.unlink()
        print(f"  copy file + one fsync (write floor):  {cp:.3f} s  {rate(cp)} GB/s")
        ck = best("fastcdc chunking only", lambda: chunk_only(path), args.repeat)
        print(f"  fastcdc chunking only (assay sizes):  {ck:.3f} s  {rate(ck)} GB/s")

        stores: list[Path] = []

        def fresh(durable: bool) -> Callable[[], None]:
            def make() -> None:
                for old in stores:
                    shutil.rmtree(old, ignore_errors=True)
                stores.append(root / f"store-{len(stores)}")
                holder[0] = LocalObjectStore(stores[-1], durable=durable)
            return make

        holder: list[LocalObjectStore] = []
        holder.append(LocalObjectStore(root / "unused"))
        nd = best("put_file (durable=False)", lambda: holder[0].put_file(path), args.repeat, fresh(False))
        print(f"  put_file, store durable=False:       {nd:.3f} s  {rate(nd)} GB/s (diagnostic: no fsync)")
        pf = best("put_file", lambda: holder[0].put_file(path), args.repeat, fresh(True))
        store, store_root = holder[0], stores[-1]
        stored = dir_bytes(store_root)
        print(f"  put_file, fresh default store:       {pf:.3f} s  {rate(pf)} GB/s; stored {fmt_bytes(stored)} "
              f"in {loose_objects(store_root):,} objects")
        again, _ = timed("put_file again", lambda: store.put_file(path))
        print(f"  put_file again, same bytes:          {again:.3f} s  (nothing new: "
              f"{dir_bytes(store_root) == stored})")

        rng = np.random.default_rng(9)
        with open(path, "r+b") as f:
            f.seek(size // 2)
            f.write(rng.bytes(MiB))
        objects_before = loose_objects(store_root)
        changed, _ = timed("put_file after 1 MiB change", lambda: store.put_file(path))
        growth = dir_bytes(store_root) - stored
        new_objects = loose_objects(store_root) - objects_before
        print(f"  put_file after 1 MiB changed:        {changed:.3f} s; stored +{fmt_bytes(growth)} in "
              f"{new_objects} new objects (chunk list included)")

    ratio = b3 / pf
    rows.append(["blake3, one thread (floor)", fmt_s(b3), rate(b3), "1.00", "-", "-"])
    rows.append(["blake3, all threads", fmt_s(b3n), rate(b3n), f"{b3 / b3n:.2f}", "-", "-"])
    rows.append(["assay hash_file", fmt_s(hf), rate(hf), f"{b3 / hf:.2f}", ">= 0.80", yes_no(b3 / hf >= 0.8)])
    rows.append(["copy file + fsync (write floor)", fmt_s(cp), rate(cp), f"{b3 / cp:.2f}", "-", "-"])
    rows.append(["fastcdc chunking only", fmt_s(ck), rate(ck), f"{b3 / ck:.2f}", "-", "-"])
    rows.append(["assay put_file, fresh store", fmt_s(pf), rate(pf), f"{ratio:.2f}",
                 f"(stores: {cp / pf:.2f}x the copy floor)", "-"])
    rows.append(["  same, store durable=False", fmt_s(nd), rate(nd), f"{b3 / nd:.2f}", "(diagnostic)", "-"])
    rows.append(["put_file, unchanged file again", fmt_s(again), rate(again), f"{b3 / again:.2f}", "-", "-"])
    rows.append(["put_file after 1 MiB changed", fmt_s(changed), rate(changed), f"{b3 / changed:.2f}",
                 "stores a few chunks", f"+{fmt_bytes(growth)}, {new_objects} objects"])
    print_table(f"Summary ({fmt_bytes(size)} file; ratio = speed relative to one-thread BLAKE3, higher is faster)",
                ["measure", "seconds", "GB/s", "ratio", "goal", "met? / stored"], rows)


if __name__ == "__main__":
    main()
