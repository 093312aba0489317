"""Shared fixtures: a fresh repository in a temporary folder, and small tables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import assay

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
