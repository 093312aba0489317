"""The commit graph of ``assay log --graph``, drawn as git draws it: one lane per line of history, ``*`` for a
commit, ``|\\`` where a merge's second parent opens a lane, ``|/`` where two lanes meet at a common commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def graph_rows(entries: Sequence[tuple[str, Any]]) -> list[tuple[str | None, str]]:
    """For commits newest first (each with ``parents``): rows of (commit or None for a connecting line, prefix).

    Parents the list leaves out (``--author``, ``--since``, ``-n``) get no lane: the graph stays as wide as
    what it shows."""
    lanes: list[str] = []
    rows: list[tuple[str | None, str]] = []
    shown = {oid for oid, _ in entries}  # a filtered or limited log: lanes only to commits it lists
    for oid, c in entries:
        if oid not in lanes:
            lanes.append(oid)
        for j in reversed([i for i, lane in enumerate(lanes) if lane == oid][1:]):
            rows.append((None, _meet(len(lanes), j)))
            del lanes[j]
        col = lanes.index(oid)
        rows.append((oid, " ".join("*" if i == col else "|" for i in range(len(lanes))) + " "))
        parents = [p for p in c.parents if p in shown]
        if len(parents) > 1:
            rows.append((None, " ".join("|" for _ in range(col + 1)) + "\\" + " \\" * (len(lanes) - col - 1)))
        lanes[col:col + 1] = [p for p in parents if p not in lanes[:col]] if parents else []
    return rows


def _meet(n: int, j: int) -> str:
    """Lane ``j`` joins the lane to its left; the lanes right of it move one to the left."""
    return "| " * (j - 1) + "|/" + " /" * (n - j - 1)
