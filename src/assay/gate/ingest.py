"""``ingest``: write a batch to a staging branch, audit it (suite and screens) against the accepted data,
then publish the accepted samples to the target branch and hold the flagged ones in ``quarantine/DATASET``.

Both branches move in one catalog transaction, so a crash leaves the repository as it was or fully
updated. The staging branch holds the batch while it is audited and is removed once the batch is published
(in that same transaction) or rejected; the report keeps the staged commit and everything the audit found.
A target branch that moved meanwhile without touching the dataset, its scores or its suite (a server logging
its predictions to it) gets the batch on its new tip; one whose dataset changed is a ConflictError.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay._types import Progress
from assay.checks import parse_suite, run_suite
from assay.checks.gate import describe
from assay.engines import Engine
from assay.errors import AssayError, ConflictError, InputError
from assay.gate.policy import Policy, default_policy
from assay.repo import RefUpdate
from assay.screens import ScreenRun, run_screens, scores_name, scores_table, screen_data
from assay.screens.data import ScreenData
from assay.screens.scores import flagged_reasons
from assay.table import DatasetVersion
from assay.table.manifest import HASH_COLUMN, ID_COLUMN, Manifest
from assay.table.select import select_ids, select_rows, unite

if TYPE_CHECKING:
    from assay.repo import Repository

EXAMPLES = 24
ATTEMPTS = 50  # publishing on a branch that keeps moving (a server logging to it): tries before giving up


def staging_branch(dataset: str) -> str:
    return f"staging/{dataset}"


def quarantine_branch(dataset: str) -> str:
    return f"quarantine/{dataset}"


@dataclass(frozen=True)
class Flagged:
    """A batch sample that a screen flagged: what happened to it and why."""

    sample: str
    action: str  # "quarantined" or "warned"
    reasons: list[str]
    scores: dict[str, float]
    key: dict[str, Any] = field(default_factory=dict)
    blob: str | None = None  # the image (or file) of the sample, for thumbnails

    def to_dict(self) -> dict[str, Any]:
        return {"sample": self.sample, "action": self.action, "reasons": self.reasons, "scores": self.scores,
                "key": self.key, **({"blob": self.blob} if self.blob else {})}


@dataclass
class IngestReport:
    """What the gate did with one batch."""

    dataset: str
    branch: str
    batch_rows: int = 0
    accepted: int = 0
    quarantined: list[Flagged] = field(default_factory=list)
    warned: list[Flagged] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # why the whole batch was refused
    warnings: list[str] = field(default_factory=list)
    checks: dict[str, Any] | None = None
    screens: dict[str, Any] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=dict)  # branch -> new commit
    staged: str | None = None  # the commit that staged the batch (its staging branch is gone once decided)
    policy: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The batch was not rejected (its accepted samples are published)."""
        return not self.rejected

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "branch": self.branch, "ok": self.ok, "batch_rows": self.batch_rows,
                "accepted": self.accepted, "quarantined": len(self.quarantined), "warned": len(self.warned),
                "rejected": self.rejected, "warnings": self.warnings, "checks": self.checks,
                "screens": self.screens, "commits": self.commits, "staged": self.staged,
                "policy": self.policy,
                "quarantined_samples": [f.to_dict() for f in self.quarantined],
                "warned_samples": [f.to_dict() for f in self.warned]}


