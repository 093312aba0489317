"""The packing store over S3 (moto's server on 127.0.0.1, in its own process) vs over a local folder: put and get
throughput of a large object and of many small ones, and the latency of has() and stat().

moto is a test server written in Python: every request costs it milliseconds of CPU (on this machine's two shared
cores more), far more than a real S3 endpoint's per-request time, and it holds everything in memory. So the S3
column says how many requests each operation makes and what that costs against a slow server; it is no figure
for AWS or MinIO.

    PYTHONPATH=src python benchmarks/bench_s3.py [--quick] [--large-mib N] [--small N]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.s3_server: the server the tests use

from _common import parser, setup

from assay.store import LocalBackend, PackingStore, hash_bytes
from assay.store.backend import Backend
from assay.store.s3 import S3Backend
from tests.s3_server import CREDENTIALS, MotoServer


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _latency(fn: Callable[[int], object], n: int) -> float:
    """Median seconds of ``fn(i)`` over ``n`` calls."""
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(backend: Backend, large: bytes, small: list[bytes], calls: int) -> dict[str, float]:
    store = PackingStore(backend)
    mib = len(large) / (1 << 20)
    out: dict[str, float] = {}
    out["put large (MiB/s)"] = mib / _timed(lambda: store.put(large))
    oid = hash_bytes(large)
    out["get large (MiB/s)"] = mib / _timed(lambda: PackingStore(backend).get(oid))
    oids: list[str] = []
    out["put_many small (objects/s)"] = len(small) / _timed(lambda: oids.extend(store.put_many(small)))
    reader = PackingStore(backend)
    out["get small, packed (objects/s)"] = len(small) / _timed(lambda: [reader.get(o) for o in oids])
    loose = [store.put(os.urandom(2000)) for _ in range(calls)]
    misses = [hash_bytes(b"absent %d" % i) for i in range(calls)]
    out["has() hit, loose (ms)"] = 1000 * _latency(lambda i: store.has(loose[i]), calls)
    out["has() hit, packed (ms)"] = 1000 * _latency(lambda i: store.has(oids[i % len(oids)]), calls)
    out["has() miss (ms)"] = 1000 * _latency(lambda i: store.has(misses[i]), calls)
    out["stat() loose (ms)"] = 1000 * _latency(lambda i: store.stat(loose[i]), calls)
    out["stat() packed (ms)"] = 1000 * _latency(lambda i: store.stat(oids[i % len(oids)]), calls)
    return out


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--large-mib", type=int, default=64, help="size of the large object (default 64 MiB)")
    p.add_argument("--small", type=int, default=1000, help="number of small objects of 4 KiB (default 1000)")
    p.add_argument("--calls", type=int, default=100, help="calls per latency figure (default 100)")
    args = p.parse_args()
    setup(args, "packing store: S3 (moto, local server) vs local folder")
    scale = 10 if args.quick else 1
    large = os.urandom((args.large_mib << 20) // scale)
    small = [os.urandom(4096) for _ in range(args.small // scale)]
    calls = max(10, args.calls // scale)
    print(f"large object {len(large) >> 20} MiB (random, chunked into packs); {len(small)} small objects of 4 KiB; "
          f"{calls} calls per latency (median)")
    os.environ.update(CREDENTIALS)
    server = MotoServer().start()
    try:
        bucket = server.make_bucket()
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            local = measure(LocalBackend(Path(tmp) / "store"), large, small, calls)
            s3 = measure(S3Backend(bucket, "bench", endpoint_url=server.url), large, small, calls)
    finally:
        server.stop()
    print(f"{'':34} {'local folder':>14} {'S3 (moto)':>14} {'S3 / local':>11}")
    for name in local:
        ratio = s3[name] / local[name] if local[name] else float("nan")
        print(f"{name:34} {local[name]:14.2f} {s3[name]:14.2f} {ratio:10.2f}x")
    print("moto is a Python test server, slow per request and in memory: these S3 figures are a floor, "
          "not what AWS S3 or MinIO would give.")


if __name__ == "__main__":
    main()
