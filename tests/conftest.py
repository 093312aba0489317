"""Shared fixtures: a fresh repository in a temporary folder, and small tables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import assay
from tests.s3_server import CREDENTIALS, MotoServer

os.environ.setdefault("ASSAY_AUTHOR", "Test <test@example.com>")


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[assay.Repo]:
    r = assay.init(tmp_path / "repo")
    yield r
    r.close()


def make_table(n: int = 100, seed: int = 0, start: int = 0) -> pa.Table:
    """A keyed table with numeric, string and categorical columns."""
    rng = np.random.default_rng(seed)
    return pa.table({
        "id": pa.array(np.arange(start, start + n), pa.int64()),
        "x": rng.random(n),
        "count": rng.integers(0, 100, n),
        "name": [f"sample-{i}" for i in range(start, start + n)],
        "label": pa.array(rng.choice(["cat", "dog", "bird"], n)).dictionary_encode(),
    })


@pytest.fixture
def table() -> pa.Table:
    return make_table()


def write_images(folder: Path, brightness: dict[str, int], per_label: int, *, size: int = 8, seed: int = 0) -> None:
    """Noisy grey PNGs in one sub-folder per label, each label at its own ``brightness`` (0-205)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, level in brightness.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            pixels = (rng.random((8, 8)) * 50 + level).astype(np.uint8)
            Image.fromarray(pixels).resize((size, size)).save(folder / label / f"{i}.png")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    """moto's S3 server in its own process on 127.0.0.1 (credentials: tests.s3_server.CREDENTIALS)."""
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_bucket(s3_server: MotoServer) -> str:
    """A bucket on the session's S3 server; tests keep apart by prefix."""
    return s3_server.make_bucket()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test server's credentials in the environment (the AWS chain the backend reads)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
