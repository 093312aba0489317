"""The dashboard (``assay ui``): a read-only web page served locally with the repository's datasets and commits,
the models and their lineage, serving metrics from the prediction log, drift and performance over time, alerts,
and the drill-down from an alert to the samples behind it. ``views`` computes what is shown (JSON-ready dicts);
``app`` serves it (Starlette) with the page and its charts (uPlot, vendored under ``static/vendor``)."""

from assay.monitor.dashboard.app import create_app

__all__ = ["create_app"]
