"""Monitoring: a model's production rows against the exact data it was trained on.

``window`` reads the prediction log (decoded into features and predictions) and the reference; profiles,
drift, performance, alerts, explain and the dashboard build on it; ``loop`` takes labelled production rows back
through the gate into a training dataset.
"""

from assay.monitor.loop import LoopReport, ingest_predictions
from assay.monitor.window import Window, production, reference

__all__ = ["LoopReport", "Window", "ingest_predictions", "production", "reference"]
