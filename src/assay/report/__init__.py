"""Rendering of results for people: self-contained HTML reports."""

from assay.report.drift_html import drift_report_html
from assay.report.html import check_report_html
from assay.report.ingest_html import ingest_report_html

__all__ = ["check_report_html", "drift_report_html", "ingest_report_html"]
