"""The commit gate: staged datasets that have a suite are checked before the commit is written."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from assay.checks.runner import CheckResult, ExpectationResult, run_suite
from assay.checks.suite import parse_suite
from assay.errors import CheckFailed
from assay.table import DatasetVersion

if TYPE_CHECKING:
    from assay.repo import Repository


def verify_staged(repo: Repository, manifests: dict[str, str], suites: dict[str, str]) -> dict[str, Any]:
    """Check each dataset against its suite; raise CheckFailed on an error-level failure.

    Returns what the commit records: per dataset, how many expectations passed and warned.
    """
    results: dict[str, CheckResult] = {}
    for name, manifest in sorted(manifests.items()):
        suite = parse_suite(repo.store.get(suites[name]).decode("utf-8"), f"suite of {name}")
        version = DatasetVersion(repo.store, repo.read_manifest(manifest))
        results[name] = run_suite(version, suite, other=repo.dataset, reference=_reference(repo, name),
                                  engine=repo.engine)
    failed = {n: r for n, r in results.items() if not r.ok}
    if failed:
        raise CheckFailed(_explain(failed), {n: r.to_dict() for n, r in results.items()})
    return {"checks": {n: {"passed": sum(x.success for x in r.results), "warnings": len(r.warnings)}
                       for n, r in results.items()}}


def _reference(repo: Repository, name: str) -> Callable[[str], DatasetVersion]:
    def open_reference(rev: str) -> DatasetVersion:
        return repo.dataset(name, rev)

    return open_reference


def _explain(failed: dict[str, CheckResult]) -> str:
    lines = []
    for name, result in failed.items():
        lines.append(f"dataset {name!r} fails {len(result.failures)} expectation(s) of its suite:")
        lines.extend(f"  {describe(r)}" for r in result.failures)
    lines.append("Nothing was committed. Fix the data (or the suite: `assay suite set`), or commit with "
                 "--no-verify to override; the override is recorded in the commit.")
    return "\n".join(lines)


def readable(value: Any) -> str:
    """An observed value as a person reads it: floats to four significant digits, mappings as 'key value'."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{str(k).replace('_', ' ')} {readable(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(readable(v) for v in value[:5]) + (", ..." if len(value) > 5 else "") + "]"
    return str(value)


def describe(r: ExpectationResult) -> str:
    """One line about a result: what failed, how much, and some of the samples."""
    if r.message:
        return f"{r.expectation.label}: {r.message}"
    parts = [r.expectation.label]
    if r.failing is not None:
        parts.append(f"{r.failing} sample(s) fail")
    elif r.observed is not None:
        parts.append(f"observed {readable(r.observed)}")
    examples = [", ".join(f"{k}={v!r}" for k, v in key.items()) for key in r.sample_keys[:3]] or \
        [i[:12] for i in r.sample_ids[:3]]
    if examples:
        parts.append("e.g. " + "; ".join(examples))
    return ": ".join(parts[:2]) + (f" ({parts[2]})" if len(parts) > 2 else "")
