"""The loop: labelled production rows back through the gate into the next training version.

``ingest_predictions(repo, "digits", into="digits-train", since="1d", labels="labels.csv")`` (the CLI's
``assay ingest predictions/digits --into digits-train``):

1. with ``labels``, joins the file's labels to the prediction log first, as ``assay predictions label`` does
   (``assay.serve.labels``: a commit of its own);
2. reads the production rows logged since ``since`` with their labels (``window.production``); rows without a
   label are not ingested (counted in the report);
3. turns each labelled row into a row of the target dataset: the model's feature columns and its label column,
   cast to the target's types, plus the sample key (below); any other column of the target is null;
4. leaves out the rows ingested before (their key is in the dataset or in its quarantine), so a second run over
   the same window adds nothing;
5. sends the rest through the gate (``assay.gate.ingest``: the dataset's suite and the screens, like any batch),
   whose commits record where the rows came from (``meta.ingest.source``: the model, the versions that
   answered, the number of rows, the first and last request ids and times, ``since``).

The key of a production row is derived from its request id (unique: a UUID per request, ``/i`` for the i-th
instance of a list), so it never collides with the keys of other samples and is the same on every run:

- a string key column gets ``predictions/MODEL/REQUEST_ID``;
- an int64 key column gets ``-(1 + h)`` with ``h`` the first 62 bits of SHA-256(request id): a negative number,
  which row counters never are;
- a dataset keyed by content (no key) needs none: a row already ingested has the same content hash, and is
  left out by that.

Any other key (several columns, a narrower integer) is refused with what to do.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from assay._types import Progress
from assay.errors import InputError, NothingToIngest, RefNotFound
from assay.monitor.window import feature_names, parse_time, production

if TYPE_CHECKING:
    from assay.gate import IngestReport, Policy
    from assay.serve.labels import LabelResult

KEY_PREFIX = "predictions"  # string keys: predictions/MODEL/REQUEST_ID


@dataclass
class LoopReport:
    """What ``ingest_predictions`` did: the rows it read, those it took, and the gate's report on them."""

    model: str
    dataset: str
    branch: str
    rows: int = 0  # production rows in the window
    labelled: int = 0
    unlabelled: int = 0  # not ingested: no label yet
    already: int = 0  # labelled rows ingested before (in the dataset or its quarantine): left out
    source: dict[str, Any] = field(default_factory=dict)
    labels: LabelResult | None = None  # the labels joined first (--labels FILE)
    gate: IngestReport | None = None  # None when no row was new
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing was rejected: the new rows (if any) are published or quarantined."""
        return self.gate is None or self.gate.ok

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "branch": self.branch, "ok": self.ok,
                "rows": self.rows, "labelled": self.labelled, "unlabelled": self.unlabelled,
                "already_ingested": self.already, "source": self.source, "notes": self.notes,
                "labels": self.labels.to_dict() if self.labels else None,
                "gate": self.gate.to_dict() if self.gate else None}


def ingest_predictions(repo: Any, model: str, *, into: str, since: float | str | None = None,
                       labels: Any = None, id_column: str = "request_id", label_column: str = "label",
                       branch: str | None = None, policy: Policy | None = None, message: str | None = None,
                       progress: Progress | None = None) -> LoopReport:
    """Take the labelled production rows of ``model`` logged since ``since`` into dataset ``into`` through the
    gate (see the module docstring); returns what happened."""
    from assay.gate import ingest

    start = _since(since)
    branch = branch or repo.branch
    if branch is None:
        raise InputError("HEAD is detached; name the branch to ingest into (--branch) or check one out")
    report = LoopReport(model, into, branch)
    target = _target(repo, into, branch)
    columns = _columns(repo, model, target)
    if labels is not None:
        from assay.serve.labels import label

        report.labels = joined = label(repo, model, labels, id_column=id_column, label_column=label_column,
                                       branch=branch)
        if joined.unknown:
            report.notes.append(f"{joined.unknown} label(s) of the file match no logged prediction of {model}: "
                                "not joined")
    rows = production(repo, model, since=start, labels=True, rev=branch)
    batch = _labelled(report, rows, columns, start)
    batch = _new_only(report, repo, batch, target, branch)
    if batch.num_rows == 0:
        report.notes.append(f"all {report.labelled} labelled row(s) were ingested before; nothing to do")
        return report
    report.source = _source(model, batch, start)
    table = _as_target(batch, target.schema, target.manifest.key, model, report)
    text = message or f"ingest {batch.num_rows} labelled production row(s) of {model}"
    report.gate = ingest(repo, table, into=into, policy=policy, branch=branch, mode="append", message=text,
                         source=report.source, progress=progress)
    return report


def _since(since: float | str | None) -> float | None:
    start = parse_time(since)
    if start is not None and start > time.time() + 1:
        raise InputError(f"--since {since} is in the future: no prediction has been logged after it; give a time "
                         "in the past (2026-12-03T10:00, seconds since the epoch) or a duration ago (2h)")
    return start


def _target(repo: Any, into: str, branch: str) -> Any:
    try:
        return repo.dataset(into, branch)
    except (RefNotFound, KeyError) as e:
        raise InputError(f"no dataset {into!r} on {branch!r}: production rows join an existing training dataset "
                         "(the one the model was trained on, or one with its feature and label columns)") from e


def _columns(repo: Any, model: str, target: Any) -> dict[str, str]:
    """The target's column for each column of the decoded log it takes (the features, and ``label``)."""
    from assay.models import get

    mv = get(repo, model)
    label = mv.signature.label or "label"
    columns = {**{f: f for f in feature_names(mv)}, "label": label}
    missing = [c for c in columns.values() if c not in target.schema.names]
    if missing:
        what = "label column" if missing[0] == label else "feature column"
        raise InputError(f"dataset {target.name!r} has no column {missing[0]!r} ({what} of {mv.spec}), so its "
                         f"production rows do not fit it: ingest into a dataset with the model's columns, such as "
                         f"its training data ({mv.lineage.train.spec if mv.lineage.train else 'none recorded'})")
    return columns


