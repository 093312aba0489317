"""Labels that arrive after the predictions: joined to the prediction log by request id.

``label(repo, "digits", "labels.csv", id_column="request_id", label_column="y")`` reads the file (any format
``assay add`` reads), keeps the rows whose id is a logged prediction of the model, and upserts them into the
dataset ``predictions.NAME.labels`` (columns ``request_id``, ``label``, ``labelled_at``; keyed by
``request_id``, so a later label for the same request replaces the earlier one) in a commit of its own on the
branch. Ids that match no logged prediction are not written; the result counts them, and a file none of whose
ids matches is refused (a wrong ``--id-column``, or another model's ids). A file that gives one request id two
labels is refused with the id and its two rows: which one is right cannot be told. Nothing is written then.
Keeping labels in a
dataset beside the log (rather than rewriting logged rows) means a server that keeps logging never conflicts
with labelling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import InputError, KeyViolation, RefNotFound
from assay.repo.onbranch import Change, commit_on_branch
from assay.serve.log import dataset_name


def labels_dataset(model: str) -> str:
    return f"{dataset_name(model)}.labels"


@dataclass(frozen=True)
class LabelResult:
    dataset: str
    labelled: int  # rows written (new or changed labels)
    matched: int  # ids of the file that are logged predictions
    unknown: int  # ids that match no logged prediction (not written)
    commit: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "labelled": self.labelled, "matched": self.matched, "unknown": self.unknown,
                "commit": self.commit}


def _read(source: Any, id_column: str, label_column: str) -> pa.Table:
    from assay.table.sources import load_source

    src = load_source(source)
    missing = [c for c in (id_column, label_column) if c not in src.schema.names]
    if missing:
        raise InputError(f"{src.description} has no column {missing[0]!r} (its columns: {src.schema.names[:20]}); name "
                         "the request id and label columns with --id-column and --label-column")
    table = pa.Table.from_batches(list(src.open()), src.schema).select([id_column, label_column])
    ids = pc.cast(table.column(id_column), pa.string())
    _refuse_duplicates(ids, src.description, id_column)
    return pa.table({"request_id": ids, "label": table.column(label_column)})


def _refuse_duplicates(ids: pa.ChunkedArray, where: str, id_column: str) -> None:
    counts = pc.value_counts(ids.drop_null())
    twice = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(twice) == 0:
        return
    rid = twice.field("values")[0].as_py()
    rows = [i + 1 for i in pc.indices_nonzero(pc.equal(ids, rid)).to_pylist()[:2]]
    raise KeyViolation(f"{where} gives request id {rid!r} two labels (rows {rows[0]} and {rows[1]} of its data; "
                       f"{len(twice)} id(s) appear more than once in column {id_column!r}): keep one label per "
                       "request and run it again; nothing was written")


def _refuse_no_match(incoming: pa.Table, model: str) -> None:
    if incoming.num_rows == 0:
        return
    first = incoming.column("request_id")[0].as_py()
    raise InputError(f"none of the {incoming.num_rows} request ids of the labels is a logged prediction of {model!r} "
                     f"(the first is {first!r}): the ids are those the server answered with (`ID`, or `ID/i` for "
                     "the i-th instance of a list); name the column that holds them with --id-column. Nothing was "
                     "written")


def label(repo: Any, model: str, source: Any, *, id_column: str = "request_id", label_column: str = "label",
          branch: str | None = None, message: str | None = None) -> LabelResult:
    """Join the labels in ``source`` (a file or a table) to the logged predictions of ``model``."""
    from assay.table import DatasetVersion

    incoming = _read(source, id_column, label_column)
    incoming = incoming.filter(pc.invert(pc.is_null(incoming.column("request_id"))))
    target = branch or repo.branch
    if target is None:
        raise InputError("HEAD is detached: labels are committed on a branch; check one out and try again")
    name = labels_dataset(model)

    def build(_tip: str | None, datasets: dict[str, str]) -> Change:
        log = datasets.get(dataset_name(model))
        if log is None:
            raise RefNotFound(f"no prediction log {dataset_name(model)!r} on {target!r}: serve the model "
                              f"(`assay serve {model}`) before labelling its predictions")
        logged = DatasetVersion(repo.store, repo.read_manifest(log)).to_arrow(["request_id"]).column(0)
        known = incoming.filter(pc.is_in(incoming.column("request_id"), value_set=logged))
        unknown = incoming.num_rows - known.num_rows
        if known.num_rows == 0:
            _refuse_no_match(incoming, model)
            return Change(None, result=LabelResult(name, 0, 0, unknown, None))
        known = known.append_column("labelled_at", pa.array([time.time()] * known.num_rows, pa.float64()))
        datasets[name], result = repo.build_version(name, known, base=datasets.get(name), key="request_id",
                                                    mode="upsert")
        text = message or f"label {result.added + result.updated} predictions of {model}"
        return Change(datasets, text, LabelResult(name, result.added + result.updated, known.num_rows, unknown, None))

    commit, got = commit_on_branch(repo, target, build,
                                   refused=f"branch {target!r} kept moving while labelling; nothing was written, "
                                           "try again")
    return replace(got, commit=commit) if commit else got