def ingest(repo: Repository, batch: Any, *, into: str, policy: Policy | None = None, branch: str | None = None,
           key: list[str] | str | None = None, mode: str = "append", labels: str | None = None,
           message: str | None = None, source: dict[str, Any] | None = None,
           progress: Progress | None = None) -> IngestReport:
    """Audit ``batch`` (a file, folder or frame) for dataset ``into`` and publish or quarantine its samples.

    ``source`` (JSON values) says where the batch came from; the commits record it as ``meta.ingest.source``.
    """
    policy = policy or default_policy()
    if mode not in ("append", "upsert"):
        raise InputError(f"ingest adds samples: mode must be 'append' or 'upsert', not {mode!r}")
    branch = branch or repo.branch
    if branch is None:
        raise InputError("HEAD is detached; name the branch to publish to (--branch) or check one out")
    ref = repo.catalog.get_ref(branch)
    tip = ref.commit if ref else None
    tip_commit = repo.read_commit(tip) if tip else None
    datasets = dict(tip_commit.datasets) if tip_commit else {}
    suites = dict(tip_commit.suites) if tip_commit else {}
    base = datasets.get(into)
    report = IngestReport(into, branch, policy=policy.to_dict())
    staged_oid, update = repo.build_version(into, batch, base=base, key=key, mode=mode, labels=labels,
                                            progress=progress)
    if staged_oid == base or not (update.added or update.updated):
        report.warnings.append("the batch holds no new or changed samples; nothing to do")
        return report
    staged = repo.read_manifest(staged_oid)
    staging_commit = _write_staging(repo, into, tip, datasets, suites, staged_oid, message)
    report.staged = staging_commit
    version = DatasetVersion(repo.store, staged, commit=staging_commit)
    in_batch = _batch_mask(repo, staged, repo.read_manifest(base) if base else None)
    report.batch_rows = int(in_batch.sum())
    _run_checks(repo, report, policy, version, suites.get(into), into)
    run = _run_screens(report, policy, version, progress, repo.engine)
    quarantine, warn = _decide(report, policy, run, in_batch)
    if report.rejected:
        _drop_staging(repo, into, staging_commit)
        return report
    _publish(repo, report, run, staged, in_batch, quarantine, warn, datasets, suites, tip, staging_commit, message,
             source)
    return report


def _write_staging(repo: Repository, into: str, tip: str | None, datasets: dict[str, str], suites: dict[str, str],
                   staged_oid: str, message: str | None) -> str:
    name = staging_branch(into)
    oid = repo.derive(parents=(tip,) if tip else (), datasets={**datasets, into: staged_oid}, suites=suites,
                      message=f"ingest {into}: staged batch" + (f" ({message})" if message else ""),
                      verify=False)  # the batch is audited next; the policy decides what its suite does
    current = repo.catalog.get_ref(name)
    repo.move_refs([RefUpdate(name, "branch", oid, current.commit if current else None)], f"ingest: stage {into}")
    return oid


def _staging_removal(into: str, staging_commit: str) -> RefUpdate:
    return RefUpdate(staging_branch(into), "branch", None, staging_commit)


def _drop_staging(repo: Repository, into: str, staging_commit: str) -> None:
    """A rejected batch: its staging branch goes (the report keeps the staged commit and the findings)."""
    with contextlib.suppress(ConflictError):  # another ingest staged its batch since: the branch is that one's
        repo.move_refs([_staging_removal(into, staging_commit)], f"ingest: {into} rejected")


def _batch_mask(repo: Repository, staged: Manifest, base: Manifest | None) -> np.ndarray:
    """Rows of ``staged`` (in order) that are new or changed compared with ``base``."""
    rows = _row_keys(repo, staged)
    if base is None:
        return np.ones(len(rows), bool)
    return ~pc.is_in(rows, value_set=_row_keys(repo, base)).to_numpy(zero_copy_only=False).astype(bool)


def _row_keys(repo: Repository, manifest: Manifest) -> pa.Array:
    t = DatasetVersion(repo.store, manifest).to_arrow([], with_ids=True)
    ids, hashes = t.column(ID_COLUMN).combine_chunks(), t.column(HASH_COLUMN).combine_chunks()
    return pc.binary_join_element_wise(ids, hashes, "")


def _run_checks(repo: Repository, report: IngestReport, policy: Policy, version: DatasetVersion, suite_oid: str | None,
                into: str) -> None:
    if suite_oid is None or policy.checks == "skip":
        return
    suite = parse_suite(repo.store.get(suite_oid).decode("utf-8"), f"suite of {into}")
    result = run_suite(version, suite, other=repo.dataset,
                       reference=lambda rev: repo.dataset(into, rev), engine=repo.engine)
    report.checks = result.to_dict()
    lines = [f"suite: {describe(r)}" for r in result.failures]
    if lines and policy.checks == "reject":
        report.rejected.extend(lines)
    else:
        report.warnings.extend(lines)
    report.warnings.extend(f"suite (warn): {describe(r)}" for r in result.warnings)


