"""The one contract every screen follows, like scikit-learn's estimators and cleanlab's issue managers.

A screen has a ``name``, keyword-only parameters declared as data (``params``), and ``fit(data)`` that
scores every sample of a :class:`~assay.screens.data.ScreenData` and returns the screen, with the result in
``result_``: a per-sample score in [0, 1] (low is bad), a flag, a reason for each flagged sample, and a
summary. ``tests/test_screens.py`` runs one conformance test over every built-in screen.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from assay.screens.data import ScreenData


@dataclass(frozen=True)
class Param:
    """A screen parameter: its type, default and allowed range or choices."""

    kind: type | tuple[type, ...]
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def check(self, name: str, value: Any) -> Any:
        """``value`` if it is allowed, else a ValueError that says what is."""
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        if value is None and self.default is None:
            return None
        if isinstance(value, bool) and bool not in kinds:
            raise ValueError(f"{name} must be {_kind_name(kinds)}, not {value!r}")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise ValueError(f"{name} must be {_kind_name(kinds)}, not {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{name} must be one of {list(self.choices)}, not {value!r}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {value!r}")
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                raise ValueError(f"{name} must lie in [{self.low}, {self.high}], not {value!r}")
        return value


def _kind_name(kinds: tuple[type, ...]) -> str:
    return " or ".join({int: "an integer", float: "a number", str: "a string", bool: "true or false"}
                       .get(k, k.__name__) for k in kinds)


@dataclass(frozen=True)
class ScreenResult:
    """Per-sample results of one screen over ``n`` samples, in the order of the data it was fitted on."""

    screen: str
    score: np.ndarray  # float64 in [0, 1]; low is bad
    flag: np.ndarray  # bool
    reason: list[str | None]  # why a sample is flagged; None where it is not
    summary: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # extra per-sample values (clusters, raw values)

    def __post_init__(self) -> None:
        n = len(self.score)
        if len(self.flag) != n or len(self.reason) != n or any(len(v) != n for v in self.columns.values()):
            raise ValueError(f"screen {self.screen!r}: per-sample arrays of different lengths")

    @property
    def flagged(self) -> np.ndarray:
        """Indices of the flagged samples."""
        return np.flatnonzero(self.flag)

    def to_dict(self) -> dict[str, Any]:
        return {"screen": self.screen, "samples": len(self.score), "flagged": int(self.flag.sum()),
                **self.summary}


class Screen(abc.ABC):
    """Base class of screens: keyword-only parameters checked against ``params``; ``fit`` sets ``result_``."""

    name: ClassVar[str]
    params: ClassVar[Mapping[str, Param]] = {}
    needs_labels: ClassVar[bool] = False
    description: ClassVar[str] = ""
    extra_columns: ClassVar[Mapping[str, pa.DataType]] = {}  # per-sample values kept beside score and flag

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise TypeError(f"screen {self.name!r} has no parameter {unknown[0]!r}; it takes "
                            f"{sorted(self.params) or 'none'}")
        for key, spec in self.params.items():
            setattr(self, key, spec.check(key, params.get(key, spec.default)))

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if v != self.params[k].default)
        return f"{type(self).__name__}({args})"

    def fit(self, data: ScreenData) -> Screen:
        """Score every sample of ``data``; the result is in ``result_``."""
        require_sklearn()
        result = self._score(data)
        if len(result.score) != data.n:
            raise AssertionError(f"screen {self.name!r} scored {len(result.score)} of {data.n} samples")
        self.result_ = result
        return self

    @abc.abstractmethod
    def _score(self, data: ScreenData) -> ScreenResult: ...


def require_sklearn() -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError as e:
        from assay.errors import InputError

        raise InputError("screens need scikit-learn (and pillow for images): pip install 'assay[screens]'") from e