def _labelled(report: LoopReport, rows: pa.Table, columns: dict[str, str], start: float | None) -> pa.Table:
    """The labelled rows, their columns named as the target names them."""
    report.rows = rows.num_rows
    when = f" since {_iso(start)}" if start is not None else ""
    if rows.num_rows == 0:
        raise NothingToIngest(f"the prediction log of {report.model} holds no rows{when}: serve the model, or give "
                              "an earlier --since")
    labelled = rows.filter(pc.invert(pc.is_null(rows.column("label"))))
    report.labelled, report.unlabelled = labelled.num_rows, rows.num_rows - labelled.num_rows
    if labelled.num_rows == 0:
        raise NothingToIngest(f"none of the {rows.num_rows} production row(s) of {report.model}{when} has a label "
                              f"yet, and only labelled rows are ingested: join labels by request id with --labels "
                              f"FILE or `assay predictions label {report.model} FILE`")
    if report.unlabelled:
        report.notes.append(f"{report.unlabelled} row(s) without a label were not ingested; label them and run "
                            "again to take them")
    kept = [*columns, "request_id", "time", "version"]
    return labelled.select(kept).rename_columns([*columns.values(), "request_id", "time", "version"])


def _new_only(report: LoopReport, repo: Any, batch: pa.Table, target: Any, branch: str) -> pa.Table:
    """The rows not ingested before: neither their key nor (keyed by content) their content is in the dataset
    or in its quarantine."""
    key = target.manifest.key
    seen = _existing(repo, target, key, branch)
    if key:
        mine = pa.array(_keys(batch.column("request_id").to_pylist(), report.model, target.schema, key), seen.type)
        keep = pc.invert(pc.is_in(mine, value_set=seen))
    else:
        hashes = _content_hashes(batch, target.schema, report)
        keep = pc.invert(pc.is_in(hashes, value_set=seen))
    new = batch.filter(keep)
    report.already = batch.num_rows - new.num_rows
    if report.already and new.num_rows:
        report.notes.append(f"{report.already} labelled row(s) were ingested before and were left out")
    return new


