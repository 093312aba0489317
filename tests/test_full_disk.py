"""A full disk (or a failing write) anywhere in a write leaves the repository as it was, and a retry heals it.

Two ways of filling the disk: a fault injected at the store's two write calls (ENOSPC after N bytes, for many N
across add, commit, compact, ingest and gc), and a real small tmpfs driven through the command line.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import assay
from assay.errors import OutOfSpace
from assay.store import fs
from assay.store.local import CHUNK_FROM
from tests.conftest import make_table


class _Budget:
    """Lets ``limit`` bytes through the store's write calls, then fails them with ENOSPC (or writes short)."""

    def __init__(self, limit: int | None, short: bool = False):
        self.limit, self.short, self.used = limit, short, 0

    def _take(self, want: int) -> int:
        if self.limit is not None and self.used + want > self.limit:
            left = self.limit - self.used
            if left <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            want = left
        if self.short and want > 1:
            want = max(1, want // 2)  # a write that stops short, as os.write may
        self.used += want
        return want

    def write(self, fd: int, data: memoryview) -> int:
        n = self._take(len(data))
        return os.write(fd, data[:n])

    def writev(self, fd: int, views: list[memoryview]) -> int:
        n = self._take(sum(len(v) for v in views))
        return os.write(fd, b"".join(bytes(v) for v in views)[:n])


@pytest.fixture
def budget(monkeypatch: pytest.MonkeyPatch) -> Callable[[int | None, bool], _Budget]:
    def install(limit: int | None, short: bool = False) -> _Budget:
        b = _Budget(limit, short)
        monkeypatch.setattr(fs, "_write", b.write)
        monkeypatch.setattr(fs, "_writev", b.writev)
        return b

    return install


def _state(repo: assay.Repo) -> dict[str, object]:
    """What a user sees of the repository: refs, and every dataset of main as a sorted table."""
    refs = {r.name: r.commit for r in repo.catalog.list_refs() if not r.name.startswith("staging/")}  # the gate's
    data = {}
    for name in repo.datasets("main"):
        t = repo.dataset(name, ref="main").to_arrow()
        data[name] = sorted(repr(row) for row in t.to_pylist())
    return {"refs": refs, "data": data}


def _assert_intact(repo: assay.Repo) -> None:
    report = repo.fsck()
    assert report.ok, report.to_dict()
    assert not list((repo.dir / "tmp").iterdir()), "a temporary file was left behind"
    assert not [p for p in (repo.dir / "packs").glob("*.pack") if not p.with_suffix(".idx").exists()]


def _image_folder(folder: Path, n: int, big: int = 0) -> None:
    rng = np.random.default_rng(n)
    for i in range(n):
        (folder / ("a" if i % 2 else "b")).mkdir(parents=True, exist_ok=True)
        (folder / ("a" if i % 2 else "b") / f"{i}.bin").write_bytes(rng.bytes(3000 + i))
    if big:
        (folder / "a" / "big.bin").write_bytes(rng.bytes(big))


OPERATIONS: dict[str, Callable[[assay.Repo, Path], object]] = {
    "add table + commit": lambda r, d: (r.add("t", make_table(3000, seed=5, start=500), key="id", mode="upsert"),
                                        r.commit("upsert")),
    "add folder (small and chunked files) + commit": lambda r, d: (r.add("files", d / "files2"), r.commit("files")),
    "large blob commit": lambda r, d: (r.add("blob", d / "blobdir"), r.commit("blob")),
    "compact": lambda r, d: r.compact(),
    "gc": lambda r, d: r.gc(grace=0),
}


def _base(tmp_path: Path) -> assay.Repo:
    repo = assay.init(tmp_path / "repo")
    repo.add("t", make_table(2000), key="id")
    for i in range(3):
        repo.add("t", make_table(50, seed=i, start=2000 + 50 * i), key="id", mode="append")
        repo.commit(f"t{i}")  # several small fragments, for compact
    _image_folder(tmp_path / "files", 20)
    repo.add("files", tmp_path / "files")
    repo.commit("base")
    _image_folder(tmp_path / "files2", 30)
    (tmp_path / "blobdir").mkdir()
    (tmp_path / "blobdir" / "large.bin").write_bytes(np.random.default_rng(1).bytes(CHUNK_FROM + (3 << 20)))
    shutil.copytree(tmp_path / "files", tmp_path / "files2", dirs_exist_ok=True)
    return repo


@pytest.mark.slow
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_enospc_at_any_point_leaves_the_repository_as_it_was(
        tmp_path: Path, budget: Callable[[int | None, bool], _Budget], operation: str) -> None:
    repo = _base(tmp_path)
    run = OPERATIONS[operation]
    before = _state(repo)
    # how many bytes the operation writes, measured on a copy
    shutil.copytree(repo.dir.parent, tmp_path / "probe")
    probe = assay.Repo(tmp_path / "probe")
    meter = budget(None)
    run(probe, tmp_path)
    probe.close()
    total = meter.used
    assert total > 0 or operation == "gc"
    limits = sorted({0, 1, 100, 4096} | {int(total * f) for f in np.linspace(0.05, 0.97, 9)}) if total else [0]
    failures, succeeded = 0, False
    for limit in limits:
        budget(limit)
        try:
            run(repo, tmp_path)
        except OutOfSpace as e:
            failures += 1
            assert "Nothing was changed" in str(e) and "Free space" in str(e)
            budget(None)
            repo.close()
            repo = assay.Repo(tmp_path / "repo")
            assert _state(repo) == before, f"a failed {operation} at {limit} bytes changed the repository"
            _assert_intact(repo)
            repo.reset()  # an add that succeeded before the commit failed stays staged: drop it
            continue
        succeeded = True  # enough room: it went through
        break
    assert failures >= (1 if total else 0)
    if not succeeded:
        budget(None)  # space is back: the retry succeeds
        run(repo, tmp_path)
    _assert_intact(repo)
    assert _state(repo) != before or operation in ("gc", "compact")
    repo.close()


def test_short_writes_still_write_every_byte(tmp_path: Path, budget: Callable[[int | None, bool], _Budget]) -> None:
    budget(None, True)
    repo = _base(tmp_path)
    repo.add("blob", tmp_path / "blobdir")
    repo.commit("blob")
    _assert_intact(repo)
    assert repo.dataset("blob").read_blob(repo.dataset("blob").to_arrow()["blob"][0].as_py()) == \
        (tmp_path / "blobdir" / "large.bin").read_bytes()


def test_enospc_during_ingest_changes_neither_branch(tmp_path: Path,
                                                     budget: Callable[[int | None, bool], _Budget]) -> None:
    from assay.gate import ingest
    from tests.test_gate import FAST, samples

    repo = assay.init(tmp_path / "repo")
    ingest(repo, samples(200), into="points", key="id", policy=FAST)
    before = _state(repo)
    meter = budget(None)
    shutil.copytree(repo.dir.parent, tmp_path / "probe")
    probe = assay.Repo(tmp_path / "probe")
    ingest(probe, samples(60, start=200), into="points", policy=FAST)
    probe.close()
    failures = 0
    for frac in (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, None):  # objects written by a failed try count for the next
        budget(None if frac is None else int(meter.used * frac))
        try:
            report = ingest(repo, samples(60, start=200), into="points", policy=FAST)
        except OutOfSpace:
            failures += 1
            budget(None)
            assert _state(repo) == before  # neither main nor the quarantine moved
            _assert_intact(repo)
            continue
        break
    assert failures >= 2 and report.ok and report.accepted > 0
    _assert_intact(repo)


# -- an existing object is trusted only when whole ------------------------------------------------------------------

def _loose_files(repo: assay.Repo) -> list[Path]:
    return [p for p in (repo.dir / "objects").rglob("*") if p.is_file()]


def test_a_truncated_object_is_replaced_when_its_bytes_are_written_again(repo: assay.Repo, tmp_path: Path) -> None:
    data = make_table(5000)
    repo.add("t", data, key="id")
    repo.commit("one")
    victim = max(_loose_files(repo), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # as a full disk used to leave it
    assert not repo.fsck().ok
    oid = victim.parent.name + victim.name
    healed = repo.store.put(_original_bytes(tmp_path, data, oid))
    assert healed == oid and repo.fsck().ok


def _original_bytes(tmp_path: Path, data: pa.Table, oid: str) -> bytes:
    """The bytes of ``oid`` as a second repository writes them from the same data."""
    twin = assay.init(tmp_path / "twin")
    twin.add("t", data, key="id")
    twin.commit("one")
    out = twin.store.get(oid)
    twin.close()
    return out


def test_a_retried_add_after_damage_repairs_the_version(repo: assay.Repo, tmp_path: Path) -> None:
    """The reported bug: the retry found the name present, skipped the write and committed a damaged version."""
    (tmp_path / "in").mkdir()
    pq.write_table(make_table(4000), tmp_path / "in" / "t.parquet")
    repo.add("t", tmp_path / "in" / "t.parquet", key="id")
    for victim in _loose_files(repo):  # every staged object cut short
        victim.write_bytes(victim.read_bytes()[:7])
    repo.close()
    repo = assay.Repo(repo.dir.parent)
    repo.reset()
    repo.add("t", tmp_path / "in" / "t.parquet", key="id")
    repo.commit("retry")
    assert repo.fsck().ok
    assert repo.dataset("t").to_arrow().num_rows == 4000
    repo.close()


def test_fsck_repair_from_a_copy_and_from_the_original_files(tmp_path: Path) -> None:
    repo = assay.init(tmp_path / "repo")
    _image_folder(tmp_path / "files", 10, big=CHUNK_FROM + (1 << 20))
    repo.add("files", tmp_path / "files")
    repo.add("t", make_table(1000), key="id")
    repo.commit("one")
    shutil.copytree(tmp_path / "repo", tmp_path / "backup")
    for i, p in enumerate(_loose_files(repo)):
        p.write_bytes(b"\x00garbage" if i % 2 else b"garbage")  # a wrong payload, or an unknown codec byte
    packs = list((repo.dir / "packs").glob("*.pack"))
    for p in packs:  # damage one byte of every pack: packed objects and chunks
        raw = bytearray(p.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        p.write_bytes(bytes(raw))
    assert not repo.fsck().ok
    from_files = repo.repair(tmp_path / "files")
    assert from_files.repaired and from_files.still_damaged  # the table's objects are not among the files
    fixed = repo.repair(tmp_path / "backup")
    assert fixed.ok and repo.fsck().ok
    assert repo.dataset("t").to_arrow().num_rows == 1000
    with pytest.raises(assay.errors.InputError, match="does not exist"):
        repo.repair(tmp_path / "nowhere")
    repo.close()


# -- a real full filesystem, through the command line ---------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must be able to mount a tmpfs (runs as root): {done.stderr.decode()}")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _assay(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assay.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})


def _parquet(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    strings = [f"{v:x}" for v in rng.integers(0, 1 << 60, n)]
    pq.write_table(pa.table({"id": np.arange(n), "x": rng.random(n), "s": strings}), path, compression="none")


@pytest.mark.slow
def test_a_full_tmpfs_is_a_clear_error_and_reads_still_work(small_disk: Path, tmp_path: Path) -> None:
    _parquet(tmp_path / "small.parquet", 1000, 0)
    _parquet(tmp_path / "big.parquet", 300_000, 1)  # about 10 MB: does not fit after the first
    assert _assay(small_disk, "init", ".").returncode == 0
    assert _assay(small_disk, "add", "s", str(tmp_path / "small.parquet")).returncode == 0
    assert _assay(small_disk, "commit", "-m", "one").returncode == 0
    failed = _assay(small_disk, "add", "big", str(tmp_path / "big.parquet"))
    assert failed.returncode == 1, failed.stderr
    assert failed.stderr.startswith("error: no space left") and "Traceback" not in failed.stderr
    assert "Nothing was changed" in failed.stderr
    assert not list((small_disk / ".assay" / "tmp").iterdir())
    # fill what is left: read-only commands still work on a disk with no byte free
    with open(small_disk / "filler", "wb") as f, pytest.raises(OSError):
        while True:
            f.write(b"\0" * (1 << 20))
            f.flush()
    os.sync()
    for args in (["status"], ["log"], ["fsck"], ["show", "HEAD"], ["datasets"],
                 ["export", "s", "--to", str(tmp_path / "out.parquet")]):
        done = _assay(small_disk, *args)
        assert done.returncode == 0, (args, done.stderr)
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 1000
    blocked = _assay(small_disk, "commit", "-m", "nothing fits")
    assert "Traceback" not in blocked.stderr and blocked.returncode != 0
    (small_disk / "filler").unlink()
    shutil.rmtree(small_disk / ".assay" / "tmp")
    (small_disk / ".assay" / "tmp").mkdir()
    assert _assay(small_disk, "gc", "--grace", "0").returncode == 0
    _parquet(tmp_path / "mid.parquet", 100_000, 2)  # fits once the space is back
    assert _assay(small_disk, "add", "mid", str(tmp_path / "mid.parquet")).returncode == 0
    assert _assay(small_disk, "commit", "-m", "mid").returncode == 0
    check = _assay(small_disk, "fsck")
    assert check.returncode == 0 and "ok" in check.stdout
