"""One declaration for the parameters of expectations, screens and gate policies, with one wording of errors.

A parameter is declared as data: its type, its default (``REQUIRED`` when it must be given, ``OPTIONAL`` when
it is simply absent unless given), its bounds or choices, and a line of help. :func:`check_params` checks what
a caller gave against the declarations and raises :class:`~assay.errors.ParamError` (a ValueError and a
TypeError) in these words::

    <owner> has no parameter 'colour'; it takes ['column', 'max', 'min']
    <owner> is missing parameter 'column' (the column to check)
    min must be a number, not 'low'
    threshold must lie in [0.5, 100.0], not -3.0
    min_batch must be at least 1, not 0
    method must be one of ['knn', 'lof'], not 'svm'

Callers that read files (suites, policies) put the file and line in front. This module imports nothing from
assay but its errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from assay.errors import ParamError


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


REQUIRED: Final[Any] = _Marker("REQUIRED")  # no default: the caller must give it
OPTIONAL: Final[Any] = _Marker("OPTIONAL")  # no default: absent from the checked parameters unless given
_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
               dict: "a mapping"}


@dataclass(frozen=True)
class Param:
    """A parameter: its type(s), default (or ``REQUIRED``, ``OPTIONAL``), bounds or choices, and help.

    Numbers are checked against ``low`` and ``high`` (inclusive) and, when bounded, must be finite; a parameter
    that takes a float (but not an int) accepts an int and gets it as a float; bool is no number here.
    """

    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def kinds(self) -> tuple[type, ...]:
        return self.kind if isinstance(self.kind, tuple) else (self.kind,)

    def check(self, name: str, value: Any) -> Any:
        """``value`` if it is allowed (an int made float where the parameter takes floats), else ParamError."""
        kinds = self.kinds
        if value is None and self.default is None:
            return None
        if float in kinds and int not in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ParamError(f"{name} must be {kind_name(kinds)}, not {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ParamError(f"{name} must be one of {list(self.choices)}, not {value!r}")
        if isinstance(value, int | float) and not isinstance(value, bool) and self._bounded:
            if isinstance(value, float) and not math.isfinite(value):
                raise ParamError(f"{name} must be a finite number, not {value!r}")
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                raise ParamError(f"{name} must {self._range()}, not {value!r}")
        return value

    def _range(self) -> str:
        if self.high is None:
            return f"be at least {self.low}"
        if self.low is None:
            return f"be at most {self.high}"
        return f"lie in [{self.low}, {self.high}]"

    @property
    def _bounded(self) -> bool:
        return self.low is not None or self.high is not None


def check_params(owner: str, params: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """The checked parameters of ``owner`` (e.g. "screen 'outlier'"): those given, and the defaults of the
    others but ``OPTIONAL`` ones; ParamError for an unknown, missing or bad one."""
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise ParamError(f"{owner} has no parameter {unknown[0]!r}; it takes {sorted(params) or 'none'}")
    out: dict[str, Any] = {}
    for name, spec in params.items():
        if name in given:
            out[name] = spec.check(name, given[name])
        elif spec.required:
            about = f" ({spec.doc})" if spec.doc else ""
            raise ParamError(f"{owner} is missing parameter {name!r}{about}")
        elif spec.default is not OPTIONAL:
            out[name] = spec.default
    return out


def kind_name(kinds: tuple[type, ...]) -> str:
    """How a message names the types a parameter takes: "a string or a number" (int and float: a number)."""
    named = [k for k in kinds if not (k is int and float in kinds)]
    return " or ".join(dict.fromkeys(_KIND_NAMES.get(k, k.__name__) for k in named))


__all__ = ["OPTIONAL", "REQUIRED", "Param", "check_params", "kind_name"]
