"""Alert rules: a YAML file parsed with line numbers (the suites' machinery), checked against the model's
features and the metrics this installation knows.

::

    format: 1
    window: 1h                  # the default window of every rule (a duration, or a row count: 1000 rows)
    reference: digits-train@v1  # optional: what drift compares with (default: the model's training version)
    webhooks:                   # each alert that opens or resolves is posted here as JSON
      - http://127.0.0.1:9000/alerts
      - url: https://hooks.example.com/assay
        timeout: 5
    rules:
      - name: traffic           # optional (default METRIC-FEATURE), unique in the file
        metric: rows
        threshold: 100
        direction: below        # above (default for most metrics) or below (rows, accuracy, f1, auc, estimates)
        severity: error         # error (exit 1 of `assay monitor run`) or warning
      - metric: psi
        feature: "*"            # every feature (each its own alert), or one feature's name, or prediction
        threshold: 0.2
        window: 1000 rows
        for: 3                  # fires when the last 3 consecutive windows all breach
        severity: warning

Every mistake names its line and says what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from assay.checks.suite import compose_yaml
from assay.errors import InputError, RulesError
from assay.monitor.window import Window

RULES_FORMAT = 1
SEVERITIES = ("error", "warning")
HOUR = Window(seconds=3600.0)
DIRECTIONS = ("above", "below")
_TOP = ("format", "model", "window", "reference", "webhooks", "rules")
_RULE = ("name", "metric", "feature", "threshold", "direction", "window", "for", "severity")


@dataclass(frozen=True)
class Webhook:
    url: str
    timeout: float = 5.0

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "timeout": self.timeout}


@dataclass(frozen=True)
class Rule:
    """One rule: ``metric`` of ``feature`` (``*``: every feature) beyond ``threshold`` for ``for_`` windows."""

    name: str
    metric: str
    threshold: float
    feature: str = "*"
    direction: str | None = None  # None: the metric's own (see assay.monitor.values)
    window: Window = HOUR
    for_: int = 1
    severity: str = "error"
    line: int = 0
    lines: Mapping[str, int] = field(default_factory=dict, compare=False)  # key -> line

    def where(self, key: str) -> int:
        return self.lines.get(key, self.line)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "feature": self.feature, "threshold": self.threshold,
                "direction": self.direction, "window": str(self.window), "for": self.for_,
                "severity": self.severity}


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    webhooks: tuple[Webhook, ...] = ()
    reference: str | None = None
    model: str | None = None
    where: str = "<rules>"
    source: str = field(default="", compare=False)
    format: int = RULES_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "model": self.model, "reference": self.reference,
                "webhooks": [w.to_dict() for w in self.webhooks], "rules": [r.to_dict() for r in self.rules]}


def load_rules(path: str | Path) -> RuleSet:
    """The rules of a file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise RulesError(f"{path}: no such rules file; write one (see docs/monitoring.md, '## Alerts')") from e
    except (OSError, UnicodeDecodeError) as e:
        raise RulesError(f"{path}: cannot read the rules file ({e})") from e
    return parse_rules(text, str(path))


