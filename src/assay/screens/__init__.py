"""Screens: per-sample scorers of value and trust (duplicates, outliers, label errors, value, poisoning).

Every screen follows one contract (:class:`Screen`): keyword-only parameters declared as data, ``fit`` on
a :class:`ScreenData`, and a :class:`ScreenResult` with a score in [0, 1] (low is bad), a flag, a reason
for each flagged sample, and a summary.
"""

from assay.screens._base import Param, Screen, ScreenResult
from assay.screens.confident import find_label_issues, label_wrong_probability
from assay.screens.data import ScreenData
from assay.screens.duplicate import DuplicateScreen
from assay.screens.features import FeatureSpec, screen_data, table_features
from assay.screens.label_issue import LabelIssueScreen
from assay.screens.model import ModelOutputs, model_outputs
from assay.screens.outlier import OutlierScreen
from assay.screens.poison import PoisonScreen
from assay.screens.registry import SCREENS, ScreenRun, make_screen, run_screens
from assay.screens.scores import scores_name, scores_schema, scores_table
from assay.screens.value import ValueScreen, knn_shapley

__all__ = [
    "DuplicateScreen",
    "FeatureSpec",
    "LabelIssueScreen",
    "ModelOutputs",
    "OutlierScreen",
    "Param",
    "PoisonScreen",
    "SCREENS",
    "Screen",
    "ScreenData",
    "ScreenResult",
    "ScreenRun",
    "ValueScreen",
    "find_label_issues",
    "knn_shapley",
    "label_wrong_probability",
    "make_screen",
    "model_outputs",
    "run_screens",
    "scores_name",
    "scores_schema",
    "scores_table",
    "screen_data",
    "table_features",
]
