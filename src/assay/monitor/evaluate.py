"""One evaluation of a model's alert rules: ``assay monitor run NAME`` and each tick of a monitoring server.

For each rule, the last ``for`` consecutive windows of its size are cut from the prediction log (time windows end
now: ``[now - k*w, now - (k-1)*w)``; row windows are the last ``for`` blocks of that many rows) and the rule
breaches when its metric is beyond the threshold in every one of them. A window with no rows has ``rows`` 0
and no other value: a rule on another metric reports ``no data`` and neither fires nor resolves. Alerts that
open or resolve are stored (``assay.monitor.alerts``), queued for the rules' webhooks (``assay.monitor.webhooks``),
and the latest values are written to ``.assay/monitor/state/NAME.json``, which a server's ``/metrics`` exports.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from assay.errors import RulesError
from assay.monitor.alerts import Alert, resolved, store_alerts, stored_rules
from assay.monitor.rules import Rule, RuleSet, check_rules
from assay.monitor.values import MetricInfo, catalog, window_values
from assay.monitor.webhooks import DeliveryResult, Outbox
from assay.monitor.window import Window, production, select
from assay.store.fs import atomic_write

_EMPTY = pa.table({"time": pa.array([], pa.float64())})


@dataclass(frozen=True)
class RuleResult:
    """A rule for one feature: its value in each of its windows (oldest first) and whether it fires."""

    rule: str
    metric: str
    feature: str
    severity: str
    threshold: float
    direction: str
    window: str
    windows: tuple[tuple[float, float], ...]
    values: tuple[float | None, ...]
    status: str  # firing | ok | no data | error
    error: str | None = None

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    @property
    def value(self) -> float | None:
        return next((v for v in reversed(self.values) if v is not None), None)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "metric": self.metric, "feature": self.feature, "severity": self.severity,
                "threshold": self.threshold, "direction": self.direction, "window": self.window,
                "windows": [list(w) for w in self.windows], "values": list(self.values), "value": self.value,
                "status": self.status, "error": self.error}


@dataclass(frozen=True)
class Evaluation:
    model: str
    evaluated_at: float
    results: tuple[RuleResult, ...]
    opened: tuple[Alert, ...] = ()
    updated: tuple[Alert, ...] = ()
    resolved: tuple[Alert, ...] = ()
    commit: str | None = None
    queued: int = 0  # webhook deliveries put in the outbox
    delivery: DeliveryResult | None = field(default=None, compare=False)

    @property
    def failed(self) -> bool:
        """An error-severity rule fires, or a rule could not be evaluated: ``assay monitor run`` exits 1."""
        return any((r.firing and r.severity == "error") or r.status == "error" for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "evaluated_at": self.evaluated_at, "failed": self.failed,
                "results": [r.to_dict() for r in self.results], "opened": [a.to_dict() for a in self.opened],
                "updated": [a.to_dict() for a in self.updated], "resolved": [a.to_dict() for a in self.resolved],
                "commit": self.commit, "queued": self.queued,
                "delivery": self.delivery.to_dict() if self.delivery else None}


def rules_for(repo: Any, model: str, rules: RuleSet | None) -> RuleSet:
    """``rules``, else the model's stored default rules; RulesError when there are none."""
    found = rules if rules is not None else stored_rules(repo, model)
    if found is None:
        raise RulesError(f"model {model!r} has no alert rules: give a file with --rules FILE, or set its default "
                         f"rules with `assay monitor rules set {model} FILE`")
    return found


def check(repo: Any, model: str, rules: RuleSet) -> dict[str, MetricInfo]:
    """Check ``rules`` against ``model``'s features and the known metrics; the known metrics."""
    from assay.models import registry
    from assay.monitor.window import feature_names

    mv = registry.get(repo, model)
    known, missing = catalog()
    check_rules(rules, metrics=known, missing=missing, features=feature_names(mv), model=model)
    return known