def parse_rules(text: str, where: str = "<rules>") -> RuleSet:
    """Parse a rules file's text; every error names ``where`` and the line."""
    root = compose_yaml(text, where, RulesError)
    if not isinstance(root, yaml.MappingNode):
        raise RulesError(f"{where}: a rules file is a mapping with 'rules' (a list), e.g. 'rules: [{{metric: rows, "
                         "threshold: 100}}]'")
    top = {k.value: (k, v) for k, v in root.value}
    for name, (k, _) in top.items():
        if name not in _TOP:
            raise RulesError(f"{where} line {_line(k)}: unknown key {name!r}; a rules file has {', '.join(_TOP)}")
    fmt = _get(top, "format", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt > RULES_FORMAT:
        raise RulesError(f"{where} line {_at(top, 'format', root)}: rules format {fmt!r} is not one this assay "
                         f"reads (up to {RULES_FORMAT}); upgrade assay")
    default_window = _window(_get(top, "window", "1h"), where, _at(top, "window", root))
    model, reference = _text(top, "model", where, root), _text(top, "reference", where, root)
    webhooks = _webhooks(top.get("webhooks"), where)
    node = top.get("rules", (None, None))[1]
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise RulesError(f"{where} line {_at(top, 'rules', root)}: 'rules' must be a list of rules, each with "
                         "'metric' and 'threshold'")
    rules = tuple(_rule(item, where, default_window) for item in node.value)
    seen: dict[str, int] = {}
    for r in rules:
        if r.name in seen:
            raise RulesError(f"{where} line {r.line}: a second rule named {r.name!r} (the first is on line "
                             f"{seen[r.name]}); give each rule its own 'name'")
        seen[r.name] = r.line
    return RuleSet(rules, webhooks, reference, model, where, text)


def _rule(node: yaml.Node, where: str, default_window: Window) -> Rule:
    line = _line(node)
    if not isinstance(node, yaml.MappingNode):
        raise RulesError(f"{where} line {line}: each rule is a mapping with 'metric' and 'threshold'")
    fields = {k.value: (k, v) for k, v in node.value}
    lines = {name: _line(k) for name, (k, _) in fields.items()}
    for name in fields:
        if name not in _RULE:
            raise RulesError(f"{where} line {lines[name]}: unknown key {name!r}; a rule has {', '.join(_RULE)}")
    metric = _get(fields, "metric", None)
    if not isinstance(metric, str) or not metric:
        raise RulesError(f"{where} line {line}: this rule has no 'metric: NAME' (e.g. rows, null_share, psi, "
                         "accuracy)")
    threshold = _get(fields, "threshold", None)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise RulesError(f"{where} line {lines.get('threshold', line)}: rule {metric!r} needs a numeric "
                         f"'threshold', not {threshold!r}")
    feature = _get(fields, "feature", "*")
    if not isinstance(feature, str | int) or isinstance(feature, bool) or str(feature) == "":
        raise RulesError(f"{where} line {lines.get('feature', line)}: 'feature' names a feature, prediction, or "
                         "'*' (every feature)")
    direction = _get(fields, "direction", None)
    if direction is not None and direction not in DIRECTIONS:
        raise RulesError(f"{where} line {lines['direction']}: direction must be above or below, not {direction!r}")
    count = _get(fields, "for", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise RulesError(f"{where} line {lines.get('for', line)}: 'for' is how many consecutive windows must breach "
                         f"(a whole number, at least 1), not {count!r}")
    severity = _get(fields, "severity", "error")
    if severity not in SEVERITIES:
        raise RulesError(f"{where} line {lines.get('severity', line)}: severity must be error or warning, not "
                         f"{severity!r}")
    window = _window(_get(fields, "window", None), where, lines.get("window", line)) if "window" in fields \
        else default_window
    name = _get(fields, "name", None) or f"{metric}-{feature}"
    if not isinstance(name, str):
        raise RulesError(f"{where} line {lines['name']}: a rule's name is text, not {name!r}")
    return Rule(name, metric, float(threshold), str(feature), direction, window, count, severity, line, lines)


def _webhooks(entry: tuple[yaml.Node, yaml.Node] | None, where: str) -> tuple[Webhook, ...]:
    if entry is None:
        return ()
    key, node = entry
    if not isinstance(node, yaml.SequenceNode):
        raise RulesError(f"{where} line {_line(key)}: 'webhooks' is a list of URLs (or of mappings with 'url' and "
                         "'timeout')")
    out = []
    for item in node.value:
        value = yaml.safe_load(yaml.serialize(item))
        url, timeout = (value, 5.0) if isinstance(value, str) else \
            ((value.get("url"), value.get("timeout", 5.0)) if isinstance(value, dict) else (None, None))
        extra = sorted(set(value) - {"url", "timeout"}) if isinstance(value, dict) else []
        if extra:
            raise RulesError(f"{where} line {_line(item)}: unknown key {extra[0]!r}; a webhook has url and timeout")
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise RulesError(f"{where} line {_line(item)}: a webhook is an http:// or https:// URL, not {url!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
            raise RulesError(f"{where} line {_line(item)}: a webhook's timeout is seconds in (0, 300], not "
                             f"{timeout!r}")
        out.append(Webhook(url, float(timeout)))
    return tuple(out)


def check_rules(rules: RuleSet, *, metrics: Mapping[str, Any], missing: Mapping[str, str],
                features: Sequence[str], model: str) -> None:
    """Every rule names a known metric and a feature of the model; else RulesError at its line.

    ``metrics``: name -> its ``MetricInfo`` (``per_feature``); ``missing``: metric names whose part of the monitor
    layer cannot be imported here -> why."""
    where = rules.where
    if rules.model is not None and rules.model != model:
        raise RulesError(f"{where}: these rules are for model {rules.model!r}, not {model!r}; name the right model "
                         "or fix 'model:'")
    known = ("*", *features, "prediction")
    for r in rules.rules:
        if r.metric in missing:
            raise RulesError(f"{where} line {r.where('metric')}: metric {r.metric!r} {missing[r.metric]}")
        info = metrics.get(r.metric)
        if info is None:
            raise RulesError(f"{where} line {r.where('metric')}: unknown metric {r.metric!r}; known: "
                             f"{', '.join(sorted(metrics))}")
        if r.feature not in known:
            near = ", ".join(list(features[:8]) + (["..."] if len(features) > 8 else []))
            raise RulesError(f"{where} line {r.where('feature')}: model {model!r} has no feature {r.feature!r}; "
                             f"name one of its features ({near}), prediction, or '*'")
        if r.feature != "*" and not info.per_feature:
            raise RulesError(f"{where} line {r.where('feature')}: metric {r.metric!r} is one value per window, not "
                             f"per feature: drop 'feature:' or write feature: '*'")


def _get(fields: Mapping[str, tuple[yaml.Node, yaml.Node]], key: str, default: Any) -> Any:
    return yaml.safe_load(yaml.serialize(fields[key][1])) if key in fields else default


def _text(top: Mapping[str, tuple[yaml.Node, yaml.Node]], key: str, where: str, root: yaml.Node) -> str | None:
    value = _get(top, key, None)
    if value is not None and not isinstance(value, str):
        raise RulesError(f"{where} line {_at(top, key, root)}: {key!r} is text, not {value!r}")
    return value


def _window(value: Any, where: str, line: int) -> Window:
    try:
        return Window.parse(value if isinstance(value, str | int) and not isinstance(value, bool) else repr(value))
    except InputError as e:
        raise RulesError(f"{where} line {line}: {e}") from e


def _at(top: Mapping[str, tuple[yaml.Node, yaml.Node]], key: str, root: yaml.Node) -> int:
    return _line(top[key][0]) if key in top else _line(root)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1
