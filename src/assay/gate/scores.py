"""Reading and writing the scores dataset of a dataset (``DATASET.scores``): filter, sort, score a version."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from assay._types import Progress
from assay.errors import InputError, RefNotFound
from assay.gate.policy import Policy, default_policy
from assay.repo import revisions
from assay.screens import SCREENS, ScreenRun, run_screens, scores_name, scores_table, screen_data
from assay.table.sandbox import check_condition, sandbox

if TYPE_CHECKING:
    from assay.repo import Repository


def read_scores(repo: Repository, spec: str, *, where: str | None = None, sort: str | None = None,
                descending: bool = False, flagged: str | None = None, limit: int | None = None) -> pa.Table:
    """The scores of ``DATASET[@REV]``, filtered by a DuckDB condition or a screen's flag, sorted, limited.

    ``flagged`` is a screen name, or ``any`` for samples that any screen flagged.
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


def screen_version(repo: Repository, spec: str, policy: Policy | None = None, *, save: bool = False,
                   progress: Progress | None = None) -> ScreenRun:
    """Run the policy's screens over every sample of ``DATASET[@REV]``; ``save`` stages the scores."""
    policy = policy or default_policy()
    name, rev = revisions.split_dataset_rev(spec)
    version = repo.dataset(name, rev)
    data = screen_data(version, policy.features, progress=progress)
    run = run_screens(data, [r.build() for r in policy.rules], progress=progress)
    if save:
        batch = (version.commit or "working")[:12]
        repo.add(scores_name(name), scores_table(run, batch=batch, actions=["scored"] * data.n), key=["sample"],
                 mode="replace")
    return run