def evaluate(repo: Any, model: str, rules: RuleSet | None = None, *, now: float | None = None,
             branch: str | None = None) -> Evaluation:
    """Evaluate the rules once, store what opened, changed or resolved, and queue the webhooks."""
    rules = rules_for(repo, model, rules)
    known = check(repo, model, rules)
    now = time.time() if now is None else now
    log = _log(repo, model, rules.rules, known, now)
    results: list[RuleResult] = []
    cache: dict[tuple[Window, int], list[tuple[float, float, dict[str, dict[str, float]], dict[str, str]]]] = {}
    for rule in rules.rules:
        group = (rule.window, rule.for_)
        if group not in cache:
            metrics = {r.metric for r in rules.rules if (r.window, r.for_) == group}
            cache[group] = [(s, e, *window_values(repo, model, rows, metrics, reference=rules.reference))
                            for s, e, rows in _windows(log, rule.window, rule.for_, now)]
        results += _results(rule, known[rule.metric], cache[group])
    opened, updated, closed, commit = _store(repo, model, results, now, branch)
    queued = _queue(repo, rules, model, opened, closed)
    _write_state(repo, model, now, results)
    return Evaluation(model, now, tuple(results), tuple(opened), tuple(updated), tuple(closed), commit, queued)


def run(repo: Any, model: str, rules: RuleSet | None = None, *, now: float | None = None,
        branch: str | None = None, deliver_s: float = 10.0) -> Evaluation:
    """``evaluate``, then post what the outbox holds (for at most about ``deliver_s`` seconds): each run is a
    retry of every waiting delivery, whatever its backoff."""
    from dataclasses import replace

    evaluation = evaluate(repo, model, rules, now=now, branch=branch)
    return replace(evaluation, delivery=Outbox.of(repo.dir).deliver(now=math.inf, budget_s=deliver_s))


def _log(repo: Any, model: str, rules: Sequence[Rule], known: dict[str, MetricInfo], now: float) -> pa.Table:
    from assay.serve.log import dataset_name

    if dataset_name(model) not in repo.datasets():
        return _EMPTY  # not served yet: every window is empty
    labels = any(known[r.metric].source == "performance" for r in rules)
    spans = [r.window.seconds * r.for_ for r in rules if r.window.seconds is not None]
    since = now - max(spans) if len(spans) == len(rules) else None
    table: pa.Table = production(repo, model, since=since, labels=labels)
    return table


def _windows(log: pa.Table, window: Window, count: int, now: float) -> list[tuple[float, float, pa.Table]]:
    """The last ``count`` windows of ``log``, oldest first: ``(start, end, rows)``."""
    out = []
    if window.seconds is not None:
        w = window.seconds
        for k in range(count, 0, -1):
            start, end = now - k * w, now - (k - 1) * w
            out.append((start, end, select(log, since=start, until=end if k > 1 else None)))
        return out
    assert window.rows is not None
    total, times = log.num_rows, log.column("time").to_numpy() if log.num_rows else None
    for k in range(count, 0, -1):
        hi, lo = max(0, total - (k - 1) * window.rows), max(0, total - k * window.rows)
        rows = log.slice(lo, hi - lo)
        if times is None or hi == lo:
            out.append((now, now, rows))
        else:
            out.append((float(times[lo]), float(times[hi - 1]), rows))
    return out


