"""Revision syntax: names, ``REV~N``, ``REV^``, commit prefixes, ``REV@{timestamp}``, ``DATASET@REV``."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from assay.errors import InputError, RefNotFound

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_REVISION = re.compile(r"^(?P<base>[^~^@{}]*)(?:@\{(?P<when>[^{}]+)\})?(?P<steps>(?:[~^]\d*)*)$")
_STEP = re.compile(r"[~^]\d*")


def check_ref_name(name: str, what: str = "branch") -> None:
    if not NAME_RE.match(name) or ".." in name or name.endswith("/") or name.endswith(".") or name == "HEAD":
        raise InputError(
            f"{name!r} is not a valid {what} name: use letters, digits, '.', '_', '-' and '/', "
            "starting with a letter or digit, without '..'"
        )


def check_dataset_name(name: str) -> None:
    if not DATASET_RE.match(name):
        raise InputError(
            f"{name!r} is not a valid dataset name: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )


@dataclass(frozen=True)
class DatasetSpec:
    """``DATASET[@REV]`` read once: the dataset's name and the revision (None: the working version)."""

    name: str
    rev: str | None


def parse_dataset_spec(spec: str) -> DatasetSpec:
    """Read ``DATASET[@REV]``, the one way every command and the API split it.

    ``train`` -> (train, None); ``train@v1`` -> (train, v1); ``train@main~2``, ``train@HEAD^2``,
    ``train@{2026-01-01}`` (the working branch at that time, kept as ``@{...}``) and ``train@main@{...}``.
    """
    name, sep, rev = spec.partition("@")
    if not name:
        raise InputError(f"{spec!r} names no dataset: write DATASET or DATASET@REV, e.g. train@HEAD~1")
    if sep and not rev:
        raise InputError(f"{spec!r} names no revision after '@': write DATASET@REV, e.g. {name}@HEAD, or just {name}")
    check_dataset_name(name)
    if not sep:
        return DatasetSpec(name, None)
    return DatasetSpec(name, "@" + rev if rev.startswith("{") else rev)


def split_dataset_rev(spec: str) -> tuple[str, str | None]:
    """``train@v1`` -> ("train", "v1"); ``train`` -> ("train", None); see ``parse_dataset_spec``."""
    d = parse_dataset_spec(spec)
    return d.name, d.rev


@dataclass(frozen=True)
class Revision:
    """A revision read once: a base name, a time (``@{...}``) and steps back through parents.

    Each step is ``("~", n)`` (n first parents back) or ``("^", n)`` (the n-th parent; ``^0`` the commit itself).
    """

    base: str
    when: str | None
    steps: tuple[tuple[str, int], ...]


def parse_revision(rev: str) -> Revision:
    """Read a revision as git users type it: ``main``, ``v1``, ``a1b2c3``, ``HEAD~2``, ``HEAD^2``, ``main^^~3``,
    ``main@{2026-01-01}``, ``@{2026-01-01T10:00}`` (HEAD then), ``v1@{...}~1``."""
    m = _REVISION.match(rev)
    if m is None or not (m.group("base") or m.group("when")):
        raise RefNotFound(f"cannot read revision {rev!r}: write a branch, tag or commit, optionally followed by "
                          "@{TIME}, ~N (N first parents back) or ^N (the N-th parent), e.g. main~2, HEAD^2, "
                          "main@{2026-01-01}")
    steps = tuple((s[0], int(s[1:]) if len(s) > 1 else 1) for s in _STEP.findall(m.group("steps")))
    return Revision(m.group("base") or "HEAD", m.group("when"), steps)


def walk_steps(oid: str, steps: Iterable[tuple[str, int]], parents: Callable[[str], Sequence[str]],
               spec: str) -> str:
    """Follow ``steps`` (see ``Revision``) from ``oid``, reading each commit's parents with ``parents``."""
    for op, n in steps:
        if op == "^":
            if n == 0:
                continue
            found = parents(oid)
            if len(found) < n:
                have = f"has {len(found)} parent(s)" if found else "is the first commit"
                raise RefNotFound(f"{spec!r}: commit {oid[:12]} {have}, so it has no parent number {n}")
            oid = found[n - 1]
            continue
        for _ in range(n):
            found = parents(oid)
            if not found:
                raise RefNotFound(f"{spec!r} goes back further than the first commit")
            oid = found[0]
    return oid


def parse_time(text: str) -> float:
    """An ISO 8601 date or time (UTC unless it names a zone) as seconds since the epoch."""
    try:
        t = dt.datetime.fromisoformat(text.strip().replace(" ", "T", 1) if " " in text.strip() else text.strip())
    except ValueError as e:
        raise InputError(f"cannot read {text!r} as a time; use ISO 8601, e.g. 2026-11-27T10:30:00") from e
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()
