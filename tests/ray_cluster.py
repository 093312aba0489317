"""A local Ray cluster of two nodes for tests and benchmarks: a head and a worker, each `ray start --block` in its
own process (its own temp folder, one CPU), stopped by their process ids (SIGTERM: each stops the processes it
started), never by `ray stop` (which would stop every Ray of this machine)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a cluster on the loopback interface of a test: no token (Ray turns token authentication on by itself when it
# finds ~/.ray/auth_token, which a local `ray.init()` writes); the driver needs the same in its environment
AUTH = {"RAY_AUTH_MODE": "disabled"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_command() -> list[str]:
    ray = Path(sys.executable).with_name("ray")
    return [str(ray)] if ray.exists() else [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]


class LocalCluster:
    """Two Ray nodes on this machine; ``address`` is the head's ``HOST:PORT``. Use as a context manager."""

    def __init__(self, cpus_per_node: int = 1, *, object_store_bytes: int = 200 * 2**20):
        self.cpus = cpus_per_node
        self.object_store_bytes = object_store_bytes
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.folders: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def _env(self) -> dict[str, str]:
        paths = [str(ROOT / "src"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "RAY_USAGE_STATS_ENABLED": "0", **AUTH}

    def _start(self, *args: str) -> None:
        folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths live under it
        self.folders.append(folder)
        with open(Path(folder) / "start.log", "wb") as log:  # the process writes to its own copy of the file
            self.procs.append(subprocess.Popen(
                [*_ray_command(), "start", *args, "--num-cpus", str(self.cpus), "--temp-dir", folder, "--block",
                 "--object-store-memory", str(self.object_store_bytes), "--disable-usage-stats"],
                stdout=log, stderr=subprocess.STDOUT, env=self._env(), start_new_session=True))

    def __enter__(self) -> LocalCluster:
        try:
            self._start("--head", "--port", str(self.port), "--include-dashboard=false")
            self._wait_for_start(0)
            self._start("--address", self.address)
            self._wait_for_start(1)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_for_start(self, i: int, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.procs[i].poll() is not None:
                raise RuntimeError(f"Ray node {i} exited: {self.log(i)}")
            if "Ray runtime started" in self.log(i):
                return
            time.sleep(0.3)
        raise RuntimeError(f"Ray node {i} did not start within {timeout} s: {self.log(i)}")

    def wait_for_nodes(self, ray: object, n: int = 2, timeout: float = 90) -> list[str]:
        """The ids of the ``n`` alive nodes, once they are (the driver connected with ``ray.init``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            alive = [node["NodeID"] for node in ray.nodes() if node["Alive"]]  # type: ignore[attr-defined]
            if len(alive) >= n:
                return alive
            time.sleep(0.5)
        raise RuntimeError(f"only {len(alive)} of {n} Ray nodes came up within {timeout} s: {self.log(1)}")

    def log(self, i: int) -> str:
        path = Path(self.folders[i]) / "start.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):  # the worker first, then the head
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is the processes it started
                proc.wait(timeout=10)
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)
