"""The repository core: an object store plus a catalog, with datasets, commits, branches, tags and merges.

``Repository`` is the layer's class; ``assay.Repo`` (the only ``Repo``) builds on it and installs the suite
checker. A ``Repository`` never skips a suite silently: committing or merging a dataset that has a suite
needs a ``verifier`` (installed by ``assay.Repo``) or an explicit ``no_verify=True``, which the commit records;
without either it refuses (``CheckFailed``).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay._types import Progress
from assay.engines import Engine, default_engine
from assay.errors import (
    CheckFailed,
    ConflictError,
    InputError,
    MergeConflict,
    NotARepository,
    NothingToCommit,
    RefExists,
    RefNotFound,
    RepositoryExists,
)
from assay.repo import history, revisions
from assay.repo.catalog import Catalog, RefUpdate, config_url, open_catalog
from assay.repo.commits import Commit, merge_contents
from assay.repo.gitinfo import code_reference, default_author
from assay.repo.staging import AddMemo, StagedDataset, WorkState
from assay.store import LocalObjectStore, ObjectStore, is_oid
from assay.store.copies import LocalCopies
from assay.store.urls import open_store

if TYPE_CHECKING:  # the table layer (Arrow) is imported where it is used: status, log, branch and tag need none
    from assay.repo.workdir import QuickAdd
    from assay.table import DatasetDiff, DatasetVersion, Manifest, UpdateResult
    from assay.table.listing import Listing
    from assay.table.merge import Conflict

ASSAY_DIR = ".assay"
_IDEMPOTENT = ("replace", "upsert", "delete")  # modes whose result, given the same input again, stays as it is
CONFIG_FORMAT = 2  # 2: the store may be elsewhere (an older assay would ignore the store URL)
DEFAULT_STORE = "file://{assay_dir}"
DEFAULT_CATALOG = "sqlite:///{assay_dir}/catalog.db"
# Checks staged datasets before a commit: (repo, dataset -> manifest oid, dataset -> suite oid) -> what to
# record in the commit's meta; raises to refuse the commit. Installed by higher layers (assay.Repo).
Verifier = Callable[["Repository", dict[str, str], dict[str, str]], dict[str, Any]]


@dataclass(frozen=True)
class Status:
    """The working branch, its commit, and what is staged."""

    branch: str | None
    commit: str | None
    staged: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"branch": self.branch, "commit": self.commit, "staged": self.staged}


@dataclass(frozen=True)
class MergeResult:
    commit: str
    fast_forward: bool
    datasets: dict[str, str] = field(default_factory=dict)  # dataset -> "ours", "theirs" or "merged"
    up_to_date: bool = False  # the branch already held everything: nothing moved

    def to_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "fast_forward": self.fast_forward, "datasets": self.datasets,
                "up_to_date": self.up_to_date}


def init(path: str | os.PathLike[str] = ".", *, catalog_url: str | None = None,
         store_url: str | None = None) -> Repository:
    """Create a repository in ``path`` (a ``.assay`` folder) and return it.

    ``store_url`` puts the objects elsewhere (``s3://bucket/prefix``), ``catalog_url`` the refs
    (``postgresql://host/db``); the folder keeps this working copy's HEAD and staging. Both are opened
    (and so checked) before anything is written."""
    root = Path(path).resolve()
    root.mkdir(parents=True, exist_ok=True)
    target = root / ASSAY_DIR
    if target.exists():
        raise RepositoryExists(f"{root} already holds an assay repository ({target}); use it, or remove that folder")
    tmp = Path(tempfile.mkdtemp(prefix=".assay-init-", dir=root))
    try:
        # URLs only: a password in catalog_url is not written (see assay.repo.catalog.urls for where it comes from)
        if store_url is not None:
            open_store(store_url)  # a bucket that does not exist or refused credentials: a clear error, now
        config = {"format": CONFIG_FORMAT if store_url else 1, "store": store_url or DEFAULT_STORE,
                  "catalog": config_url(catalog_url or DEFAULT_CATALOG)}
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        (tmp / "HEAD").write_text(json.dumps({"branch": "main"}))
        LocalObjectStore(tmp)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Repository(root)


def find_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / ASSAY_DIR / "config.json").exists():
            return folder
    raise NotARepository(f"no assay repository in {start} or any parent folder; create one with `assay init`")


class Repository:
    """The core of an assay repository at ``path`` or a parent folder (users open ``assay.Repo``).

    ``engine`` runs the work split by fragment (default: in-process threads); ``verifier`` checks the suites
    of committed and merged datasets (see the module docstring).
    """

    def __init__(self, path: str | os.PathLike[str] = ".", *, store: ObjectStore | None = None,
                 catalog: Catalog | None = None, engine: Engine | None = None, verifier: Verifier | None = None):
        self.root = find_root(Path(path).resolve())
        self.dir = self.root / ASSAY_DIR
        config = json.loads((self.dir / "config.json").read_text())
        if config.get("format", 0) > CONFIG_FORMAT:
            from assay.errors import FormatError

            raise FormatError(f"{self.dir} was made by a newer assay (format {config['format']}); upgrade assay")
        here = str(self.dir)
        self.store = store or open_store(config.get("store", DEFAULT_STORE).replace("{assay_dir}", here))
        # commits and manifests read or written once are read again from the working folder, not the network
        self.copies = LocalCopies(self.dir / "copies") if self.store.remote else None
        self.catalog = catalog or open_catalog(config["catalog"].replace("{assay_dir}", here))
        if getattr(self.catalog, "migrated_from", None) is not None:  # upgraded just now: fill in commit parents
            history.backfill(self.catalog, self.read_commit)
        self.work = WorkState(self.dir)
        self.engine = engine or default_engine()
        self.verifier = verifier

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.root}>"

    @functools.cached_property
    def _memo(self) -> AddMemo:
        """The cache of adds, opened by the first add: the commands that do not add never open its file."""
        return AddMemo(self.dir / "cache.db")

    def close(self) -> None:
        self.catalog.close()
        close = getattr(self.store, "close", None) if hasattr(self.store, "remote_name") else None
        if close is not None:  # a partial clone's store (assay.remote.partial): its connection to the remote
            close()
        if "_memo" in self.__dict__:
            self._memo.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- objects ---------------------------------------------------------------------------------------------

    def read_commit(self, oid: str) -> Commit:
        return Commit.from_bytes(self._read_small(oid), oid)

    def read_manifest(self, oid: str) -> Manifest:
        from assay.table.manifest import Manifest

        return Manifest.from_bytes(self._read_small(oid), oid)

    def _read_small(self, oid: str) -> bytes:
        """A commit or manifest: from the local copy when the store is remote and one was kept."""
        copies = self.copies
        if copies is None or not is_oid(oid):
            return self.store.get(oid)
        data = copies.get(oid)
        if data is None:
            data = self.store.get(oid)
            copies.keep(oid, data)
        return data

    def write_manifest(self, m: Manifest) -> str:
        """Store the dataset version ``m``; returns its oid (stages nothing)."""
        return self._put_small(m.to_bytes())

    def _put_small(self, data: bytes) -> str:
        """Store a commit or manifest (and keep a local copy when the store is remote)."""
        oid = self.store.put(data)
        if self.copies is not None:
            self.copies.keep(oid, data)
        return oid

    # -- HEAD and revisions ------------------------------------------------------------------------------------

    @property
    def branch(self) -> str | None:
        """The working branch, or None when HEAD is detached at a commit."""
        return self.work.read_head().get("branch")

    def head(self) -> str | None:
        """The commit HEAD points at (None on a branch with no commits yet)."""
        head = self.work.read_head()
        if "commit" in head:
            return head["commit"]
        ref = self.catalog.get_ref(head["branch"])
        return ref.commit if ref else None

    def resolve(self, rev: str | None = None) -> str:
        """The commit a revision names: branch, tag, commit prefix, ``~N``, ``^N``, ``@{time}`` (see revisions)."""
        spec = rev or "HEAD"
        r = revisions.parse_revision(spec)
        oid = self._resolve_name(r.base, spec)
        if r.when is not None:
            oid = self._at_time(oid, revisions.parse_time(r.when), spec)
        return revisions.walk_steps(oid, r.steps, lambda o: self.read_commit(o).parents, spec)

    def _resolve_name(self, name: str, spec: str) -> str:
        if name == "HEAD":
            oid = self.head()
            if oid is None:
                raise RefNotFound("there are no commits yet: add data with `assay add`, then `assay commit`")
            return oid
        ref = self.catalog.get_ref(name) or (self.catalog.get_ref(f"remotes/{name}") if "/" in name else None)
        if ref:  # a branch or tag; REMOTE/BRANCH names what was last fetched of a remote's branch
            return ref.commit
        if len(name) >= 4 and all(c in "0123456789abcdef" for c in name):
            found = self.catalog.find_commits(name)
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise RefNotFound(f"commit prefix {name!r} is ambiguous; give more characters")
        raise RefNotFound(f"unknown revision {spec!r}: not a branch, tag or commit. See `assay branch`, "
                          "`assay tag` and `assay log`")

    def _at_time(self, oid: str, when: float, spec: str) -> str:
        current: str | None = oid
        while current:
            c = self.read_commit(current)
            if c.time <= when:
                return current
            current = c.parents[0] if c.parents else None
        raise RefNotFound(f"{spec!r}: there is no commit that old")

    # -- datasets ----------------------------------------------------------------------------------------------

    def datasets(self, rev: str | None = None) -> dict[str, str]:
        """Dataset name -> manifest oid at a revision (HEAD plus staged changes when ``rev`` is None)."""
        if rev is None:
            head = self.head()
            out = dict(self.read_commit(head).datasets) if head else {}
            for name, s in self.work.read_staging().datasets.items():
                if s.manifest:
                    out[name] = s.manifest
                else:
                    out.pop(name, None)
            return out
        return dict(self.read_commit(self.resolve(rev)).datasets)

    def dataset(self, name: str, ref: str | None = None) -> DatasetVersion:
        """A dataset at a revision; with ``ref`` None, the working version (staged, else HEAD)."""
        if ref is None and "@" in name:
            name, ref = revisions.split_dataset_rev(name)
        table = self.datasets(ref)
        if name not in table:
            where = f"at {ref!r}" if ref else "in the working version"
            raise RefNotFound(f"no dataset {name!r} {where}; datasets: {sorted(table) or 'none'}")
        from assay.table import DatasetVersion

        return DatasetVersion(self.store, self.read_manifest(table[name]), commit=self.resolve(ref) if ref else None)

    def add(self, name: str, source: Any, *, key: Sequence[str] | str | None = None, mode: str = "replace",
            labels: str | os.PathLike[str] | None = None, format: str | None = None,
            progress: Progress | None = None, engine: Engine | None = None,
            files: Listing | None = None) -> UpdateResult:
        """Stage a change to dataset ``name`` from a file, folder, or frame (see ``MODES``). ``files``: a scan of
        the folder just taken (``quick_add``'s), not taken again."""
        with self.work.locked():
            staging = self.work.read_staging()
            head = self.head()
            committed = self.read_commit(head).datasets.get(name) if head else None
            staged = staging.datasets.get(name)
            base_oid = staged.manifest if staged else committed
            new_oid, result = self.build_version(name, source, base=base_oid, key=key, mode=mode, labels=labels,
                                                 format=format, progress=progress, engine=engine, files=files)
            if new_oid == committed:
                staging.datasets.pop(name, None)
            elif new_oid != base_oid or staged:
                summary = {"added": result.added, "removed": result.removed, "updated": result.updated,
                           "rows": result.manifest.rows, "mode": mode}
                if staged:
                    summary = _merge_summaries(staged.summary, summary)
                staging.datasets[name] = StagedDataset(new_oid, committed, summary)
            self.work.write_staging(staging)
        if mode == "replace" and isinstance(source, str | os.PathLike) and Path(source).is_dir():
            from assay.repo.workdir import record_folder

            record_folder(self, name, source)  # the whole dataset: its working folder, for status and restore
        return result

    def quick_add(self, name: str, folder: str | os.PathLike[str], *, key: Sequence[str] | str | None = None,
                  mode: str = "replace", labels: str | os.PathLike[str] | None = None) -> QuickAdd:
        """Add a folder that the stat cache alone shows unchanged, reading no file (see ``workdir.quick_add``);
        ``result.rows`` is None when it could not tell, and ``add(..., files=result.files)`` goes on."""
        from assay.repo.workdir import quick_add

        return quick_add(self, name, folder, key=key, mode=mode, labels=labels)

    def build_version(self, name: str, source: Any, *, base: str | None, key: Sequence[str] | str | None = None,
                      mode: str = "replace", labels: str | os.PathLike[str] | None = None,
                      format: str | None = None, progress: Progress | None = None,
                      engine: Engine | None = None, files: Listing | None = None,
                      fresh_keys: bool = False) -> tuple[str, UpdateResult]:
        """Write the version of ``name`` that applying ``source`` to manifest ``base`` gives; stages nothing.

        Returns the new manifest's oid and what changed. ``fresh_keys``: see ``assay.table.apply_update``.
        """
        from assay.table import UpdateResult, apply_update
        from assay.table.sources import load_source

        revisions.check_dataset_name(name)
        keys = [key] if isinstance(key, str) else key
        is_folder = isinstance(source, str | os.PathLike) and Path(source).is_dir()
        base_manifest = self.read_manifest(base) if base else None
        if is_folder:
            keys = keys or ["path"]

            def known(digest: str) -> bool:  # the input is what ``base`` holds: nothing to store
                return base is not None and self._memo.get(base, digest, keys, mode) == base

            src = self._folder_source(Path(source), labels, progress, known, files)
            blobs: tuple[str, ...] = ("blob",)
            kind = "files"
        else:
            if labels is not None:
                raise InputError("--labels applies to folders of files only")
            src, kind, blobs = load_source(source, format=format), "table", ()
        memo = self._memo.get(base, src.digest, keys, mode)
        if memo is not None and memo == base and base_manifest is not None:
            return memo, UpdateResult(base_manifest, unchanged=base_manifest.rows)
        result = apply_update(self.store, name, base_manifest, src, key=keys, mode=mode, kind=kind,
                              blob_columns=blobs, progress=progress, engine=engine or self.engine,
                              fresh_keys=fresh_keys)
        new_oid = self.write_manifest(result.manifest)
        self._memo.put(base, src.digest, keys, mode, new_oid)
        if mode in _IDEMPOTENT and new_oid != base:  # the same input again changes nothing: a re-add reads no data
            self._memo.put(new_oid, src.digest, keys, mode, new_oid)
        return new_oid, result

    def derive(self, *, parents: Sequence[str], message: str, author: str | None = None,
               meta: dict[str, Any] | None = None, datasets: Mapping[str, str] | None = None,
               suites: Mapping[str, str] | None = None, models: Mapping[str, str] | None = None,
               kinds: Mapping[str, Mapping[str, str]] | None = None, verify: bool = True,
               provenance: tuple[str, dict[str, Any] | None] | None = None) -> str:
        """Write a child of ``parents`` (moving no ref); returns its oid. Move refs with ``move_refs``.

        It carries every kind of content of the first parent except the kinds given, each of which replaces
        that kind's whole mapping (see ``Commit.child``). Like ``commit``, the datasets it changes that have a
        suite are checked first (CheckFailed refuses it; without a verifier it is refused). Callers that have
        checked them already, or whose own policy decides (the gate, upkeep), say so with ``verify=False``.
        ``provenance``: the author and code reference to record, as a long-running writer (the prediction log)
        looked them up once, instead of asking git at every commit.
        """
        parent = self.read_commit(parents[0]) if parents else None
        who, code = provenance if provenance is not None else (author or default_author(self.root),
                                                               code_reference(Path.cwd()))
        c = Commit.child(parent=parent, parents=parents, message=message, author=who, code=code, meta=meta,
                         datasets=datasets, suites=suites, models=models, kinds=kinds)
        extra = self._verify(self._changed(parent, c.datasets, c.suites), c.datasets, c.suites, False) \
            if verify else {}
        if extra:
            c = Commit.child(parent=parent, parents=parents, message=message, author=c.author, code=c.code,
                             meta={**(meta or {}), **extra}, datasets=datasets, suites=suites, models=models,
                             kinds=kinds)
        return self._write_commit(c)

    @staticmethod
    def _changed(before: Commit | None, datasets: Mapping[str, str], suites: Mapping[str, str]) -> list[str]:
        """The datasets whose version or suite differs from ``before``'s."""
        data, checks = (before.datasets, before.suites) if before else ({}, {})
        return [n for n in datasets if (datasets[n], suites.get(n)) != (data.get(n), checks.get(n))]

    def move_refs(self, updates: list[RefUpdate], message: str) -> None:
        """Move several refs at once (each a compare-and-swap): all or none; ConflictError if one moved."""
        for u in updates:
            if u.new is not None:
                revisions.check_ref_name(u.name, u.kind)
        self.catalog.update_refs(updates, message)

    def _folder_source(self, folder: Path, labels: str | os.PathLike[str] | None, progress: Progress | None,
                       known: Callable[[str], bool], files: Listing | None) -> Any:
        from assay.table.folders import folder_source
        from assay.table.listing import StatCache

        cache = StatCache(self.dir / "statcache")
        return folder_source(self.store, folder, cache, labels=Path(labels) if labels else None, progress=progress,
                             known=known, files=files)

    def remove(self, name: str) -> None:
        """Stage the removal of dataset ``name``."""
        with self.work.locked():
            staging = self.work.read_staging()
            head = self.head()
            committed = self.read_commit(head).datasets.get(name) if head else None
            if committed is None and name not in staging.datasets:
                raise RefNotFound(f"no dataset {name!r} to remove")
            if committed is None:
                staging.datasets.pop(name)
            else:
                staging.datasets[name] = StagedDataset("", committed, {"removed_dataset": True})
            self.work.write_staging(staging)

    def status(self) -> Status:
        staging = self.work.read_staging()
        staged = {n: {**s.summary, "manifest": s.manifest} for n, s in staging.datasets.items()}
        for n, oid in staging.suites.items():
            staged.setdefault(n, {})["suite"] = oid or "removed"
        return Status(self.branch, self.head(), staged)

    def reset(self, names: Sequence[str] | None = None) -> None:
        """Unstage changes (all, or those of ``names``)."""
        with self.work.locked():
            staging = self.work.read_staging()
            for n in names or list(set(staging.datasets) | set(staging.suites)):
                staging.datasets.pop(n, None)
                staging.suites.pop(n, None)
            self.work.write_staging(staging)

    # -- commits ------------------------------------------------------------------------------------------------

    def commit(self, message: str, *, author: str | None = None, meta: dict[str, Any] | None = None,
               allow_empty: bool = False, no_verify: bool = False) -> str:
        """Record the staged changes as a commit on the working branch; returns its oid.

        Staged datasets that have a suite are checked first by the verifier (``assay.Repo`` installs it) and a
        failure refuses the commit; ``no_verify`` skips that, and the skip is recorded in the commit's
        ``meta``. Without a verifier such a commit is refused unless ``no_verify`` is given.
        """
        if not message.strip():
            raise InputError("a commit needs a message: assay commit -m 'what changed and why'")
        with self.work.locked():
            staging = self.work.read_staging()
            if not staging and not allow_empty:
                raise NothingToCommit("nothing to commit: stage changes with `assay add` first")
            head = self.work.read_head()
            code = code_reference(Path.cwd())
            who = author or default_author(self.root)
            for _ in range(20):
                tip = self.head()
                before = self.read_commit(tip) if tip else None
                base = before.datasets if before else {}
                datasets = self._apply_staged(base, staging, tip)
                suites = self._apply_staged_suites(before.suites if before else {}, staging)
                if datasets == base and suites == (before.suites if before else {}) and not allow_empty:
                    self.work.write_staging(type(staging)())  # e.g. a writer died after moving the branch
                    raise NothingToCommit(f"nothing to commit: the staged changes are already in {str(tip)[:12]}")
                extra = self._verify(set(staging.datasets) | set(staging.suites), datasets, suites, no_verify)
                c = Commit.child(parent=before, parents=(tip,) if tip else (), message=message, author=who, code=code,
                                 meta={**(meta or {}), **extra}, datasets=datasets, suites=suites)
                oid = self._write_commit(c)
                try:
                    self._move_head(head, tip, oid, f"commit: {message.splitlines()[0][:80]}")
                except ConflictError:
                    continue  # the branch moved; the staged bases are checked again on the new tip
                self.work.write_staging(type(staging)())
                return oid
            raise ConflictError("the branch kept moving while committing; try again")

    def _verify(self, changed: Iterable[str], datasets: Mapping[str, str], suites: Mapping[str, str],
                no_verify: bool) -> dict[str, Any]:
        """Run the verifier over the changed datasets that have a suite; what to record in the commit."""
        checked = sorted(n for n in set(changed) if n in suites and n in datasets)
        if not checked:
            return {}
        if no_verify:
            return {"no_verify": True, "unchecked": checked}
        if self.verifier is None:
            raise CheckFailed(f"dataset(s) {checked} have a suite, and this {type(self).__name__} has no suite "
                              "checker to run it, so nothing was written. Open the repository with assay.Repo "
                              "(it checks suites), or pass no_verify=True to skip the check (it is recorded)")
        return self.verifier(self, {n: datasets[n] for n in checked}, {n: suites[n] for n in checked})

    @staticmethod
    def _apply_staged_suites(base: dict[str, str], staging: Any) -> dict[str, str]:
        out = dict(base)
        for name, oid in staging.suites.items():
            if oid:
                out[name] = oid
            else:
                out.pop(name, None)
        return out

    # -- suites ---------------------------------------------------------------------------------------------------

    def set_suite(self, dataset: str, text: str) -> str:
        """Stage ``text`` (a suite's YAML) as the suite of ``dataset``; returns its oid."""
        revisions.check_dataset_name(dataset)
        oid = self.store.put(text.encode("utf-8"))
        with self.work.locked():
            staging = self.work.read_staging()
            staging.suites[dataset] = oid
            self.work.write_staging(staging)
        return oid

    def suites(self, rev: str | None = None) -> dict[str, str]:
        """Dataset -> suite oid at a revision (HEAD plus staged suites when ``rev`` is None)."""
        if rev is not None:
            return dict(self.read_commit(self.resolve(rev)).suites)
        head = self.head()
        base = dict(self.read_commit(head).suites) if head else {}
        return self._apply_staged_suites(base, self.work.read_staging())

    def suite_text(self, dataset: str, rev: str | None = None) -> str | None:
        """The YAML of the suite of ``dataset`` at a revision, or None."""
        oid = self.suites(rev).get(dataset)
        return self.store.get(oid).decode("utf-8") if oid else None

    def _apply_staged(self, base: dict[str, str], staging: Any, tip: str | None) -> dict[str, str]:
        out = dict(base)
        for name, s in staging.datasets.items():
            if base.get(name) == (s.manifest or None):
                continue  # already there: committed by a writer that died before clearing the staging area
            if base.get(name) != s.base:
                raise ConflictError(
                    f"dataset {name!r} changed on this branch (now at {str(tip)[:12]}) after your change was "
                    "staged against an older version. Unstage it (`assay reset`), then add it again."
                )
            if s.manifest:
                out[name] = s.manifest
            else:
                out.pop(name, None)
        return out

    def _write_commit(self, c: Commit) -> str:
        oid = self._put_small(c.to_bytes())
        self.catalog.record_commit(oid, c.time, c.message, c.parents)
        return oid

    def _move_head(self, head: dict[str, str], expected: str | None, new: str, message: str) -> None:
        if "branch" in head:
            self.catalog.update_ref(head["branch"], "branch", new, expected, message)
        else:
            self.work.write_head({"commit": new})

    def log(self, rev: str | None = None, *, limit: int | None = None,
            dataset: str | None = None) -> list[tuple[str, Commit]]:
        """Commits reachable from ``rev`` (newest first, following all parents by time)."""
        try:
            start = self.resolve(rev)
        except RefNotFound:
            if rev is None:
                return []
            raise
        out: list[tuple[str, Commit]] = []
        for oid in history.log_order(history.ancestry(self.catalog, self.read_commit, start), start):
            if limit is not None and len(out) >= limit:
                break
            c = self.read_commit(oid)
            if dataset is None or self._touches(c, dataset):
                out.append((oid, c))
        return out

    def _touches(self, c: Commit, dataset: str) -> bool:
        before = self.read_commit(c.parents[0]).datasets.get(dataset) if c.parents else None
        return c.datasets.get(dataset) != before

    def show(self, rev: str | None = None) -> tuple[str, Commit]:
        oid = self.resolve(rev)
        return oid, self.read_commit(oid)

    # -- diff, export ---------------------------------------------------------------------------------------------

    def diff(self, a: str | None = None, b: str | None = None, *, dataset: str | None = None,
             limit: int = 20, engine: Engine | None = None) -> list[DatasetDiff]:
        """Per-dataset differences from revision ``a`` (default HEAD) to ``b`` (default: working version)."""
        from assay.table import diff_manifests

        left = self.datasets(a or "HEAD") if (a or self.head()) else {}
        right = self.datasets(b)
        names = [dataset] if dataset else sorted(set(left) | set(right))
        if dataset and dataset not in left and dataset not in right:
            raise RefNotFound(f"no dataset {dataset!r} in either version")
        out = []
        for n in names:
            if left.get(n) == right.get(n):
                continue
            ma = self.read_manifest(left[n]) if n in left else None
            mb = self.read_manifest(right[n]) if n in right else None
            with self.store.cache_scope():
                out.append(diff_manifests(self.store, n, ma, mb, limit=limit, engine=engine or self.engine))
        return out

    def export(self, spec: str, to: str | os.PathLike[str], *, force: bool = False,
               progress: Progress | None = None) -> Path:
        """Write ``DATASET[@REV]`` to a Parquet file, or (folder datasets) recreate its files in a folder.

        An existing file is replaced only with ``force``; a folder must be new or empty.
        """
        from assay.repo.export import export_dataset

        return export_dataset(self.dataset(spec), Path(to), force=force, progress=progress)

    # -- branches and tags -----------------------------------------------------------------------------------------

    def branches(self) -> dict[str, str]:
        return {r.name: r.commit for r in self.catalog.list_refs("branch")}

    def tags(self) -> dict[str, str]:
        return {r.name: r.commit for r in self.catalog.list_refs("tag")}

    def create_branch(self, name: str, start: str | None = None) -> str:
        revisions.check_ref_name(name)
        self._refuse_existing(name)
        oid = self.resolve(start)
        self.catalog.update_ref(name, "branch", oid, None, f"branch: from {start or 'HEAD'}")
        return oid

    def delete_branch(self, name: str, *, force: bool = False) -> None:
        ref = self.catalog.get_ref(name)
        if ref is None or ref.kind != "branch":
            raise RefNotFound(f"no branch {name!r}")
        if name == self.branch:
            raise InputError(f"cannot delete branch {name!r}: it is checked out; check out another branch first")
        if not force and not self._is_merged(ref.commit):
            raise InputError(f"branch {name!r} has commits not merged into {self.branch!r}; use --force to delete "
                             "it anyway")
        self.catalog.update_ref(name, "branch", None, ref.commit, "branch: deleted")

    def _is_merged(self, oid: str) -> bool:
        head = self.head()
        return head is not None and oid in self._ancestors(head)

    def tag(self, name: str, rev: str | None = None) -> str:
        revisions.check_ref_name(name, "tag")
        self._refuse_existing(name)
        oid = self.resolve(rev)
        self.catalog.update_ref(name, "tag", oid, None, f"tag: {rev or 'HEAD'}")
        return oid

    def delete_tag(self, name: str) -> None:
        ref = self.catalog.get_ref(name)
        if ref is None or ref.kind != "tag":
            raise RefNotFound(f"no tag {name!r}")
        self.catalog.update_ref(name, "tag", None, ref.commit, "tag: deleted")

    def _refuse_existing(self, name: str) -> None:
        ref = self.catalog.get_ref(name)
        if ref is not None:
            raise RefExists(f"a {ref.kind} named {name!r} already exists (at {ref.commit[:12]})")

    def checkout(self, rev: str, *, create: bool = False, force: bool = False) -> str | None:
        """Make ``rev`` the working version: a branch (commits go there) or any revision (detached)."""
        with self.work.locked():
            if self.work.read_staging() and not force:
                raise InputError("there are staged changes; commit them, unstage them with `assay reset`, or "
                                 "use --force to drop them")
            if create and self.head() is not None:
                self.create_branch(rev)
            ref = self.catalog.get_ref(rev)
            if ref is not None and ref.kind == "branch":
                self.work.write_head({"branch": rev})
                oid: str | None = ref.commit
            elif not self.catalog.list_refs() and self.head() is None:  # no commits yet: an unborn branch
                revisions.check_ref_name(rev)
                self.work.write_head({"branch": rev})
                oid = None
            else:
                oid = self.resolve(rev)
                self.work.write_head({"commit": oid})
            self.work.write_staging(type(self.work.read_staging())())
            return oid

    # -- merge -----------------------------------------------------------------------------------------------------

    def merge(self, rev: str, *, message: str | None = None, author: str | None = None,
              no_verify: bool = False, prefer: str | None = None,
              resolve: Mapping[str, Any] | None = None) -> MergeResult:
        """Merge ``rev`` into the working branch: fast-forward when possible, else a three-way merge of samples.

        Samples changed differently on both sides raise MergeConflict (with both sides' values), unless
        ``prefer`` ("ours" or "theirs") says whose version of every conflicting sample wins, or ``resolve``
        maps a dataset to the rows that settle its conflicts (a file or frame with every conflicting
        sample's key and final values; upserted onto the merge, whose other samples merge as usual).

        Like a commit, the merge passes the gate: each dataset it changes on the branch that has a suite is
        checked, and an error-level failure refuses the merge (nothing moves). ``no_verify`` skips that and
        records it in a merge commit (made even where a fast-forward would do, so that the skip is kept).
        """
        with self.work.locked():
            if self.work.read_staging():
                raise InputError("commit or unstage (`assay reset`) your staged changes before merging")
            head_info = self.work.read_head()
            ours, theirs = self.head(), self.resolve(rev)
            if ours is not None and theirs in self._ancestors(ours):
                return MergeResult(ours, False, up_to_date=True)
            mine = self.read_commit(ours) if ours else None
            if ours is None or ours in self._ancestors(theirs):
                return self._fast_forward(head_info, mine, ours, theirs, rev, no_verify, message, author)
            base = self.merge_base(ours, theirs)
            content = self._merge_content(base, ours, theirs)
            merged, origin = self._merge_datasets(base, ours, theirs, prefer=prefer, resolve=resolve or {})
            extra = self._verify_merge(mine, merged, content["suites"], rev, no_verify)
            text = message or f"Merge {rev} into {self.branch or ours[:12]}"
            oid = self.derive(parents=(ours, theirs), message=text, author=author,
                              meta={"merge_base": base, **extra}, datasets=merged, kinds=content, verify=False)
            self._move_head(head_info, ours, oid, f"merge {rev}")
            return MergeResult(oid, False, origin)

    def _fast_forward(self, head_info: dict[str, str], mine: Commit | None, ours: str | None, theirs: str,
                      rev: str, no_verify: bool, message: str | None, author: str | None) -> MergeResult:
        target = self.read_commit(theirs)
        extra = self._verify_merge(mine, target.datasets, target.suites, rev, no_verify)
        if not extra.get("no_verify"):
            self._move_head(head_info, ours, theirs, f"merge {rev}: fast-forward")
            return MergeResult(theirs, True)
        text = message or f"Merge {rev} into {self.branch or str(ours)[:12]} (suites not checked)"
        c = Commit.child(parent=target, parents=(ours, theirs) if ours else (theirs,), message=text,
                         author=author or default_author(self.root), code=code_reference(Path.cwd()), meta=extra)
        oid = self._write_commit(c)
        self._move_head(head_info, ours, oid, f"merge {rev}: --no-verify")
        before = mine.datasets if mine else {}
        changed = {n for n, m in target.datasets.items() if before.get(n) != m} | set(extra["unchecked"])
        return MergeResult(oid, False, {n: "theirs" for n in sorted(changed)})

    def _verify_merge(self, mine: Commit | None, datasets: Mapping[str, str], suites: Mapping[str, str], rev: str,
                      no_verify: bool) -> dict[str, Any]:
        """The gate on a merge: the datasets (or suites) it changes on the branch are checked."""
        try:
            return self._verify(self._changed(mine, datasets, suites), datasets, suites, no_verify)
        except CheckFailed as e:
            found = str(e).rpartition("\nNothing was committed")[0] or str(e)
            raise CheckFailed(f"{found}\nNothing was merged. Fix the data (or the suite) on {rev}, or merge with "
                              "--no-verify to override; the override is recorded in the merge commit.",
                              e.results) from e

    def _merge_content(self, base: str | None, ours: str, theirs: str) -> dict[str, dict[str, str]]:
        """Every kind of content but datasets, merged three-way by name; MergeConflict if both sides differ."""
        b = self.read_commit(base).content() if base else {}
        o, t = self.read_commit(ours).content(), self.read_commit(theirs).content()
        out, conflicts = merge_contents(b, o, t)
        if conflicts:
            listing = "\n".join(f"  {c}" for c in conflicts)
            raise MergeConflict(f"{len(conflicts)} entr(ies) changed differently on both sides; nothing was merged:\n"
                                f"{listing}\nMake the two sides agree (e.g. `assay suite set` on one branch), then "
                                "merge again.", conflicts)
        return out

    def _merge_datasets(self, base: str | None, ours: str, theirs: str, *, prefer: str | None,
                        resolve: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        from assay.repo.merging import check_prefer, resolve_conflicts
        from assay.table import merge_manifests

        check_prefer(prefer)
        b = self.read_commit(base).datasets if base else {}
        o, t = self.read_commit(ours).datasets, self.read_commit(theirs).datasets
        merged: dict[str, str] = {}
        origin: dict[str, str] = {}
        conflicts: list[Conflict] = []
        for name in sorted(set(b) | set(o) | set(t)):
            bo, oo, to = b.get(name), o.get(name), t.get(name)
            if oo == to or to == bo:
                if oo:
                    merged[name] = oo
                continue
            if oo == bo:
                if to:
                    merged[name], origin[name] = to, "theirs"
                continue
            mb, mo, mt = (self.read_manifest(x) if x else None for x in (bo, oo, to))
            side = "ours" if name in resolve else prefer
            with self.store.cache_scope():
                m, found = merge_manifests(self.store, name, mb, mo, mt, bo, oo, to, prefer=side)
            if m is not None:
                merged[name], origin[name] = self.store.put(m.to_bytes()), "merged"
                if found and name in resolve:
                    merged[name] = resolve_conflicts(self, name, merged[name], found, resolve[name])
                    origin[name] = "merged, conflicts resolved"
                elif found:
                    origin[name] = f"merged, {len(found)} conflict(s) taken from {prefer}"
            else:
                conflicts.extend(found)
        if conflicts:
            listing = "\n".join(f"  CONFLICT ({c.ours}/{c.theirs}): {c}" for c in conflicts[:20])  # as git words it
            more = f"\n  ... and {len(conflicts) - 20} more" if len(conflicts) > 20 else ""
            raise MergeConflict(
                f"CONFLICT: {len(conflicts)} sample(s) changed differently on both sides; automatic merge failed, "
                f"nothing was merged:\n{listing}{more}\n"
                "Take one side for every conflict with `assay merge REV --ours` or `--theirs`, settle them sample by "
                "sample with `--resolve DATASET=FILE` (a file with each conflicting sample's key and final values), "
                "or make the two sides agree on one branch and merge again.", conflicts)
        return merged, origin

    def _ancestors(self, oid: str) -> set[str]:
        return set(history.ancestry(self.catalog, self.read_commit, oid))

    def merge_base(self, a: str, b: str) -> str | None:
        """The nearest common ancestor of two commits."""
        return history.merge_base(self.catalog, self.read_commit, a, b)

    # -- upkeep ------------------------------------------------------------------------------------------------------

    def fsck(self, *, progress: Progress | None = None) -> Any:
        from assay.repo.upkeep import fsck

        return fsck(self, progress=progress)

    def repair(self, source: str | os.PathLike[str], *, progress: Progress | None = None) -> Any:
        """Replace damaged or missing objects with good bytes from ``source`` (another repository, or files)."""
        from assay.repo.repair import repair

        return repair(self, source, progress=progress)

    def gc(self, *, grace: float = 3600.0, dry_run: bool = False) -> Any:
        from assay.repo.upkeep import gc

        return gc(self, grace=grace, dry_run=dry_run)

    def compact(self, names: Sequence[str] | None = None, *, message: str = "compact fragments",
                progress: Progress | None = None) -> Any:
        from assay.repo.upkeep import compact

        return compact(self, names, message=message, progress=progress)

    def reachable(self) -> Iterator[tuple[str, str]]:
        """Every object reachable from refs, HEAD and the staging area, as (oid, what)."""
        from assay.repo.upkeep import walk_reachable

        return walk_reachable(self)


def _merge_summaries(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(new)
    for k in ("added", "removed", "updated"):
        out[k] = old.get(k, 0) + new.get(k, 0)
    out["mode"] = f"{old.get('mode')}+{new.get('mode')}" if old.get("mode") != new.get("mode") else new["mode"]
    return out
