"""Data tests: declarative suites of expectations, inference from a good version, and a runner."""

from assay.checks.expectations import KINDS, Expectation
from assay.checks.infer import infer_suite
from assay.checks.runner import CheckResult, ExpectationResult, run_suite
from assay.checks.suite import Suite, load_suite, parse_suite
from assay.errors import SuiteError

__all__ = [
    "CheckResult",
    "Expectation",
    "ExpectationResult",
    "KINDS",
    "Suite",
    "SuiteError",
    "infer_suite",
    "load_suite",
    "parse_suite",
    "run_suite",
]