def _results(rule: Rule, info: MetricInfo,
             windows: list[tuple[float, float, dict[str, dict[str, float]], dict[str, str]]]) -> list[RuleResult]:
    direction = rule.direction or info.direction
    if rule.feature != "*":
        targets = [rule.feature]
    elif any("*" in w[2].get(rule.metric, {}) for w in windows):
        targets = ["*"]
    else:
        targets = sorted({f for w in windows for f in w[2].get(rule.metric, {})}) or ["*"]
    error = windows[-1][3].get(info.source) if windows else None
    spans = tuple((s, e) for s, e, _, _ in windows)
    out = []
    for feature in targets:
        values = tuple(_finite(w[2].get(rule.metric, {}).get(feature)) for w in windows)
        if error is not None:
            status = "error"
        elif values[-1] is None:
            status = "no data"
        elif all(v is not None and _breach(v, rule.threshold, direction) for v in values):
            status = "firing"
        else:
            status = "ok"
        out.append(RuleResult(rule.name, rule.metric, feature, rule.severity, rule.threshold, direction,
                              str(rule.window), spans, values, status, error))
    return out


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _breach(value: float, threshold: float, direction: str) -> bool:
    return value > threshold if direction == "above" else value < threshold


def _store(repo: Any, model: str, results: list[RuleResult], now: float,
           branch: str | None) -> tuple[list[Alert], list[Alert], list[Alert], str | None]:
    opened: list[Alert] = []
    updated: list[Alert] = []
    closed: list[Alert] = []

    def merge(stored: list[Alert]) -> list[Alert]:
        for done in (opened, updated, closed):  # made again on a new tip: start afresh
            done.clear()
        firing = {(a.rule, a.feature): a for a in stored if a.state == "firing"}
        for r in results:
            a = firing.get((r.rule, r.feature))
            start, end = r.windows[-1] if r.windows else (now, now)
            if r.firing and a is None:
                opened.append(Alert(Alert.make_id(model, r.rule, r.feature, now), model, r.rule, r.metric, r.feature,
                                    r.severity, r.value or 0.0, r.threshold, start, end, now, "firing", r.direction,
                                    now))
            elif r.firing and a is not None and start >= a.window_end:  # a fresh window's worth of evidence
                updated.append(Alert(a.id, model, r.rule, r.metric, r.feature, r.severity, r.value or 0.0,
                                     r.threshold, start, end, a.fired_at, "firing", r.direction, now))
            elif r.status == "ok" and a is not None:
                closed.append(resolved(a, now))
        return [*opened, *updated, *closed]

    _, commit = store_alerts(repo, model, merge, branch=branch)
    return opened, updated, closed, commit


def _queue(repo: Any, rules: RuleSet, model: str, opened: list[Alert], closed: list[Alert]) -> int:
    if not rules.webhooks or not (opened or closed):
        return 0
    outbox = Outbox.of(repo.dir)
    n = 0
    for event, alerts in (("firing", opened), ("resolved", closed)):
        for a in alerts:
            for hook in rules.webhooks:
                outbox.put(hook.url, {"version": 1, "event": event, "model": model, "alert": a.to_dict(),
                                      "text": f"[{a.severity}] {model}: {a.rule} ({a.metric} of {a.feature} = "
                                              f"{a.value:.4g}, {a.direction} {a.threshold:g}) {event}"},
                           timeout=hook.timeout)
                n += 1
    return n


def state_path(assay_dir: Path, model: str) -> Path:
    return Path(assay_dir) / "monitor" / "state" / f"{model}.json"


def _write_state(repo: Any, model: str, now: float, results: list[RuleResult]) -> None:
    """The latest values and rule states, for the gauges of a server's /metrics."""
    values = {(r.metric, r.feature): r.value for r in results if r.value is not None}
    rules: dict[str, dict[str, Any]] = {}
    for r in results:
        entry = rules.setdefault(r.rule, {"rule": r.rule, "severity": r.severity, "firing": 0, "status": "ok"})
        entry["firing"] = max(entry["firing"], int(r.firing))
        if r.status == "error":
            entry["status"] = "error"
    doc = {"model": model, "evaluated_at": now,
           "values": [{"metric": m, "feature": f, "value": v} for (m, f), v in sorted(values.items())],
           "rules": list(rules.values())}
    path = state_path(repo.dir, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(doc).encode(), durable=False)


def read_state(assay_dir: Path, model: str) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(state_path(assay_dir, model).read_bytes())
    except (OSError, ValueError):
        return None
    return state
