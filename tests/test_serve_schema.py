"""schemathesis against the OpenAPI schema of a real `assay serve` process on 127.0.0.1 (its command line, run in
a process of its own): whatever it generates from the schema, valid bodies and bodies that break it, with a key
and without one, no response is a 5xx and every response matches the schema (status codes, content types,
bodies, headers)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from assay.serve import KeyStore
from serve_helpers import free_port, make_repo
from test_serve_server import _start

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    folder = make_repo(tmp_path_factory.mktemp("schema") / "repo")
    keys = KeyStore(folder / ".assay")
    key = keys.create("digits", "fuzz")
    keys.close()
    port = free_port()
    proc = _start(folder, port, auth=True)
    try:
        yield f"http://127.0.0.1:{port}", key
    finally:
        proc.terminate()
        proc.wait(30)


def _schemathesis(url: str, cwd: Path, *headers: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe, "schemathesis is in the dev extra: pip install -e '.[dev]'"
    args = [exe, "run", f"{url}/openapi.json", "--checks", "all", "--max-examples", "50", "--no-color",
            "--seed", "1", *[a for h in headers for a in ("-H", h)]]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("with_key", [True, False], ids=["with-key", "without-key"])
def test_no_5xx_and_every_response_matches_the_schema(server: tuple[str, str], with_key: bool,
                                                       tmp_path: Path) -> None:
    url, key = server
    run = _schemathesis(url, tmp_path, *([f"Authorization: Bearer {key}"] if with_key else []))
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "5 selected / 5 total" in run.stdout and "passed" in run.stdout
