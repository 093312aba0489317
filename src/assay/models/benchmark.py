"""Size, load time, peak memory and latency of a model, per batch size and thread count.

:func:`benchmark` measures ONNX bytes with ONNX Runtime (or any Python callable, such as a scikit-learn
``predict_proba`` or a PyTorch module, for comparison) on rows drawn from the given inputs, after warm-up, and
returns a JSON-serialisable dict that the registry stores with the model version. Peak memory to load is
measured in a fresh Python process (the peak resident set size after loading, less the one before), so that
what this process already holds does not count. :func:`time_calls` is the timing loop, for requests of
different shapes (token sequences of different lengths).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assay.errors import InputError
from assay.models.adapters import require
from assay.models.onnx_export import onnx_feeds, session

FORMAT_VERSION = 1


@dataclass(frozen=True)
class LatencyStats:
    """Latency percentiles (milliseconds) and throughput (samples per second) of timed calls."""

    batch: int
    threads: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_calls(fn: Callable[[Any], Any], requests: Sequence[Any], *, warmup: int = 10, runs: int = 100,
               batch: int = 1, threads: int = 1) -> LatencyStats:
    """Call ``fn`` on ``requests`` (cycled) ``warmup`` times untimed, then ``runs`` times timed one by one."""
    if not requests:
        raise InputError("no requests to time: pass at least one input")
    if runs < 1 or warmup < 0:
        raise InputError(f"runs must be >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")
    for i in range(warmup):
        fn(requests[i % len(requests)])
    times = np.empty(runs)
    for i in range(runs):
        request = requests[i % len(requests)]
        start = time.perf_counter()
        fn(request)
        times[i] = time.perf_counter() - start
    ms = times * 1e3
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    return LatencyStats(batch, threads, runs, p50, p90, p99, float(ms.mean()), float(batch * runs / times.sum()))


def benchmark(model: bytes | Callable[[Any], Any], inputs: Any, *, batches: Sequence[int] = (1, 8, 64),
              threads: Sequence[int] = (1, 2), warmup: int = 10, runs: int = 100,
              memory: bool = True) -> dict[str, Any]:
    """Benchmark ONNX bytes (with ONNX Runtime) or a callable on batches of rows drawn from ``inputs``.

    ``inputs``: an array (rows on axis 0) or a name -> array mapping (ONNX inputs). Returns a JSON-serialisable
    dict: size, load time and peak memory to load (ONNX only), and a list of latency results per batch size
    and thread count.
    """
    if not batches or not threads or min(batches) < 1 or min(threads) < 1:
        raise InputError(f"batch sizes and thread counts must be >= 1, got batches={list(batches)} "
                         f"threads={list(threads)}")
    rows = _row_count(inputs)
    onnx = isinstance(model, bytes | bytearray)
    results = []
    for n in threads:
        if onnx:
            run, prepare, load_ms = _runner(model, n)  # type: ignore[arg-type]
        else:
            run, prepare, load_ms = model, (lambda request: request), None  # type: ignore[assignment]
        for b in batches:
            requests = [prepare(_take(inputs, (np.arange(b) + i * b) % rows)) for i in range(min(warmup + runs, 64))]
            with _thread_limit(n) if not onnx else contextlib.nullcontext():
                stats = time_calls(run, requests, warmup=warmup, runs=runs, batch=b, threads=n)
            results.append({**stats.to_dict(), "load_ms": load_ms})
    report: dict[str, Any] = {"format": FORMAT_VERSION, "kind": "onnx" if onnx else "callable",
                              "runtime": _runtime(onnx), "machine": _machine(), "warmup": warmup, "runs": runs,
                              "results": results}
    if onnx:
        report["size_bytes"] = len(model)  # type: ignore[arg-type]
        report["load"] = load_memory(bytes(model)) if memory else None  # type: ignore[arg-type]
    return report


def load_memory(onnx_bytes: bytes, *, threads: int = 1, timeout: float = 600) -> dict[str, float]:
    """Load time and peak memory to load ONNX bytes into an ONNX Runtime session, in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="assay-bench-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(onnx_bytes)
        proc = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT, str(path), str(threads)], capture_output=True,
                              text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise InputError(f"loading the model in a fresh process failed: {proc.stderr.strip()[-400:]}")
    return {k: float(v) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


_LOAD_SCRIPT = """
import json, os, resource, sys, time
import numpy, onnxruntime as ort

def rss(field):  # Linux: VmRSS (now) or VmHWM (peak since the last reset), bytes
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))

linux = os.path.exists("/proc/self/clear_refs")
if linux:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak to the current resident set size
    before = rss("VmRSS:")
else:  # the peak of the process so far: an import peak above the load's hides it
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
opts = ort.SessionOptions()
opts.intra_op_num_threads = int(sys.argv[2])
opts.inter_op_num_threads = 1
opts.log_severity_level = 3
start = time.perf_counter()
sess = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
load_ms = (time.perf_counter() - start) * 1e3
peak = rss("VmHWM:") if linux else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (
    1 if sys.platform == "darwin" else 1024)
after = rss("VmRSS:") if linux else peak
sys.stdout.write(json.dumps({"load_ms": load_ms, "peak_load_mb": (peak - before) / 2**20,
                             "resident_after_load_mb": (after - before) / 2**20, "peak_rss_mb": peak / 2**20}) + "\\n")
"""


def _runner(model: bytes, threads: int) -> tuple[Callable[[Any], Any], Callable[[Any], Any], float]:
    """A session's run function, the function that casts a request to its input dtypes, and the load time."""
    start = time.perf_counter()
    sess = session(bytes(model), threads=threads)
    load_ms = (time.perf_counter() - start) * 1e3
    names = [o.name for o in sess.get_outputs()]
    return (lambda feeds: sess.run(names, feeds)), (lambda request: onnx_feeds(sess, request)), load_ms


def _row_count(inputs: Any) -> int:
    arrays = list(inputs.values()) if isinstance(inputs, Mapping) else [inputs]
    counts = {len(np.asarray(a)) for a in arrays}
    if len(counts) != 1 or 0 in counts:
        raise InputError(f"inputs must hold the same number (>= 1) of rows in every array, got {sorted(counts)}")
    return counts.pop()


def _take(inputs: Any, idx: np.ndarray) -> Any:
    if isinstance(inputs, Mapping):
        return {k: np.ascontiguousarray(np.asarray(v)[idx]) for k, v in inputs.items()}
    return np.ascontiguousarray(np.asarray(inputs)[idx])


@contextlib.contextmanager
def _thread_limit(n: int) -> Iterator[None]:
    """Limit BLAS/OpenMP threads (threadpoolctl) and torch's intra-op threads while timing a callable."""
    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield
        else:
            with threadpool_limits(limits=n):
                yield
    finally:
        if torch is not None and previous is not None:
            torch.set_num_threads(previous)


def _runtime(onnx: bool) -> dict[str, str]:
    if not onnx:
        return {"python": platform.python_version()}
    return {"onnxruntime": str(require("onnxruntime").__version__), "python": platform.python_version()}


def _machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()}
