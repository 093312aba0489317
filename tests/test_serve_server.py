"""`assay serve` as a real uvicorn process on 127.0.0.1: batching under load, and SIGKILL under load loses no
acknowledged prediction and writes none twice."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import assay
from serve_helpers import digits, free_port, make_repo

X, _ = digits()
BODY = {"X": X[0].tolist()}


def _start(folder: Path, port: int, durability: str = "sync", *, auth: bool = False) -> subprocess.Popen[bytes]:
    errors = folder.parent / f"server-{port}.err"
    with open(errors, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "assay.cli", "-C", str(folder), "serve", "digits", "--port",
                                 str(port), *([] if auth else ["--no-auth"]), "--flush-seconds", "0.3",
                                 "--flush-rows", "100", "--log-durability", durability],
                                stdout=subprocess.DEVNULL, stderr=f, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(errors.read_text())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not become ready")


def _load(port: int, acked: list[str], stop: threading.Event) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
        while not stop.is_set():
            try:
                r = c.post("/v1/models/digits/predict", json=BODY)
            except httpx.TransportError:
                return  # the server was killed
            if r.status_code == 200:
                acked.append(r.json()["request_id"])


def _metrics(port: int) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["sync", "batch"])
def test_sigkill_under_load_keeps_every_acknowledged_prediction_exactly_once(tmp_path: Path, durability: str) -> None:
    folder = make_repo(tmp_path / "repo")
    port = free_port()
    proc = _start(folder, port, durability)
    said = (folder.parent / f"server-{port}.err").read_text()
    assert "auth: OFF (--no-auth)" in said and "http://127.0.0.1:" in said
    acked: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(port, acked, stop)) for _ in range(12)]
    try:
        for t in threads:
            t.start()
        while len(acked) < 300:
            time.sleep(0.05)
        sizes = {name: value for name, _, value in _metrics(port)["assay_serve_batch_size"]}
        assert sizes["assay_serve_batch_size_sum"] > sizes["assay_serve_batch_size_count"]  # batches of > 1
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)  # mid-load, with rows buffered and likely a flush under way
        proc.wait(10)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        if proc.poll() is None:
            proc.kill()
    port = free_port()
    proc = _start(folder, port)  # replays what the killed one left
    try:
        httpx.post(f"http://127.0.0.1:{port}/v1/models/digits/predict", json=BODY, timeout=5).raise_for_status()
        waited = {s[1]["waited"]: s[2] for s in _metrics(port)["assay_serve_batches"] if s[0].endswith("_total")}
        assert waited == {"false": 1.0}  # a lone request on an idle server ran as soon as it was taken
    finally:
        proc.send_signal(signal.SIGTERM)  # a clean stop flushes the buffer
        proc.wait(30)
    with assay.Repo(folder) as repo:
        ids = repo.dataset("predictions.digits").to_arrow(["request_id"]).column(0).to_pylist()
        assert repo.fsck().ok
    assert len(ids) == len(set(ids))
    assert set(acked) <= set(ids), f"{len(set(acked) - set(ids))} acknowledged predictions were lost"
    assert len(ids) >= len(acked) + 1


@pytest.mark.slow
def test_ten_thousand_idle_connections_and_a_slow_client_do_not_stop_the_others(tmp_path: Path) -> None:
    import resource
    import socket

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 10_000 + 500
    assert hard >= need, f"the test needs {need} open files (ulimit -Hn is {hard})"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * need)), hard))  # the server inherits it
    folder = make_repo(tmp_path / "repo")
    port = free_port()
    proc = _start(folder, port)
    idle: list[socket.socket] = []
    try:
        for _ in range(10_000):  # connected, never a byte sent
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):  # connecting: the server accepts it in its own time
                s.connect(("127.0.0.1", port))
            idle.append(s)
        slow = socket.create_connection(("127.0.0.1", port), timeout=60)
        slow.sendall(b"POST /v1/models/digits/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"X\": [")  # and the rest of the body never comes
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            answers = [c.post("/v1/models/digits/predict", json=BODY) for _ in range(50)]
        assert [r.status_code for r in answers] == [200] * 50
        with slow:
            assert slow.recv(100).startswith(b"HTTP/1.1 408")  # the slow body is given up on, not waited for ever
        assert proc.poll() is None
    finally:
        for s in idle:
            s.close()
        proc.terminate()
        proc.wait(30)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
