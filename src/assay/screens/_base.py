"""The one contract every screen follows, like scikit-learn's estimators and cleanlab's issue managers.

A screen has a ``name``, keyword-only parameters declared as data (``params``, of ``assay._params.Param``, the
declaration that expectations and policies use too), and ``fit(data)`` that
scores every sample of a :class:`~assay.screens.data.ScreenData` and returns the screen, with the result in
``result_``: a per-sample score in [0, 1] (low is bad), a flag, a reason for each flagged sample, and a
summary. ``tests/test_screens.py`` runs one conformance test over every built-in screen.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from assay._params import Param as Param  # re-exported: screens declare their params with it
from assay._params import check_params
from assay.errors import ContractError

if TYPE_CHECKING:
    from assay.screens.data import ScreenData


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
            raise ContractError(f"screen {self.screen!r} returned per-sample arrays of different lengths (score: {n}, "
                                f"flag: {len(self.flag)}, reason: {len(self.reason)}); a screen gives each of them "
                                "one entry per sample: fix the screen's _score")

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
        for key, value in check_params(f"screen {self.name!r}", self.params, params).items():
            setattr(self, key, value)

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
            raise ContractError(f"screen {self.name!r} scored {len(result.score)} of the {data.n} samples it was "
                                "given; a screen scores every sample, in order: fix the screen's _score")
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