def _run_screens(report: IngestReport, policy: Policy, version: DatasetVersion,
                 progress: Progress | None, engine: Engine | None = None) -> ScreenRun:
    try:
        data = screen_data(version, policy.features, progress=progress, engine=engine)
    except AssayError as e:
        data = ScreenData(np.zeros((version.num_rows, 0)), [""] * version.num_rows,
                          digests=np.arange(version.num_rows))
        run = ScreenRun(data, errors={r.screen: str(e) for r in policy.rules})
    else:
        run = run_screens(data, [r.build() for r in policy.rules], progress=progress)
    report.screens = run.to_dict()
    report.warnings.extend(data.notes)
    for name, why in run.errors.items():
        line = f"screen {name} did not run: {why}"
        (report.rejected if policy.unavailable == "reject" else report.warnings).append(line)
    return run


def _decide(report: IngestReport, policy: Policy, run: ScreenRun, in_batch: np.ndarray) -> tuple[np.ndarray,
                                                                                                    np.ndarray]:
    quarantine = np.zeros(len(in_batch), bool)
    warn = np.zeros(len(in_batch), bool)
    size = max(int(in_batch.sum()), 1)
    shares = size >= policy.min_batch  # a share of a handful of samples says little about the batch
    for rule in policy.rules:
        result = run.results.get(rule.screen)
        if result is None:
            continue
        flagged = result.flag & in_batch
        report.screens["screens"][rule.screen]["batch_flagged"] = int(flagged.sum())
        share = flagged.sum() / size
        if rule.action == "reject" and flagged.any():
            report.rejected.append(f"screen {rule.screen} flagged {int(flagged.sum())} sample(s) and its action is "
                                   "reject")
        if shares and rule.max_flagged is not None and share > rule.max_flagged:
            report.rejected.append(f"screen {rule.screen} flagged {share:.1%} of the batch, more than its "
                                   f"max_flagged {rule.max_flagged:.1%}")
        (quarantine if rule.action == "quarantine" else warn)[flagged] = True
    warn &= ~quarantine
    share = quarantine.sum() / size
    if shares and share > policy.max_quarantined:
        report.rejected.append(f"{share:.1%} of the batch would be quarantined, more than max_quarantined "
                               f"{policy.max_quarantined:.1%}: the batch looks wrong as a whole")
    return quarantine, warn


def _publish(repo: Repository, report: IngestReport, run: ScreenRun, staged: Manifest, in_batch: np.ndarray,
             quarantine: np.ndarray, warn: np.ndarray, datasets: dict[str, str], suites: dict[str, str],
             tip: str | None, batch: str, message: str | None, source: dict[str, Any] | None) -> None:
    into, branch = report.dataset, report.branch
    store = repo.store
    accepted_rows = np.flatnonzero(in_batch & ~quarantine)
    held_rows = np.flatnonzero(in_batch & quarantine)
    accepted = store.put(_accepted(repo, staged, ~in_batch | ~quarantine, datasets.get(into),
                                   {bytes.fromhex(run.data.ids[i]) for i in held_rows}).to_bytes())
    actions = ["warned" if warn[i] else "accepted" for i in accepted_rows]
    published = {**datasets, into: accepted}
    if len(accepted_rows):
        published[scores_name(into)], _ = repo.build_version(
            scores_name(into), scores_table(run, accepted_rows, batch=batch[:12], actions=actions),
            base=datasets.get(scores_name(into)), key=["sample"], mode="upsert")
    summary = {"batch": batch, "rows": report.batch_rows, "accepted": len(accepted_rows),
               "quarantined": len(held_rows), "warned": int((warn & in_batch).sum())}
    if source is not None:
        summary["source"] = source
    text = message or f"ingest into {into}"
    others = [_staging_removal(into, batch)]
    if len(held_rows):
        others.append(_quarantine_commit(repo, run, staged, in_batch & quarantine, held_rows, into, batch, text,
                                         summary))
        report.commits[others[-1].name] = str(others[-1].new)
    for attempt in range(ATTEMPTS):
        target = repo.derive(parents=(tip,) if tip else (), datasets=published, suites=suites,
                             meta={"ingest": summary},
                             message=f"{text}: {len(accepted_rows)} accepted, {len(held_rows)} quarantined",
                             verify=False)  # the suite ran on the batch (_run_checks); the policy decided
        try:
            repo.move_refs([RefUpdate(branch, "branch", target, tip), *others], f"ingest: {into}")
            break
        except ConflictError:
            if attempt == ATTEMPTS - 1:
                raise
            tip, published, suites = _moved_on(repo, branch, into, tip, datasets, suites, published)
    report.commits[branch] = target
    report.accepted = len(accepted_rows)
    report.quarantined = _examples(repo, run, staged, held_rows, "quarantined")
    report.warned = _examples(repo, run, staged, np.flatnonzero(in_batch & warn), "warned")


