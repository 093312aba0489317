"""The quarantine of a dataset: samples the gate held back, on branch ``quarantine/DATASET``, with their
scores and reasons in ``DATASET.scores`` there. List them, show one, release some into a branch (they join
the dataset there, with their scores), or drop them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import CheckFailed, InputError, RefNotFound
from assay.gate.ingest import quarantine_branch
from assay.gate.scores import sample_key_columns, with_sample_keys
from assay.repo import RefUpdate
from assay.screens import scores_name
from assay.table import DatasetVersion
from assay.table.select import select_ids, unite

if TYPE_CHECKING:
    from assay.repo import Repository


def quarantined(repo: Repository, dataset: str) -> pa.Table:
    """The scores and reasons of every sample in quarantine (empty when there is none), with the dataset's
    key columns (or path) after ``sample`` and a ``label`` column: what the user knows the sample by as text
    (its key, ``id=80``, or its path in a folder dataset)."""
    commit = _tip_or_none(repo, dataset)
    if commit is None:
        from assay.screens import scores_schema

        empty = scores_schema().empty_table()
        return empty.append_column("label", pa.array([], pa.string()))
    version = repo.dataset(dataset, commit)
    scores = with_sample_keys(repo.dataset(scores_name(dataset), commit).to_arrow(), version)
    labels = sample_labels(version)
    return scores.append_column("label", pa.array([labels.get(s) for s in scores.column("sample").to_pylist()],
                                                  pa.string()))


def sample_labels(version: DatasetVersion) -> dict[str, str]:
    """Sample id (hex) -> the key columns as ``col=value`` (joined by ``,``), or the path of a folder dataset."""
    cols = sample_key_columns(version)
    if not cols:
        return {}
    t = version.to_arrow(cols, with_ids=True)
    ids = t.column("_assay_id").to_pylist()
    values = [t.column(c).to_pylist() for c in cols]
    if cols == ["path"]:
        return dict(zip(ids, [str(v) for v in values[0]], strict=True))
    return {i: ",".join(f"{c}={v}" for c, v in zip(cols, row, strict=True))
            for i, row in zip(ids, zip(*values, strict=True), strict=True)}


def show(repo: Repository, dataset: str, sample: str) -> dict[str, Any]:
    """One quarantined sample: its values, scores and reasons (``sample`` may be an id prefix)."""
    commit = _tip(repo, dataset)
    scores = quarantined(repo, dataset)
    sid = _resolve(scores, dataset, [sample])[0]
    row = scores.filter(pc.equal(scores.column("sample"), sid)).to_pylist()[0]
    row.pop("label", None)
    data = repo.dataset(dataset, commit).to_arrow(with_ids=True)
    values = data.filter(pc.equal(data.column("_assay_id"), sid)).drop_columns(["_assay_id", "_assay_hash"]).to_pylist()
    label = scores.filter(pc.equal(scores.column("sample"), sid)).column("label")[0].as_py()
    return {"sample": sid, "label": label, "values": values[0] if values else {}, "scores": row}


def resolve_samples(repo: Repository, dataset: str, prefixes: list[str]) -> list[str]:
    """Full sample ids for ``prefixes`` of quarantined samples; an unknown or ambiguous prefix is an error."""
    return _resolve(quarantined(repo, dataset), dataset, prefixes)


def _resolve(scores: pa.Table, dataset: str, prefixes: list[str]) -> list[str]:
    """Sample ids for what the user typed: a key (``id=80``, or ``80`` for a one-column key), a path, or the
    first characters of a sample id, tried in that order."""
    ids = scores.column("sample").to_pylist()
    labels = scores.column("label").to_pylist() if "label" in scores.column_names else [None] * len(ids)
    by_label: dict[str, list[str]] = {}
    for i, label in zip(ids, labels, strict=True):
        if label is not None:
            by_label.setdefault(label, []).append(i)
            if "=" in label and "," not in label:  # one key column: its bare value too
                by_label.setdefault(label.split("=", 1)[1], []).append(i)
    out = []
    for p in prefixes:
        hits = by_label.get(p) or [i for i in ids if i.startswith(p.lower())]
        if not hits:
            raise RefNotFound(f"no quarantined sample of {dataset!r} has the key, path or id {p!r}; see "
                              f"`assay quarantine list {dataset}`")
        if len(hits) > 1:
            raise InputError(f"{p!r} matches {len(hits)} quarantined samples of {dataset!r}; give more characters")
        out.append(hits[0])
    return out


def release(repo: Repository, dataset: str, samples: list[str] | None, *, branch: str | None = None,
            message: str | None = None) -> dict[str, Any]:
    """Move quarantined samples (all when ``samples`` is None) into ``dataset`` on ``branch``."""
    branch = branch or repo.branch
    if branch is None:
        raise InputError("HEAD is detached; name the branch to release into (--branch)")
    return _move(repo, dataset, samples, branch, message or f"release from quarantine into {dataset}")


def drop(repo: Repository, dataset: str, samples: list[str] | None, *, message: str | None = None) -> dict[str, Any]:
    """Remove quarantined samples (all when ``samples`` is None) for good from the quarantine's tip."""
    return _move(repo, dataset, samples, None, message or f"drop from quarantine of {dataset}")


