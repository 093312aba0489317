"""Alerts of a model, kept in the repository, and the model's default rules.

Alerts are the dataset ``alerts.NAME`` (keyed by ``id``), committed on the branch like labels are: each
evaluation that opens, updates or resolves an alert writes one commit (moved by compare-and-swap, made again on
the new tip when the log or another evaluator moved the branch first). An alert is one episode of a rule
breaching for one feature: it opens as ``firing`` with a stable id, is updated (value, window, ``updated_at``)
while the rule keeps breaching, and becomes ``resolved`` when an evaluation with data finds the rule clear; a
later breach opens a new alert. The model's default rules are the dataset ``alerts.NAME.rules`` (one row: the
rules file's text), set with ``set_rules`` (``assay monitor rules set NAME FILE``).

``assay monitor run`` lives in ``assay.monitor.evaluate``; ``run`` is re-exported here.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import pyarrow as pa

from assay.errors import InputError, RefNotFound, RulesError
from assay.monitor.rules import RuleSet, parse_rules
from assay.repo.onbranch import Change, commit_on_branch

STATES = ("firing", "resolved")
SCHEMA = pa.schema([("id", pa.string()), ("model", pa.string()), ("rule", pa.string()), ("metric", pa.string()),
                    ("feature", pa.string()), ("severity", pa.string()), ("value", pa.float64()),
                    ("threshold", pa.float64()), ("direction", pa.string()), ("window_start", pa.float64()),
                    ("window_end", pa.float64()), ("fired_at", pa.float64()), ("updated_at", pa.float64()),
                    ("resolved_at", pa.float64()), ("state", pa.string())])
RULES_SCHEMA = pa.schema([("model", pa.string()), ("text", pa.string()), ("set_at", pa.float64())])


def alerts_dataset(model: str) -> str:
    return f"alerts.{model}"


def rules_dataset(model: str) -> str:
    return f"alerts.{model}.rules"


@dataclass(frozen=True)
class Alert:
    """One episode of a rule breaching for one feature (``*``: the window as a whole)."""

    id: str
    model: str
    rule: str
    metric: str
    feature: str
    severity: str
    value: float
    threshold: float
    window_start: float
    window_end: float
    fired_at: float
    state: str = "firing"
    direction: str = "above"
    updated_at: float = 0.0
    resolved_at: float | None = None

    @staticmethod
    def make_id(model: str, rule: str, feature: str, fired_at: float) -> str:
        return hashlib.sha256(f"{model}\0{rule}\0{feature}\0{fired_at!r}".encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alert:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _read(repo: Any, name: str, rev: str | None) -> pa.Table | None:
    try:
        return repo.dataset(name, rev).to_arrow()
    except (RefNotFound, KeyError):
        return None


def list_alerts(repo: Any, model: str, *, state: str | None = None, rev: str | None = None) -> list[Alert]:
    """The alerts of ``model`` (newest first), or only those in ``state`` (firing, resolved)."""
    if state is not None and state not in STATES:
        raise InputError(f"unknown alert state {state!r}; use one of {', '.join(STATES)}")
    table = _read(repo, alerts_dataset(model), rev)
    alerts = [Alert.from_dict(r) for r in table.to_pylist()] if table is not None else []
    alerts = [a for a in alerts if state is None or a.state == state]
    return sorted(alerts, key=lambda a: (a.fired_at, a.id), reverse=True)


def get_alert(repo: Any, model: str, id: str, *, rev: str | None = None) -> Alert:
    """The alert with ``id`` (or a unique prefix of it, at least 4 characters)."""
    alerts = list_alerts(repo, model, rev=rev)
    found = [a for a in alerts if a.id == id] or ([a for a in alerts if a.id.startswith(id)] if len(id) >= 4 else [])
    if len(found) == 1:
        return found[0]
    if found:
        raise RefNotFound(f"alert id {id!r} of model {model!r} is ambiguous; give more characters")
    raise RefNotFound(f"no alert {id!r} of model {model!r}; see `assay monitor alerts {model}`")


def _commit(repo: Any, name: str, key: str, make: Callable[[pa.Table | None], pa.Table | None], message: str,
            branch: str | None) -> str | None:
    """Upsert the rows ``make(current table)`` gives into ``name`` on the branch; None when it gives nothing."""
    from assay.table import DatasetVersion

    target = branch or repo.branch
    if target is None:
        raise InputError("HEAD is detached: alerts and rules are committed on a branch; check one out and try again")

    def build(_tip: str | None, datasets: dict[str, str]) -> Change:
        current = DatasetVersion(repo.store, repo.read_manifest(datasets[name])).to_arrow() if name in datasets \
            else None
        rows = make(current)
        if rows is None or rows.num_rows == 0:
            return Change(None)
        datasets[name], _ = repo.build_version(name, rows, base=datasets.get(name), key=key, mode="upsert")
        return Change(datasets, message)

    commit, _ = commit_on_branch(repo, target, build, refused=f"branch {target!r} kept moving while writing {name}; "
                                                              "nothing was written, try again")
    return commit


def store_alerts(repo: Any, model: str, merge: Callable[[list[Alert]], Sequence[Alert]], *,
                 branch: str | None = None) -> tuple[list[Alert], str | None]:
    """Write the alerts ``merge(alerts stored at the tip)`` gives (new or changed ones) in one commit."""
    written: list[Alert] = []

    def make(current: pa.Table | None) -> pa.Table | None:
        stored = [Alert.from_dict(r) for r in current.to_pylist()] if current is not None else []
        written[:] = list(merge(stored))
        if not written:
            return None
        return pa.Table.from_pylist([a.to_dict() for a in written], SCHEMA)

    commit = _commit(repo, alerts_dataset(model), "id", make, f"monitor {model}: alerts opened, updated or resolved",
                     branch)
    return written, commit


def resolved(alert: Alert, now: float) -> Alert:
    return replace(alert, state="resolved", resolved_at=now, updated_at=now)


def set_rules(repo: Any, model: str, text: str, *, where: str = "<rules>", branch: str | None = None,
              check: Callable[[RuleSet], object] | None = None) -> str:
    """Commit ``text`` (a rules file) as the default rules of ``model``, after parsing (and ``check``)."""
    rules = parse_rules(text, where)
    if check is not None:
        check(rules)
    table = pa.Table.from_pylist([{"model": model, "text": text, "set_at": time.time()}], RULES_SCHEMA)
    commit = _commit(repo, rules_dataset(model), "model", lambda _: table, f"monitor {model}: set alert rules",
                     branch)
    assert commit is not None
    return commit


def stored_rules(repo: Any, model: str, *, rev: str | None = None) -> RuleSet | None:
    """The default rules of ``model`` (None when none were set)."""
    table = _read(repo, rules_dataset(model), rev)
    if table is None or table.num_rows == 0:
        return None
    text = table.column("text")[0].as_py()
    try:
        return parse_rules(text, f"{rules_dataset(model)} (the rules set for {model})")
    except RulesError as e:
        raise RulesError(f"{e}; set them again with `assay monitor rules set {model} FILE`") from e


def __getattr__(name: str) -> Any:  # ``alerts.run``: the evaluation, kept in its own module
    if name in ("run", "evaluate", "Evaluation"):
        from assay.monitor import evaluate

        return getattr(evaluate, name)
    raise AttributeError(name)