def _existing(repo: Any, target: Any, key: tuple[str, ...] | None, branch: str) -> pa.Array:
    """The keys (or content hashes, hex) of the dataset and of its quarantine."""
    from assay.gate import quarantine_branch

    versions = [target]
    held = repo.catalog.get_ref(quarantine_branch(target.name))
    if held is not None and target.name in repo.read_commit(held.commit).datasets:
        versions.append(repo.dataset(target.name, held.commit))
    if key:
        parts = [v.to_arrow([key[0]]).column(0).combine_chunks() for v in versions]
    else:
        parts = [v.to_arrow([], with_ids=True).column("_assay_hash").combine_chunks() for v in versions]
    return pa.concat_arrays([p.cast(parts[0].type) for p in parts])


def _keys(request_ids: list[str], model: str, schema: pa.Schema, key: tuple[str, ...]) -> list[Any]:
    """The key of each production row, from its request id (see the module docstring)."""
    if len(key) != 1:
        raise InputError(f"dataset is keyed by {len(key)} columns ({', '.join(key)}); a production row's key is "
                         "derived from its request id into one column: ingest into a dataset with one key column "
                         "(a string or int64), or one keyed by content")
    kind = schema.field(key[0]).type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return [f"{KEY_PREFIX}/{model}/{rid}" for rid in request_ids]
    if kind == pa.int64():
        return [-1 - (int.from_bytes(hashlib.sha256(rid.encode()).digest()[:8], "little") >> 2)
                for rid in request_ids]
    raise InputError(f"the key column {key[0]!r} is {kind}; a production row's key is derived from its request id "
                     "as a string or an int64: ingest into a dataset keyed by a string or int64 column, or by content")


def _cast(column: pa.ChunkedArray, name: str, kind: pa.DataType) -> pa.ChunkedArray:
    try:
        return pc.cast(column, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise InputError(f"production values of column {name!r} do not fit its type {kind} in the dataset "
                         f"({str(e).splitlines()[0]}): ingest into a dataset whose columns have the model's types") \
            from e


def _as_target(batch: pa.Table, schema: pa.Schema, key: tuple[str, ...] | None, model: str,
               report: LoopReport | None = None) -> pa.Table:
    """The rows in the target's schema: feature and label columns cast, the key derived, other columns null."""
    keys = _keys(batch.column("request_id").to_pylist(), model, schema, key) if key else None
    columns, nulls = [], []
    for f in schema:
        if key and f.name == key[0]:
            columns.append(pa.array(keys, f.type))
        elif f.name in batch.column_names:
            columns.append(_cast(batch.column(f.name), f.name, f.type))
        else:
            columns.append(pa.nulls(batch.num_rows, f.type))
            nulls.append(f.name)
    if nulls and report is not None:
        report.notes.append(f"production rows have no value for {', '.join(nulls)}: left null")
    return pa.Table.from_arrays(columns, schema=pa.schema([pa.field(f.name, f.type) for f in schema]))


def _content_hashes(batch: pa.Table, schema: pa.Schema, report: LoopReport) -> pa.Array:
    from assay.table.ids import row_hashes, to_hex

    table = _as_target(batch, schema, None, report.model)
    return to_hex(row_hashes(table))


def _source(model: str, batch: pa.Table, start: float | None) -> dict[str, Any]:
    """Where the rows came from, as the commit records it."""
    order = pc.sort_indices(batch, [("time", "ascending"), ("request_id", "ascending")])
    ordered = batch.take(order)
    ids, times = ordered.column("request_id"), ordered.column("time")
    return {"from": f"predictions/{model}", "model": model,
            "versions": sorted({int(v) for v in ordered.column("version").to_pylist()}),
            "rows": ordered.num_rows, "first_request": ids[0].as_py(), "last_request": ids[-1].as_py(),
            "first_time": times[0].as_py(), "last_time": times[-1].as_py(), "since": start}


def _iso(t: float | None) -> str:
    from datetime import UTC, datetime

    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
