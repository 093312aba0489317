"""Repair: replace damaged or missing objects with good bytes found in a source the user names.

A source is another repository (a folder holding ``.assay``, or a store folder itself), whose objects are
read verified by address, or any file or folder of plain files, each hashed to see whether it is an object
the repository lacks (the files of a folder dataset, a blob). Only bytes that hash to a wanted address are
written, so a wrong source can do no harm.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay._types import Progress
from assay.errors import AssayError, InputError
from assay.store.hashing import hash_file

if TYPE_CHECKING:
    from assay.repo.repository import Repository
    from assay.repo.upkeep import FsckReport



@dataclass
class RepairReport:
    wanted: int = 0
    repaired: list[str] = field(default_factory=list)
    still_damaged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.still_damaged

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "wanted": self.wanted, "repaired": self.repaired, "still_damaged": self.still_damaged}


def damaged_oids(report: FsckReport, repo: Repository) -> set[str]:
    """The objects fsck found corrupt or missing, with every object made of a damaged chunk."""
    wanted = set(report.corrupt) | {oid for oid, _ in report.missing}
    wanted |= {oid for oid, _ in report.unreadable if not oid.startswith("pack:")}  # e.g. a garbled codec byte
    for oid in list(repo.store.iter_oids()):
        try:
            if wanted.intersection(repo.store.children(oid)):
                wanted.add(oid)
        except AssayError:
            wanted.add(oid)
    return wanted


def repair(repo: Repository, source: str | os.PathLike[str], *, progress: Progress | None = None) -> RepairReport:
    """Run fsck, then write every damaged or missing object found in ``source`` again."""
    src = Path(source)
    if not src.exists():
        raise InputError(f"repair source {src} does not exist; name a copy of the repository (a folder with "
                         ".assay), or a file or folder holding the original files")
    wanted = damaged_oids(repo.fsck(progress=progress), repo)
    report = RepairReport(wanted=len(wanted))
    found = _from_store(src, wanted) if _store_root(src) else _from_files(src, wanted, progress)
    for oid, data in found:
        repo.store.repair(data)
        report.repaired.append(oid)
        wanted.discard(oid)
    report.still_damaged = sorted(wanted)
    return report


def _store_root(src: Path) -> Path | None:
    for root in (src / ".assay", src):
        if (root / "objects").is_dir() and (root / "packs").is_dir():
            return root
    return None


def _from_store(src: Path, wanted: set[str]) -> Iterator[tuple[str, bytes]]:
    from assay.store.local import LocalObjectStore

    root = _store_root(src)
    assert root is not None
    other = LocalObjectStore(root, durable=False)
    for oid in sorted(wanted):
        try:
            yield oid, other.get(oid)  # verified: damaged there too means not found
        except AssayError:
            continue


def _from_files(src: Path, wanted: set[str], progress: Progress | None) -> Iterator[tuple[str, bytes]]:
    files = [src] if src.is_file() else sorted(_walk(src))
    for i, path in enumerate(files):
        if progress and i % 256 == 0:
            progress("hashing source files", i, len(files))
        try:
            oid = hash_file(path)
        except OSError:
            continue
        if oid in wanted:
            yield oid, path.read_bytes()


def _walk(folder: Path) -> Iterable[Path]:
    for dirpath, _, names in os.walk(folder):
        for name in names:
            yield Path(dirpath) / name
