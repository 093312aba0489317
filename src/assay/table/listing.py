"""The files of a dataset folder and the stat cache over them, without Arrow: a re-add of a folder that did not
change is told from the file system and two small files, so that the command line answers it without
importing pyarrow or numpy (a fifth of a second each time).

A stat cache, like git's index, remembers the address of every file stored from a folder by (size, mtime,
inode). Beside it, a summary says what the whole folder was when the snapshot was written: a digest of every
path and stat, and the digest of the listing it gave (paths and addresses). When the folder's stats digest the
same, its listing is known without reading the snapshot.
"""

from __future__ import annotations

import json
import os
import stat
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from blake3 import blake3

from assay.errors import InputError
from assay.store import hash_bytes
from assay.store.fs import atomic_write

if TYPE_CHECKING:
    import pyarrow as pa

SUMMARY_FORMAT = 1


@dataclass
class Listing:
    """The files found in a dataset folder, column by column, in tree order (names sorted per folder)."""

    rels: list[str] = field(default_factory=list)
    fulls: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    mtimes: list[int] = field(default_factory=list)
    inodes: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rels)

    def stat_digest(self) -> str:
        """BLAKE3 over every path and its (size, mtime, inode), in order: equal while no file was touched."""
        h = blake3()
        h.update(len(self).to_bytes(8, "little"))
        h.update("\0".join(self.rels).encode())
        h.update(array("q", self.sizes).tobytes())
        h.update(array("q", self.mtimes).tobytes())
        h.update(array("Q", self.inodes).tobytes())
        return h.hexdigest()


class StatCache:
    """Per folder, the address of every file stored from it, valid while size, mtime and inode match.

    One Arrow IPC snapshot per folder (named by a hash of its absolute path), replaced atomically, and its
    summary (JSON) beside it. Only the snapshot's reading and writing import Arrow.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _file(self, root: Path, suffix: str = ".arrow") -> Path:
        return self.folder / f"{hash_bytes(str(root.resolve()).encode())[:32]}{suffix}"

    def whole(self, root: Path, files: Listing) -> str | None:
        """The listing digest of ``files`` (see ``listing_digest``) when the summary knows the folder exactly as
        it is, else None. Reads one small file; no file of the folder."""
        try:
            summary = json.loads(self._file(root, ".json").read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(summary, dict) or summary.get("format") != SUMMARY_FORMAT:
            return None
        if summary.get("stat") != files.stat_digest() or not isinstance(summary.get("listing"), str):
            return None
        return str(summary["listing"])

    def note_whole(self, root: Path, files: Listing, listing: str) -> None:
        """Record that the folder, with these stats, gives the listing of digest ``listing``."""
        doc = {"format": SUMMARY_FORMAT, "stat": files.stat_digest(), "listing": listing}
        atomic_write(self._file(root, ".json"), json.dumps(doc).encode(), durable=False)

    def lookup(self, root: Path, files: Listing) -> dict[str, str]:
        """Cached addresses (by relative path) of the files whose stat still matches."""
        import numpy as np
        import pyarrow as pa

        try:
            with pa.memory_map(str(self._file(root))) as source:
                snap = pa.ipc.open_file(source).read_all()
        except (FileNotFoundError, pa.ArrowInvalid):
            return {}
        rels = snap.column("rel").to_pylist()
        if rels == files.rels:  # the usual case: same files, compare stats as arrays
            same = np.ones(len(rels), bool)
            for now, c in ((files.sizes, "size"), (files.mtimes, "mtime_ns"), (files.inodes, "inode")):
                same &= np.array(now, dtype=np.int64) == snap.column(c).to_numpy()
            oids = snap.column("oid").to_pylist()
            return {rels[i]: oids[i] for i in np.flatnonzero(same).tolist()}
        known = {r: (s, m, i, o) for r, s, m, i, o in zip(*(snap.column(c).to_pylist() for c in _SNAP), strict=True)}
        hits = {}
        for rel, size, mtime, inode in zip(files.rels, files.sizes, files.mtimes, files.inodes, strict=True):
            cached = known.get(rel)
            if cached is not None and cached[:3] == (size, mtime, inode):
                hits[rel] = cached[3]
        return hits

    def remember(self, root: Path, files: Listing, oids: list[str]) -> None:
        """Replace the folder's snapshot with ``files`` and their addresses, and its summary."""
        import numpy as np
        import pyarrow as pa

        rels, addresses = pa.array(files.rels, pa.string()), pa.array(oids, pa.string())
        snap = pa.table({"rel": rels, "size": np.array(files.sizes, np.int64),
                         "mtime_ns": np.array(files.mtimes, np.int64), "inode": np.array(files.inodes, np.int64),
                         "oid": addresses})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, snap.schema) as writer:
            writer.write_table(snap)
        atomic_write(self._file(root), sink.getvalue().to_pybytes(), durable=False)
        # after the snapshot: a crash between the two leaves an older summary, true of the folder it describes
        self.note_whole(root, files, listing_digest(rels, addresses))


