"""Shared helpers for the benchmarks: options, timing, a DVC peer in a scratch git repository, tables."""

from __future__ import annotations

import argparse
import compileall
import cProfile
import datetime as dt
import io
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
DVC_FALLBACK = "/work/peer-dvc-venv/bin/dvc"  # peers get their own venv: /work/peer-NAME-venv
_PROFILE = {"on": False, "top": 15}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="10x smaller data, for a smoke run")
    p.add_argument("--workdir", default=tempfile.gettempdir(),
                   help="folder in which a scratch folder is made for this run (default: the temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder after the run")
    p.add_argument("--profile", action="store_true",
                   help="also run the in-process assay steps under cProfile and print the top functions "
                        "(their timings are then inflated by the profiler)")
    return p


def add_dvc_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dvc", default=None,
                   help=f"dvc executable (default: dvc on PATH, else {DVC_FALLBACK}); the DVC half is "
                        "skipped when it is absent")


def setup(args: argparse.Namespace, title: str) -> None:
    _PROFILE["on"] = bool(getattr(args, "profile", False))
    import assay

    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    print(f"== {title} ==")
    print(f"started {now}; {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, assay {getattr(assay, '__version__', '?')}"
          f"{' (QUICK: 10x smaller data)' if args.quick else ''}")
    src = Path(assay.__file__).resolve().parent
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."], cwd=src,
                           capture_output=True, text=True)
    if head.returncode == 0:
        print(f"assay source: {src} at git {head.stdout.strip()}{' (src modified)' if dirty.stdout.strip() else ''}")
    # assay's modules compiled to bytecode once, as pip does when it installs a package: in an environment that
    # forbids writing it (PYTHONDONTWRITEBYTECODE), every command a benchmark runs would time the compiler too
    compiled = compileall.compile_dir(str(src), quiet=1)
    print(f"bytecode of {src}: {'compiled' if compiled else 'NOT all compiled (the CLI figures include compiling)'}")
    with suppress(OSError):
        print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


def find_dvc(option: str | None) -> str | None:
    """The dvc executable to use, or None (after saying why) when there is none."""
    candidates = [option] if option else [shutil.which("dvc"), DVC_FALLBACK]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            out = subprocess.run([c, "--version"], capture_output=True, text=True, env=dvc_env())
            if out.returncode == 0:
                print(f"DVC: {c} (version {out.stdout.strip()})")
                return c
    print(f"DVC: not found ({option or 'dvc on PATH, ' + DVC_FALLBACK}); SKIPPING the DVC half of this "
          "benchmark. Install it with: python3 -m venv /work/peer-dvc-venv && /work/peer-dvc-venv/bin/pip install "
          "'dvc>=3.60,<4', or pass --dvc PATH")
    return None


def assay_cli() -> str:
    here = Path(sys.executable).parent / "assay"
    found = str(here) if here.exists() else shutil.which("assay")
    if not found:
        raise SystemExit("the assay command is not installed in this environment (pip install -e .)")
    return found


@contextmanager
def scratch(args: argparse.Namespace, prefix: str) -> Iterator[Path]:
    base = Path(args.workdir)
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    print(f"scratch folder: {folder}{' (kept)' if args.keep else ' (removed at the end)'}")
    try:
        yield folder
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def timed(label: str, fn: Callable[[], T]) -> tuple[float, T]:
    """Seconds taken by ``fn()`` and its result. With --profile the one run is made under cProfile (its
    time then includes the profiler's overhead) and the top cumulative entries are printed."""
    if not _PROFILE["on"]:
        start = time.perf_counter()
        result = fn()
        return time.perf_counter() - start, result
    prof = cProfile.Profile()
    start = time.perf_counter()
    result = prof.runcall(fn)
    seconds = time.perf_counter() - start
    for order in ("cumulative", "tottime"):
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats(order).print_stats(int(_PROFILE["top"]))
        lines = text.getvalue().splitlines()
        start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
        print(f"--- profile of {label} ({seconds:.3f} s under the profiler), top {order} ---")
        print("\n".join(line for line in lines[start:] if line.strip()))
    return seconds, result


