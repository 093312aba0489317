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

from assay.checks.suite import compose_yaml
from assay.errors import PolicyError
from assay.screens import SCREENS, FeatureSpec, Screen
from assay.screens.features import reject_unknown

POLICY_FORMAT = 1
ACTIONS = ("quarantine", "warn", "reject")
DEFAULT_ACTIONS = {"duplicate": "quarantine", "outlier": "warn", "label_issue": "quarantine", "value": "warn",
                   "poison": "quarantine"}


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
    return Policy(_rules(top, where), _features(top, where),
                  _choice(top, "checks", ("reject", "warn", "skip"), "reject", where),
                  _choice(top, "unavailable", ("warn", "reject"), "warn", where),
                  _share(top, "max_quarantined", 0.5, where), _count(top, "min_batch", 10, where), text)


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
        action = settings.pop("action", DEFAULT_ACTIONS.get(k.value, "warn"))
        if action not in ACTIONS:
            raise PolicyError(f"{where} line {_line(v)}: screen {k.value!r}: action must be one of {list(ACTIONS)}, "
                              f"not {action!r}")
        max_flagged = settings.pop("max_flagged", None)
        if max_flagged is not None and not _is_share(max_flagged):
            raise PolicyError(f"{where} line {_line(v)}: screen {k.value!r}: max_flagged must be a share between 0 "
                              f"and 1, not {max_flagged!r}")
        rule = ScreenRule(k.value, action, settings, float(max_flagged) if max_flagged is not None else None)
        try:
            rule.build()
        except (TypeError, ValueError) as e:
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
        reject_unknown(value)
        spec = FeatureSpec.from_dict(value)
    except (TypeError, ValueError) as e:
        raise PolicyError(f"{where} line {line}: features: {e}") from e
    if not isinstance(spec.image_size, int) or not 4 <= spec.image_size <= 256:
        raise PolicyError(f"{where} line {line}: features: image_size must be an integer in [4, 256]")
    if not isinstance(spec.dims, int) or not 2 <= spec.dims <= 1024:
        raise PolicyError(f"{where} line {line}: features: dims must be an integer in [2, 1024]")
    if spec.text_model not in ("tfidf", "minilm"):
        raise PolicyError(f"{where} line {line}: features: text_model must be 'tfidf' or 'minilm'")
    return spec


def _choice(top: dict[str, Any], key: str, choices: tuple[str, ...], default: str, where: str) -> str:
    value = _plain(top, key, default)
    if value not in choices:
        raise PolicyError(f"{where} line {_at(top, key)}: {key} must be one of {list(choices)}, not {value!r}")
    return str(value)


def _share(top: dict[str, Any], key: str, default: float, where: str) -> float:
    value = _plain(top, key, default)
    if not _is_share(value):
        raise PolicyError(f"{where} line {_at(top, key)}: {key} must be a share between 0 and 1, not {value!r}")
    return float(value)


def _count(top: dict[str, Any], key: str, default: int, where: str) -> int:
    value = _plain(top, key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PolicyError(f"{where} line {_at(top, key)}: {key} must be a whole number of samples >= 1, not "
                          f"{value!r}")
    return value


def _is_share(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def _plain(top: dict[str, Any], key: str, default: Any) -> Any:
    return yaml.safe_load(yaml.serialize(top[key][1])) if key in top else default


def _at(top: dict[str, Any], key: str) -> int:
    return _line(top[key][0]) if key in top else 1


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1