_SNAP = ("rel", "size", "mtime_ns", "inode", "oid")


def listing_digest(paths: pa.Array, blobs: pa.Array) -> str:
    """BLAKE3 over the paths and blob addresses in order (their Arrow offsets and bytes)."""
    parts = [b for col in (paths, blobs) for b in col.buffers()[1:] if b is not None]
    return hash_bytes(b"".join(memoryview(b) for b in parts))


def source_digest(listing: str, labels: Path | None) -> str:
    """The digest of a folder's input: its listing, and the bytes of the labels file joined to it."""
    labels_digest = hash_bytes(labels.read_bytes()) if labels else ""
    return f"files:{listing}:{labels_digest}"


def scan_folder(root: Path) -> Listing:
    """Every regular file under ``root`` (hidden names skipped), refusing links that leave it."""
    root = root.resolve()
    if not root.is_dir():
        raise InputError(f"{_shown(str(root))} is not a folder")
    _check_utf8(str(root), str(root))
    files = Listing()
    _walk(root, root, "", files, set())
    return files


def _walk(root: Path, folder: Path, prefix: str, out: Listing, seen: set[str]) -> None:
    real = os.path.realpath(folder)
    if real in seen:
        return
    seen.add(real)
    base = str(folder)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in sorted(os.listdir(fd)):
            if name[0] == ".":
                continue
            _check_utf8(name, f"{base}/{name}")
            st = os.lstat(name, dir_fd=fd)  # one call per entry: type, size, mtime and inode
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                path = f"{base}/{name}"
                _check_link(root, Path(path), prefix + name)
                if os.path.isdir(path):  # a linked folder inside the dataset: its files are listed where they are
                    continue
                st = os.stat(path)
                mode = st.st_mode
            if stat.S_ISREG(mode):
                out.rels.append(prefix + name)
                out.fulls.append(f"{base}/{name}")
                out.sizes.append(st.st_size)
                out.mtimes.append(st.st_mtime_ns)
                out.inodes.append(st.st_ino)
            elif stat.S_ISDIR(mode):
                _walk(root, folder / name, f"{prefix}{name}/", out, seen)
    finally:
        os.close(fd)


def _check_utf8(name: str, path: str) -> None:
    """Refuse a name that is not valid UTF-8 (``os.listdir`` gives its bad bytes as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{_shown(path)}: the name is not valid UTF-8 (its bad bytes shown as \\xNN); assay "
                         "stores paths as UTF-8 text. Rename it and add again; nothing was added.") from None


def _shown(path: str) -> str:
    """A path printable as text, bytes that are not UTF-8 escaped as \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _check_link(root: Path, link: Path, rel: str) -> None:
    target = Path(os.path.realpath(link))
    if target != root and root not in target.parents:
        raise InputError(
            f"{rel} is a symbolic link to {target}, outside the dataset folder {root}. Copy the file into "
            "the folder, or remove the link; nothing was added."
        )
