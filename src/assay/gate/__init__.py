"""The gate: ingest a batch, audit it with the dataset's suite and the screens, publish or quarantine."""

from assay.gate.ingest import Flagged, IngestReport, ingest, quarantine_branch, staging_branch
from assay.gate.policy import Policy, ScreenRule, default_policy, load_policy, parse_policy
from assay.gate.quarantine import drop, quarantined, release, resolve_samples, show
from assay.gate.scores import read_scores, screen_version

__all__ = [
    "Flagged",
    "IngestReport",
    "Policy",
    "ScreenRule",
    "default_policy",
    "drop",
    "ingest",
    "load_policy",
    "parse_policy",
    "quarantine_branch",
    "quarantined",
    "read_scores",
    "release",
    "resolve_samples",
    "screen_version",
    "show",
    "staging_branch",
]
