"""What screens score: a feature matrix, labels, sample ids and content digests, with shared model outputs.

Screens never read the repository themselves; :func:`assay.screens.features.screen_data` builds this
from a dataset version, and a test can build it from arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assay.engines import Engine
from assay.errors import ScreenError


@dataclass
class ScreenData:
    """``n`` samples: ``features`` (n x d float32, scaled), integer ``labels`` (-1 where missing) and ``classes``.

    ``digests`` groups samples of identical content (the same integer = the same features), ``texts`` holds
    the text of text datasets (for MinHash), ``pred_probs`` out-of-fold probabilities the user gave, and
    ``kind`` is ``image``, ``text``, ``tabular`` or ``mixed``. ``notes`` lists the fallbacks applied while
    building it (e.g. missing values imputed), which reports show. With an ``engine``, the nearest-neighbour
    queries run as its tasks, a block of samples each (the same results as in one piece).
    """

    features: np.ndarray
    ids: list[str]
    labels: np.ndarray | None = None
    classes: list[Any] = field(default_factory=list)
    digests: np.ndarray | None = None
    texts: list[str] | None = None
    pred_probs: np.ndarray | None = None
    kind: str = "tabular"
    notes: list[str] = field(default_factory=list)
    label_column: str | None = None
    cache: dict[str, Any] = field(default_factory=dict, repr=False)
    engine: Engine | None = field(default=None, repr=False, compare=False)  # runs the k-NN queries in blocks

    def __post_init__(self) -> None:
        self.features = np.ascontiguousarray(self.features, dtype=np.float32)
        if self.features.ndim != 2:
            raise ScreenError(f"features must be a 2-D matrix (samples x dimensions), not shape "
                              f"{self.features.shape}")
        if len(self.ids) != self.n:
            raise ScreenError(f"{len(self.ids)} sample ids for {self.n} samples")
        if not np.isfinite(self.features).all():
            raise ScreenError("features hold NaN or infinite values; build ScreenData with screen_data(), which "
                              "imputes them, or impute them first")
        if self.digests is None:
            self.digests = content_groups(self.features)

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    def require_labels(self, screen: str, *, min_per_class: int = 1) -> np.ndarray:
        """The labels, or a ScreenError that says why ``screen`` cannot use them."""
        if self.labels is None:
            raise ScreenError(f"screen {screen!r} needs labels and the data has no label column; name it in the "
                              "policy (features: {label: COLUMN}) or leave this screen out")
        missing = np.flatnonzero(self.labels < 0)
        if len(missing):
            examples = ", ".join(self.ids[i][:12] for i in missing[:3])
            raise ScreenError(f"screen {screen!r}: {len(missing)} sample(s) have no label (e.g. {examples}); "
                              "label them, or remove them before screening")
        counts = np.bincount(self.labels, minlength=len(self.classes))
        present = np.flatnonzero(counts)
        if len(present) < 2:
            raise ScreenError(f"screen {screen!r} needs at least 2 classes and the data has "
                              f"{len(present)} ({[self.classes[i] for i in present]}); there is nothing to "
                              "compare a label with")
        small = [self.classes[i] for i in present if counts[i] < min_per_class]
        if small:
            raise ScreenError(f"screen {screen!r} needs at least {min_per_class} samples of each class; too few "
                              f"for {small[:5]}; add samples, merge rare classes, or leave this screen out")
        return self.labels


def content_groups(matrix: np.ndarray) -> np.ndarray:
    """One integer per row; rows with the same bytes share it."""
    rows = np.ascontiguousarray(matrix)
    if rows.shape[0] == 0:
        return np.zeros(0, np.int64)
    view = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, inverse = np.unique(view, return_inverse=True)
    return inverse.astype(np.int64).ravel()
