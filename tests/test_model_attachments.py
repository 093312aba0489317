"""What is attached to a model version (benchmarks, calibration, monitor profiles) lives as long as the version:
gc keeps the objects an attachment names, fsck checks them, and a clone carries them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import assay
from assay.errors import InputError
from assay.models import registry
from assay.models.record import attachment_data
from assay.monitor import profile as profiles
from assay.monitor.profile import reference_profile
from assay.remote.remotes import clone
from monitor_helpers import make_repo


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("attach") / "repo")


def test_objects_an_attachment_names_survive_gc_and_travel_with_a_clone(digits: Path, tmp_path: Path) -> None:
    repo = assay.Repo(digits)
    blob = repo.store.put(b"sketches of the training data")
    registry.attach(repo, "digits", "sketch", {"blob": blob}, objects=[blob])
    orphan = repo.store.put(b"nothing names me")
    report = repo.gc(grace=0)
    assert report.removed >= 1 and not repo.store.has(orphan)  # gc did run and collect
    assert repo.store.get(blob) == b"sketches of the training data"
    assert registry.attachments(repo, "digits")["sketch"] == {"blob": blob}
    assert repo.fsck().ok
    copy = clone(str(digits), tmp_path / "copy")
    assert copy.store.get(blob) == b"sketches of the training data"
    assert registry.attachments(copy, "digits")["sketch"] == {"blob": blob}


def test_a_stored_reference_profile_is_kept_by_gc_and_read_not_recomputed(digits: Path) -> None:
    repo = assay.Repo(digits)
    first = reference_profile(repo, "digits")
    oid = registry.attachments(repo, "digits")["profile"]["profiles"]["train"]["oid"]
    repo.gc(grace=0)
    assert repo.store.has(oid)
    profiles._CACHE.clear()
    again = reference_profile(assay.Repo(digits), "digits")
    assert again is not first and again.rows == first.rows
    assert registry.attachments(repo, "digits")["profile"]["profiles"]["train"]["oid"] == oid  # read, not made anew
    assert list(profiles._CACHE) == [oid]


def test_an_attachment_naming_an_object_not_stored_is_refused(digits: Path) -> None:
    repo = assay.Repo(digits)
    before = registry.attachments(repo, "digits")
    with pytest.raises(InputError, match="not in the store"):
        registry.attach(repo, "digits", "sketch", {"x": 1}, objects=["0" * 64])
    assert registry.attachments(repo, "digits") == before


def test_attachments_stored_by_an_older_assay_still_read(digits: Path) -> None:
    repo = assay.Repo(digits)
    oid = repo.store.put(json.dumps({"p50_ms": 0.1}).encode())
    assert attachment_data(repo.store.get(oid), oid) == {"p50_ms": 0.1}
