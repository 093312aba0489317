"""A repository whose objects live on S3 (a moto server in its own process on 127.0.0.1): every command works."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import assay
from assay.errors import BucketNotFound
from tests.catalog_servers import postgres_database as postgres_database  # the session fixture
from tests.conftest import make_table
from tests.s3_server import MotoServer


@pytest.fixture
def s3_repo(tmp_path: Path, s3_server: MotoServer, s3_bucket: str, s3_env: None,
            monkeypatch: pytest.MonkeyPatch) -> assay.Repo:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    return assay.init(tmp_path / "work", store_url=f"s3://{s3_bucket}/{tmp_path.name}")


def test_a_repository_on_s3_commits_reads_checks_and_collects(s3_repo: assay.Repo, s3_server: MotoServer,
                                                               s3_bucket: str, tmp_path: Path) -> None:
    config = json.loads((s3_repo.dir / "config.json").read_text())
    assert config["store"] == f"s3://{s3_bucket}/{tmp_path.name}" and "aws" not in json.dumps(config).lower()
    s3_repo.add("t", make_table(500), key="id")
    first = s3_repo.commit("first")
    s3_repo.add("t", make_table(5, seed=3, start=10), mode="upsert")
    s3_repo.commit("fix")
    assert s3_repo.dataset("t", first).to_arrow().num_rows == 500
    (d,) = s3_repo.diff(first, "HEAD")
    assert d.changed == 5
    assert not [p for p in (s3_repo.dir / "objects").rglob("*") if p.is_file()]  # none in the local folder
    listed = s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix=tmp_path.name)
    assert listed.get("KeyCount", 0) > 0  # the objects are in the bucket
    assert s3_repo.fsck().ok
    s3_repo.gc(grace=0)
    assert s3_repo.fsck().ok and s3_repo.dataset("t").to_arrow().num_rows == 500
    again = pickle.loads(pickle.dumps(s3_repo.store))  # reopened from its URL, as a worker would
    assert again.url == s3_repo.store.url and again.has(first)  # type: ignore[attr-defined]
    s3_repo.close()


def test_init_on_a_bucket_that_does_not_exist_says_so_and_writes_nothing(tmp_path: Path, s3_server: MotoServer,
                                                                         s3_env: None,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    with pytest.raises(BucketNotFound):
        assay.init(tmp_path / "w", store_url="s3://no-such-bucket-here/x")
    assert not (tmp_path / "w" / ".assay").exists()


def test_the_cli_on_a_repository_on_s3(tmp_path: Path, s3_server: MotoServer, s3_bucket: str) -> None:
    from tests.s3_server import CREDENTIALS

    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": s3_server.url}
    import pyarrow.parquet as pq

    pq.write_table(make_table(50), tmp_path / "t.parquet")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "assay.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)

    assert run("init", "--store", f"s3://{s3_bucket}/cli-{tmp_path.name}").returncode == 0
    assert run("add", "t", "t.parquet", "--key", "id").returncode == 0
    assert run("commit", "-m", "first").returncode == 0
    assert "50" in run("datasets").stdout
    assert run("fsck").returncode == 0
    listed = s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix=f"cli-{tmp_path.name}")
    assert listed.get("KeyCount", 0) > 0 and not (tmp_path / ".assay" / "catalog.db").read_bytes().count(b"AWS")


def test_two_working_folders_share_a_repository_on_s3_and_postgresql(
        tmp_path: Path, s3_server: MotoServer, s3_bucket: str, s3_env: None, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    from assay.repo.catalog.urls import ENV_URL
    from tests.catalog_servers import catalog_url

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    catalog = catalog_url("postgresql", tmp_path, request)
    monkeypatch.setenv(ENV_URL, catalog)  # the credentials come from the environment, not the config
    store = f"s3://{s3_bucket}/shared-{tmp_path.name}"
    alice = assay.init(tmp_path / "alice", store_url=store, catalog_url=catalog)
    alice.add("t", make_table(100), key="id")
    first = alice.commit("alice's first")
    bob = assay.init(tmp_path / "bob", store_url=store, catalog_url=catalog)  # attaches to the same repository
    assert bob.head() == first and bob.dataset("t").to_arrow().num_rows == 100
    bob.add("t", make_table(3, start=500), mode="append")
    second = bob.commit("bob's")
    assert alice.head() == second and [c.message for _, c in alice.log()] == ["bob's", "alice's first"]
    for folder in ("alice", "bob"):
        assert "assay_test:" not in (tmp_path / folder / ".assay" / "config.json").read_text()
    assert alice.fsck().ok
    alice.close()
    bob.close()




def _count_requests(repo: assay.Repo) -> dict[str, int]:
    """S3 requests that ``repo``'s store makes from now on, by operation (a boto3 event hook: the requests
    still go to the server)."""
    counts: dict[str, int] = {}

    def seen(event_name: str, **_: object) -> None:
        op = event_name.rsplit(".", 1)[-1]
        counts[op] = counts.get(op, 0) + 1

    repo.store.backend.client.meta.events.register("before-call.s3", seen)  # type: ignore[attr-defined]
    return counts


def test_commits_and_manifests_are_read_again_from_local_copies_not_the_bucket(
        s3_repo: assay.Repo, s3_server: MotoServer, s3_bucket: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(make_table(300), tmp_path / "t.parquet")
    s3_repo.add("t", tmp_path / "t.parquet", key="id")
    head = s3_repo.commit("first")
    manifest = s3_repo.datasets()["t"]
    copies = s3_repo.dir / "copies"
    assert (copies / head[:2] / head[2:]).is_file() and (copies / manifest[:2] / manifest[2:]).is_file()
    s3_repo.close()

    with assay.Repo(s3_repo.root) as again:  # the next command: a re-add of the same file reads nothing remote
        counts = _count_requests(again)
        result = again.add("t", tmp_path / "t.parquet", key="id")
        assert result.unchanged == 300 and not counts.get("GetObject")
        assert again.dataset("t").to_arrow().num_rows == 300

    (copies / manifest[:2] / manifest[2:]).write_bytes(b"damaged")  # a damaged copy is dropped, read again
    with assay.Repo(s3_repo.root) as again:
        counts = _count_requests(again)
        assert again.dataset("t").manifest.rows == 300 and counts.get("GetObject", 0) >= 1
        assert again.copies is not None and again.copies.get(manifest) is not None  # kept whole again

    # gc removes the copies of what it collected
    with assay.Repo(s3_repo.root) as again:
        again.add("t", make_table(10, seed=5, start=1000), mode="append")
        again.reset()
        dead = {p.parent.name + p.name for p in copies.rglob("*") if p.is_file()} - {head, manifest}
        assert dead  # the manifest of the add that was reset
        again.gc(grace=0)
        left = {p.parent.name + p.name for p in copies.rglob("*") if p.is_file()}
        assert left == {head, manifest}

    # fsck asks the bucket, not the copies: a commit damaged in the bucket is found though its copy is good
    key = f"{tmp_path.name}/objects/{head[:2]}/{head[2:]}"
    s3_server.client().put_object(Bucket=s3_bucket, Key=key, Body=b"\x00damaged")
    with assay.Repo(s3_repo.root) as again:
        assert head in again.fsck().corrupt
