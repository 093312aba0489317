"""Gate policies: which screens run on a new batch, with what parameters, and what their flags do.

::

    format: 1
    features:                   # optional: how to build features (see assay.screens.FeatureSpec)
      label: label
    checks: reject              # an error-level failure of the dataset's suite: reject | warn | skip
    unavailable: warn           # a screen that cannot score this data (no labels, one class): warn | reject
    max_quarantined: 0.5        # reject the whole batch when more than this share of it would be quarantined
    min_batch: 10               # the shares (max_quarantined, max_flagged) apply to batches of this many or more
    screens:
      duplicate: {action: quarantine, near: 0.1}
      outlier: {action: warn, threshold: 6}
      label_issue: {action: quarantine}
      poison: {action: quarantine, max_flagged: 0.2}   # more than 20% of the batch flagged: reject it
      value: {action: warn}

``action`` is ``quarantine`` (the flagged samples are held back), ``warn`` (reported, accepted) or
``reject`` (any flagged sample rejects the whole batch). Every mistake names its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from assay._params import Param, check_params
from assay.checks.suite import compose_yaml
from assay.errors import ParamError, PolicyError
from assay.screens import SCREENS, FeatureSpec, Screen

POLICY_FORMAT = 1
ACTIONS = ("quarantine", "warn", "reject")
DEFAULT_ACTIONS = {"duplicate": "quarantine", "outlier": "warn", "label_issue": "quarantine", "value": "warn",
                   "poison": "quarantine"}
POLICY_PARAMS = {
    "checks": Param(str, "reject", choices=("reject", "warn", "skip"),
                    doc="what an error-level failure of the dataset's suite does"),
    "unavailable": Param(str, "warn", choices=("warn", "reject"), doc="what a screen that cannot score this data does"),
    "max_quarantined": Param(float, 0.5, 0.0, 1.0, doc="reject the whole batch when a larger share would be held"),
    "min_batch": Param(int, 10, 1, None, doc="the shares apply to batches of this many samples or more"),
}
RULE_PARAMS = {
    "action": Param(str, "warn", choices=ACTIONS, doc="what a flag does to its sample"),
    "max_flagged": Param(float, None, 0.0, 1.0, doc="reject the batch when a larger share of it is flagged"),
}


@dataclass(frozen=True)
class ScreenRule:
    screen: str
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    max_flagged: float | None = None  # reject the batch when a larger share of it is flagged

    def build(self) -> Screen:
        return SCREENS[self.screen](**self.params)


@dataclass(frozen=True)
class Policy:
    rules: tuple[ScreenRule, ...]
    features: FeatureSpec = field(default_factory=FeatureSpec)
    checks: str = "reject"
    unavailable: str = "warn"
    max_quarantined: float = 0.5
    min_batch: int = 10
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"checks": self.checks, "unavailable": self.unavailable, "max_quarantined": self.max_quarantined,
                "min_batch": self.min_batch,
                "screens": {r.screen: {"action": r.action, **r.params,
                                       **({"max_flagged": r.max_flagged} if r.max_flagged is not None else {})}
                            for r in self.rules}}


def default_policy() -> Policy:
    """Every built-in screen with its default parameters and action."""
    return Policy(tuple(ScreenRule(name, DEFAULT_ACTIONS.get(name, "warn")) for name in SCREENS))


def load_policy(path: str | Path | None) -> Policy:
    if path is None:
        return default_policy()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise PolicyError(f"{p}: no such policy file") from e
    return parse_policy(text, str(p))


def parse_policy(text: str, where: str = "<policy>") -> Policy:
    """Parse and validate a policy; every error names ``where`` and the line."""
    root = compose_yaml(text, where, PolicyError)
    if root is None:
        return default_policy()
    if not isinstance(root, yaml.MappingNode):
        raise PolicyError(f"{where} line 1: a policy is a mapping with 'screens' (and optionally features, "
                          "checks, unavailable, max_quarantined)")
    top = {k.value: (k, v) for k, v in root.value}
    known = {"format", "features", "checks", "unavailable", "max_quarantined", "min_batch", "screens"}
    for name, (k, _) in top.items():
        if name not in known:
            raise PolicyError(f"{where} line {_line(k)}: unknown key {name!r}; a policy has {sorted(known)}")
    fmt = _plain(top, "format", 1)
    if not isinstance(fmt, int) or fmt > POLICY_FORMAT:
        raise PolicyError(f"{where} line {_at(top, 'format')}: policy format {fmt!r} is newer than this assay "
                          f"reads ({POLICY_FORMAT}); upgrade assay")
    return Policy(_rules(top, where), _features(top, where), _setting(top, "checks", where),
                  _setting(top, "unavailable", where), _setting(top, "max_quarantined", where),
                  _setting(top, "min_batch", where), text)


def _rules(top: dict[str, Any], where: str) -> tuple[ScreenRule, ...]:
    if "screens" not in top:
        return default_policy().rules
    node = top["screens"][1]
    if not isinstance(node, yaml.MappingNode):
        raise PolicyError(f"{where} line {_line(node)}: 'screens' maps screen names to their settings")
    rules = []
    for k, v in node.value:
        if k.value not in SCREENS:
            raise PolicyError(f"{where} line {_line(k)}: unknown screen {k.value!r}; known: {', '.join(SCREENS)}")
        settings = yaml.safe_load(yaml.serialize(v)) or {}
        if not isinstance(settings, dict):
            raise PolicyError(f"{where} line {_line(v)}: the settings of screen {k.value!r} are a mapping, e.g. "
                              "{action: quarantine}")
        given = {name: settings.pop(name) for name in RULE_PARAMS if name in settings}
        try:
            ruled = check_params(f"screen {k.value!r}", RULE_PARAMS,
                                 {"action": DEFAULT_ACTIONS.get(k.value, "warn"), **given})
            rule = ScreenRule(k.value, ruled["action"], settings, ruled["max_flagged"])
            rule.build()
        except ParamError as e:
            raise PolicyError(f"{where} line {_line(v)}: screen {k.value!r}: {e}") from e
        rules.append(rule)
    return tuple(rules)


def _features(top: dict[str, Any], where: str) -> FeatureSpec:
    if "features" not in top:
        return FeatureSpec()
    value = yaml.safe_load(yaml.serialize(top["features"][1])) or {}
    line = _at(top, "features")
    if not isinstance(value, dict):
        raise PolicyError(f"{where} line {line}: 'features' is a mapping, e.g. {{label: label}}")
    try:
        return FeatureSpec.from_dict(value)
    except ParamError as e:
        raise PolicyError(f"{where} line {line}: {e}") from e


def _setting(top: dict[str, Any], key: str, where: str) -> Any:
    spec = POLICY_PARAMS[key]
    try:
        return spec.check(key, _plain(top, key, spec.default))
    except ParamError as e:
        raise PolicyError(f"{where} line {_at(top, key)}: {e}") from e


def _plain(top: dict[str, Any], key: str, default: Any) -> Any:
    return yaml.safe_load(yaml.serialize(top[key][1])) if key in top else default


def _at(top: dict[str, Any], key: str) -> int:
    return _line(top[key][0]) if key in top else 1


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1