def run(cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Run a command, fail loudly if it fails, and return its wall time in seconds."""
    start = time.perf_counter()
    out = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}) in {cwd}:\n{out.stdout}\n{out.stderr}")
    return seconds


def dvc_env() -> dict[str, str]:
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATER": "1"}


class Dvc:
    """A scratch git + DVC repository; times ``dvc`` commands run in it (each a fresh process)."""

    def __init__(self, exe: str, folder: Path):
        self.exe, self.folder = exe, folder
        folder.mkdir(parents=True, exist_ok=True)
        # DVC's per-repository site cache (state, index) goes next to the scratch repository, not /var/tmp
        self.env = {**dvc_env(), "DVC_SITE_CACHE_DIR": str(folder.parent / f"{folder.name}-dvc-site-cache")}
        for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "bench@example.com"],
                    ["git", "config", "user.name", "bench"], ["git", "config", "commit.gpgsign", "false"],
                    [exe, "init", "-q"], [exe, "config", "core.analytics", "false"],
                    ["git", "add", ".dvc", ".dvcignore"], ["git", "commit", "-q", "-m", "dvc init"]):
            run(cmd, folder, self.env)

    def dvc(self, *args: str) -> float:
        return run([self.exe, *args], self.folder, self.env)

    def git_commit(self, message: str, *paths: str) -> float:
        """``git add`` + ``git commit`` (when anything changed); returns the seconds taken."""
        start = time.perf_counter()
        run(["git", "add", *paths], self.folder, self.env)
        if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=self.folder).returncode:
            run(["git", "commit", "-q", "-m", message], self.folder, self.env)
        return time.perf_counter() - start

    def cache_bytes(self) -> int:
        cache = self.folder / ".dvc" / "cache"
        return dir_bytes(cache) if cache.exists() else 0


def dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def read_all(path: Path) -> int:
    """Read every file under ``path`` (to bring it into the page cache); returns the bytes read."""
    n = 0
    files = [path] if path.is_file() else [Path(d) / f for d, _, fs in os.walk(path) for f in fs]
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(8 << 20):
                n += len(chunk)
    return n


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def pct(before: int, after: int) -> float | None:
    return None if before <= 0 else 100.0 * (after - before) / before


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2f}%"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b <= 0 else f"{a / b:.1f}x"


def yes_no(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    for i, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        if i == 0:
            print(line)
    print()


def make_rows(seed: int, start: int, n: int) -> Any:
    """``n`` rows of a 20-column table (8 float64, 6 int64 with ``id`` and ``label``, 3 strings, 3
    dictionary strings), ids ``start..start+n``; deterministic for a given seed."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n, dtype=np.int64)
    cols: dict[str, Any] = {"id": ids}
    for i in range(8):
        cols[f"f{i}"] = rng.standard_normal(n)
    cols["label"] = rng.integers(0, 10, n, dtype=np.int64)
    for i in range(4):
        cols[f"i{i}"] = rng.integers(-(10**9), 10**9, n, dtype=np.int64)
    letters = rng.integers(97, 123, (n, 12), dtype=np.uint8)
    cols["name"] = pa.array(letters.view("S12").ravel()).cast(pa.string())
    cols["path"] = pa.array([f"img/{i % 100}/{i}.jpg" for i in ids.tolist()], pa.string())
    lengths = rng.integers(4, 48, n, dtype=np.int32)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    text = rng.integers(97, 123, int(offsets[-1]), dtype=np.uint8)
    cols["text"] = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))
    for i, m in enumerate((10, 100, 1000)):
        vocab = pa.array([f"cat{i}_{j}" for j in range(m)], pa.string())
        codes = pa.array(rng.integers(0, m, n, dtype=np.int32))
        cols[f"cat{i}"] = pa.DictionaryArray.from_arrays(codes, vocab)
    return pa.table(cols)


def run_measured(cmd: list[str]) -> tuple[str, int, float]:
    """Run ``cmd`` as a child, polling its RSS every 20 ms: its stdout, peak RSS and wall seconds."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    watched, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"the child failed ({proc.returncode}):\n{out}")
    return out, peak, wall