def _move(repo: Repository, dataset: str, samples: list[str] | None, branch: str | None,
          message: str) -> dict[str, Any]:
    qname = quarantine_branch(dataset)
    qtip = _tip(repo, dataset)
    qdata = dict(repo.read_commit(qtip).datasets)
    sname = scores_name(dataset)
    scores = DatasetVersion(repo.store, repo.read_manifest(qdata[sname])).to_arrow()
    if samples is not None:
        labels = sample_labels(DatasetVersion(repo.store, repo.read_manifest(qdata[dataset])))
        labelled = scores.append_column("label", pa.array([labels.get(s) for s in scores.column("sample").to_pylist()],
                                                          pa.string()))
        ids = _resolve(labelled, dataset, samples)
    else:
        ids = scores.column("sample").to_pylist()
    if not ids:
        raise InputError(f"the quarantine of {dataset!r} is empty; nothing to do")
    wanted = {bytes.fromhex(i) for i in ids}
    held = repo.read_manifest(qdata[dataset])
    moving = select_ids(repo.store, held, wanted)
    staying = select_ids(repo.store, held, wanted, keep=False)
    moved_scores = scores.filter(pc.is_in(scores.column("sample"), value_set=pa.array(ids, pa.string())))
    rest, _ = repo.build_version(sname, moved_scores.select(["sample"]), base=qdata[sname], mode="delete")
    qnew = repo.derive(parents=(qtip,), datasets={**qdata, dataset: repo.store.put(staying.to_bytes()), sname: rest},
                       message=f"{message}: {len(ids)} sample(s)", verify=False)  # the quarantine branch: unchecked
    updates = [RefUpdate(qname, "branch", qnew, qtip)]
    if branch is not None:
        updates.append(_release_commit(repo, dataset, branch, moving, wanted, moved_scores, message))
    repo.move_refs(updates, message)
    return {"samples": len(ids), "commits": {u.name: u.new for u in updates}}


def _release_commit(repo: Repository, dataset: str, branch: str, moving: Any, ids: set[bytes], moved_scores: pa.Table,
                    message: str) -> RefUpdate:
    ref = repo.catalog.get_ref(branch)
    if ref is None:
        raise RefNotFound(f"no branch {branch!r} to release into")
    commit = repo.read_commit(ref.commit)
    datasets = dict(commit.datasets)
    if dataset in datasets:  # a released update replaces the version the branch kept meanwhile
        kept = select_ids(repo.store, repo.read_manifest(datasets[dataset]), ids, keep=False)
        target = unite(repo.store, kept, moving)
    else:
        target = moving
    released = moved_scores.set_column(moved_scores.column_names.index("action"), "action",
                                       pa.array(["released"] * moved_scores.num_rows, pa.string()))
    sname = scores_name(dataset)
    scores, _ = repo.build_version(sname, released, base=datasets.get(sname), key=["sample"], mode="upsert")
    try:
        oid = repo.derive(parents=(ref.commit,), datasets={**datasets, dataset: repo.store.put(target.to_bytes()),
                                                           sname: scores}, message=f"{message}: {len(ids)} sample(s)")
    except CheckFailed as e:  # checked like a commit to that branch
        found = str(e).rpartition("\nNothing was committed")[0] or str(e)
        raise CheckFailed(f"{found}\nNothing was released: with these samples {dataset!r} on {branch!r} would fail "
                          "its suite. Release fewer samples, drop them (`assay quarantine drop`), or change the "
                          "suite first.", e.results) from e
    return RefUpdate(branch, "branch", oid, ref.commit)


def _tip(repo: Repository, dataset: str) -> str:
    """The tip of the quarantine branch of ``dataset``; RefNotFound when it has none."""
    tip = _tip_or_none(repo, dataset)
    if tip is None:
        raise RefNotFound(f"dataset {dataset!r} has no quarantine (no branch {quarantine_branch(dataset)!r}); "
                          "`assay ingest` creates it when it holds samples back")
    return tip


def _tip_or_none(repo: Repository, dataset: str) -> str | None:
    ref = repo.catalog.get_ref(quarantine_branch(dataset))
    return ref.commit if ref else None
