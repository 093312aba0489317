"""A TCP relay in its own process: ``python -m tests.tcp_proxy LISTEN_PORT TARGET_PORT`` (both on 127.0.0.1).

The S3 endpoint as the client sees it, in front of moto's server (which keeps its data in memory and so cannot be
killed and started again with it): SIGKILL the relay and the endpoint dies mid-request, connections cut; start
it again on the same port and the endpoint comes back with every object it had.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(1 << 16):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def serve(listen: int, target: int) -> None:
    server = socket.create_server(("127.0.0.1", listen), reuse_port=False)
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(("127.0.0.1", target))
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


class Relay:
    """The relay as a child process; ``start`` waits until it answers HTTP through to the target."""

    def __init__(self, listen: int, target: int):
        self.listen, self.target = listen, target
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen}"

    def start(self) -> Relay:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.tcp_proxy", str(self.listen), str(self.target)])
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/moto-api/", timeout=1):
                    return self
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.kill()
                    raise RuntimeError(f"the relay on {self.url} did not answer") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
