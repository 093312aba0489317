"""The built-in screens by name, and running several over the same data."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from assay._types import Progress
from assay.errors import AssayError, ParamError
from assay.screens._base import Screen, ScreenResult
from assay.screens.data import ScreenData
from assay.screens.duplicate import DuplicateScreen
from assay.screens.label_issue import LabelIssueScreen
from assay.screens.outlier import OutlierScreen
from assay.screens.poison import PoisonScreen
from assay.screens.value import ValueScreen

SCREENS: Mapping[str, type[Screen]] = MappingProxyType({
    s.name: s for s in (DuplicateScreen, OutlierScreen, LabelIssueScreen, ValueScreen, PoisonScreen)})


def make_screen(name: str, **params: Any) -> Screen:
    """A built-in screen by name; an unknown name or parameter raises ParamError (a ValueError and TypeError)."""
    if name not in SCREENS:
        raise ParamError(f"unknown screen {name!r}: assay has no screen of that name; use one of {', '.join(SCREENS)}")
    return SCREENS[name](**params)


@dataclass
class ScreenRun:
    """Results of several screens over one ScreenData; screens that could not run, with why."""

    data: ScreenData
    results: dict[str, ScreenResult] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.data.n, "notes": list(self.data.notes),
                "screens": {n: r.to_dict() for n, r in self.results.items()},
                "not_run": dict(self.errors)}


SMALL = 20_000  # samples below which BLAS and OpenMP run on one thread


def run_screens(data: ScreenData, screens: list[Screen], *, progress: Progress | None = None) -> ScreenRun:
    """Fit each screen on ``data``; one that cannot score this data is recorded in ``errors``, not raised.

    On small data the numeric libraries run single-threaded: their many small matrix products and
    decompositions are several times faster so than with threads that wait on each other.
    """
    from threadpoolctl import threadpool_limits

    run = ScreenRun(data)
    with threadpool_limits(limits=1) if data.n < SMALL else contextlib.nullcontext():
        for i, screen in enumerate(screens):
            if progress is not None:
                progress(f"screen {screen.name}", i, len(screens))
            try:
                run.results[screen.name] = screen.fit(data).result_
            except AssayError as e:
                run.errors[screen.name] = str(e)
    if progress is not None:
        progress("screens", len(screens), len(screens))
    return run
