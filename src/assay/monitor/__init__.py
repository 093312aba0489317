"""Monitoring: a model's production rows against the exact data it was trained on.

``window`` reads the prediction log (decoded into features and predictions) and the reference; profiles,
drift, performance, alerts, explain and the dashboard build on it.
"""

from assay.monitor.window import Window, production, reference

__all__ = ["Window", "production", "reference"]
