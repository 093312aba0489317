"""moto's standalone S3 server in its own process on 127.0.0.1, for the tests and benchmarks of the S3 backend.

The tests talk to it over HTTP, as to any S3 endpoint; nothing is mocked inside the test process. It keeps
its data in memory: a server that is killed and started again comes back empty.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """``python -m moto.server`` on a free port of 127.0.0.1; ``env`` is added to its environment."""

    def __init__(self, port: int | None = None, env: dict[str, str] | None = None):
        self.port = port or free_port()
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> MotoServer:
        env = {**os.environ, **CREDENTIALS, **self.env}
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:  # until it answers HTTP
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto's server exited with {self.proc.returncode} before answering")
            try:
                with urllib.request.urlopen(self.url + "/moto-api/", timeout=1):
                    return self
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto's server did not answer on {self.url} in {timeout:.0f} s") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the server dies at once, in the middle of whatever it was doing."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def client(self, **kw: Any) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=kw.pop("key", "testing"),
                            aws_secret_access_key=kw.pop("secret", "testing"), **kw)

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"assay-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name