def _moved_on(repo: Repository, branch: str, into: str, tip: str | None, datasets: dict[str, str],
              suites: dict[str, str], published: dict[str, str]) -> tuple[str | None, dict[str, str], dict[str, str]]:
    """The branch moved while the batch was audited: when the commits since left the dataset, its scores and its
    suite alone (a server logging its predictions, another dataset's commit), the new tip with the published
    versions of those; else a ConflictError (the batch must be audited again against what is there now)."""
    ref = repo.catalog.get_ref(branch)
    now = ref.commit if ref else None
    if now == tip:  # the branch did not move: another ingest of this dataset took its staging or quarantine
        raise ConflictError(f"another ingest into {into!r} ran at the same time; ingest the batch again")
    commit = repo.read_commit(now) if now else None
    there, rules = (dict(commit.datasets), dict(commit.suites)) if commit else ({}, {})
    mine = [into, scores_name(into)]
    if any(there.get(n) != datasets.get(n) for n in mine) or rules.get(into) != suites.get(into):
        raise ConflictError(f"{into!r} changed on {branch!r} while the batch was audited; ingest the batch again")
    return now, {**there, **{n: published[n] for n in mine if n in published}}, rules


def _accepted(repo: Repository, staged: Manifest, keep: np.ndarray, base: str | None, held: set[bytes]) -> Manifest:
    """The staged version without the held rows; a held update of a sample keeps the sample's old version."""
    out = select_rows(repo.store, staged, keep)
    if base is None or not held:
        return out
    previous = select_ids(repo.store, repo.read_manifest(base), held)
    return unite(repo.store, out, previous) if previous.rows else out


def _quarantine_commit(repo: Repository, run: ScreenRun, staged: Manifest, held: np.ndarray, rows: np.ndarray,
                       into: str, batch: str, text: str, summary: dict[str, Any]) -> RefUpdate:
    name = quarantine_branch(into)
    ref = repo.catalog.get_ref(name)
    before = repo.read_commit(ref.commit).datasets if ref else {}
    new = select_rows(repo.store, staged, held)
    if into in before:
        new = unite(repo.store, repo.read_manifest(before[into]), new)
    table = scores_table(run, rows, batch=batch[:12], actions=["quarantined"] * len(rows))
    scores, _ = repo.build_version(scores_name(into), table, base=before.get(scores_name(into)), key=["sample"],
                                   mode="upsert")
    oid = repo.derive(parents=(ref.commit,) if ref else (), message=f"{text}: {len(rows)} quarantined",
                      datasets={**before, into: repo.store.put(new.to_bytes()), scores_name(into): scores},
                      meta={"ingest": summary}, verify=False)  # held-back samples: not checked, by design
    return RefUpdate(name, "branch", oid, ref.commit if ref else None)


def _examples(repo: Repository, run: ScreenRun, staged: Manifest, rows: np.ndarray, action: str) -> list[Flagged]:
    version = DatasetVersion(repo.store, staged)
    key_cols = list(staged.key or ())
    blob_col = staged.blob_columns[0] if staged.blob_columns else None
    wanted = [*key_cols, *([blob_col] if blob_col and blob_col not in key_cols else [])]
    table = version.to_arrow(wanted) if wanted else None
    out = []
    for i in rows:
        i = int(i)
        row = table.slice(i, 1).to_pylist()[0] if table is not None else {}
        scores = {n: round(float(r.score[i]), 4) for n, r in run.results.items()}
        out.append(Flagged(run.data.ids[i], action, flagged_reasons(run, i), scores,
                           {k: row[k] for k in key_cols}, row.get(blob_col) if blob_col else None))
    return out
