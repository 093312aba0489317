"""Revision syntax: names, ``REV~N``, ``REV^``, commit prefixes, ``REV@{timestamp}``, ``DATASET@REV``."""

from __future__ import annotations

import datetime as dt
import re

from assay.errors import InputError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SUFFIX = re.compile(r"(~\d*|\^+)$")


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


def split_dataset_rev(spec: str) -> tuple[str, str | None]:
    """``train@v1`` -> ("train", "v1"); ``train`` -> ("train", None); ``train@{ts}`` keeps the braces."""
    name, sep, rev = spec.partition("@")
    if not sep:
        return name, None
    return name, ("@" + rev if rev.startswith("{") else rev)


def split_suffixes(rev: str) -> tuple[str, list[int], str | None]:
    """Base revision, first-parent steps back, and a timestamp from ``base@{ts}~N``."""
    steps: list[int] = []
    while True:
        m = _SUFFIX.search(rev)
        if not m or m.start() == 0:
            break
        s = m.group(0)
        steps.insert(0, len(s) if s.startswith("^") else int(s[1:] or 1))
        rev = rev[: m.start()]
    when = None
    if rev.endswith("}") and "@{" in rev:
        rev, _, stamp = rev.rpartition("@{")
        when = stamp[:-1]
        rev = rev or "HEAD"
    return rev, steps, when


def parse_time(text: str) -> float:
    """An ISO 8601 date or time (UTC unless it names a zone) as seconds since the epoch."""
    try:
        t = dt.datetime.fromisoformat(text.strip().replace(" ", "T", 1) if " " in text.strip() else text.strip())
    except ValueError as e:
        raise InputError(f"cannot read {text!r} as a time; use ISO 8601, e.g. 2026-11-27T10:30:00") from e
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()
