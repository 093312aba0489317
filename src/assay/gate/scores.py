"""Reading and writing the scores dataset of a dataset (``DATASET.scores``): filter, sort, score a version."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from assay._types import Progress
from assay.errors import InputError, RefNotFound
from assay.gate.policy import Policy, default_policy
from assay.repo import revisions
from assay.screens import SCREENS, ScreenRun, run_screens, scores_name, scores_table, screen_data
from assay.table import DatasetVersion
from assay.table.manifest import ID_COLUMN
from assay.table.sandbox import check_condition, sandbox

if TYPE_CHECKING:
    from assay.repo import Repository


def read_scores(repo: Repository, spec: str, *, where: str | None = None, sort: str | None = None,
                descending: bool = False, flagged: str | None = None, limit: int | None = None) -> pa.Table:
    """The scores of ``DATASET[@REV]``, filtered by a DuckDB condition or a screen's flag, sorted, limited.

    Each row carries, after its hex ``sample`` id (the dataset's ``_assay_id``), what the user knows the
    sample by: the dataset's key columns, or ``path`` for a folder dataset (null for a sample no longer in
    the dataset); the condition and the sort may use them. ``flagged`` is a screen name, or ``any`` for
    samples that any screen flagged.
    """
    import duckdb

    if where is not None:
        check_condition(where, "the --where condition")
    name, rev = revisions.split_dataset_rev(spec)
    try:
        table = repo.dataset(scores_name(name), rev).to_arrow()
    except RefNotFound as e:
        raise RefNotFound(f"dataset {name!r} has no scores {('at ' + rev) if rev else 'in the working version'}; "
                          f"`assay ingest` writes them, or `assay screen {name} --save`") from e
    with contextlib.suppress(RefNotFound):  # scores kept without their dataset: nothing to add
        table = with_sample_keys(table, repo.dataset(name, rev))
    conditions = [f"({where})"] if where else []
    if flagged == "any":
        conditions.append("(" + " OR ".join(f"coalesce({s}_flag, false)" for s in SCREENS) + ")")
    elif flagged is not None:
        if flagged not in SCREENS:
            raise InputError(f"unknown screen {flagged!r}; use one of {', '.join(SCREENS)} or 'any'")
        conditions.append(f"coalesce({flagged}_flag, false)")
    if sort is not None and sort not in table.column_names:
        raise InputError(f"cannot sort by {sort!r}: the scores have columns {table.column_names}")
    query = "SELECT * FROM scores" + (" WHERE " + " AND ".join(conditions) if conditions else "")
    if sort:
        query += f' ORDER BY "{sort}" {"DESC" if descending else "ASC"} NULLS LAST'
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    con = sandbox()  # the condition reads only the scores registered here
    con.register("scores", table)
    try:
        return con.sql(query).to_arrow_table()
    except duckdb.Error as e:
        raise InputError(f"the condition {where!r} does not run on the scores: {str(e).splitlines()[0]}") from e
    finally:
        con.close()


def sample_key_columns(version: DatasetVersion) -> list[str]:
    """What users know a sample of ``version`` by: its key columns, or ``path`` for a folder dataset."""
    return list(version.key or ()) or (["path"] if "path" in version.schema.names else [])


def with_sample_keys(scores: pa.Table, version: DatasetVersion) -> pa.Table:
    """``scores`` with the key columns (or path) of ``version`` after ``sample``, matched on the sample id;
    a key column whose name the scores already use is added as ``key_NAME``."""
    cols = sample_key_columns(version)
    if not cols:
        return scores
    keys = version.to_arrow(cols, with_ids=True)
    at = pc.index_in(scores.column("sample"), value_set=keys.column(ID_COLUMN).combine_chunks())
    for offset, c in enumerate(cols, start=1):
        name = f"key_{c}" if c in scores.column_names else c
        scores = scores.add_column(scores.column_names.index("sample") + offset, pa.field(
            name, keys.schema.field(c).type), keys.column(c).take(at))
    return scores


def screen_version(repo: Repository, spec: str, policy: Policy | None = None, *, save: bool = False,
                   progress: Progress | None = None) -> ScreenRun:
    """Run the policy's screens over every sample of ``DATASET[@REV]``; ``save`` stages the scores. The
    repository's engine runs the nearest-neighbour queries."""
    policy = policy or default_policy()
    name, rev = revisions.split_dataset_rev(spec)
    version = repo.dataset(name, rev)
    data = screen_data(version, policy.features, progress=progress, engine=repo.engine)
    run = run_screens(data, [r.build() for r in policy.rules], progress=progress)
    if save:
        batch = (version.commit or "working")[:12]
        repo.add(scores_name(name), scores_table(run, batch=batch, actions=["scored"] * data.n), key=["sample"],
                 mode="replace")
    return run
