"""The S3 backend against moto's server in its own process: what the shared contract (tests/test_backend.py) does
not cover: URLs, multipart uploads, conditional writes under contention, pagination, leftovers, bad input
(a bucket that does not exist, refused credentials, an endpoint that does not connect) and crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from assay.errors import BucketNotFound, InputError, ObjectNotFound, StorageAccessDenied, StorageUnreachable
from assay.store import PackingStore, hash_bytes
from assay.store.s3 import S3Backend
from tests.s3_server import CREDENTIALS, MotoServer, free_port

pytestmark = pytest.mark.usefixtures("s3_env")
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def backend(s3_server: MotoServer, s3_bucket: str) -> S3Backend:
    return S3Backend(s3_bucket, f"u-{uuid.uuid4().hex[:12]}", endpoint_url=s3_server.url,
                     multipart_from=5 << 20, part_size=5 << 20)


def _uploads(server: MotoServer, bucket: str, prefix: str) -> list[dict[str, object]]:
    return server.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads") or []


# -- URLs ----------------------------------------------------------------------------------------------


def test_from_url_takes_bucket_and_prefix(s3_server: MotoServer, s3_bucket: str) -> None:
    b = S3Backend.from_url(f"s3://{s3_bucket}/team/store/", endpoint_url=s3_server.url)
    b.put("objects/ab/cd", b"x")
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix="team/")["Contents"]]
    assert keys == ["team/store/objects/ab/cd"] and list(b.list("objects/")) == ["objects/ab/cd"]
    assert b.location.startswith(f"s3://{s3_bucket}/team/store/")


def test_endpoint_comes_from_the_environment(s3_server: MotoServer, s3_bucket: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    assert S3Backend.from_url(f"s3://{s3_bucket}").endpoint_url == s3_server.url


@pytest.mark.parametrize("url", ["https://bucket/x", "s3://", "s3:///prefix", "s3://b/p?x=1"])
def test_a_url_that_is_not_s3_is_refused(url: str) -> None:
    with pytest.raises(InputError, match="not an S3 URL"):
        S3Backend.from_url(url)


@pytest.mark.parametrize(("url", "what"), [("s3://Bad_Bucket/p", "not an S3 bucket name"),
                                           ("s3://bucket/a/../b", "not a prefix"),
                                           ("s3://bucket/.hidden", "not a prefix")])
def test_a_bad_bucket_name_or_prefix_is_refused(url: str, what: str) -> None:
    with pytest.raises(InputError, match=what):
        S3Backend.from_url(url)


def test_credentials_in_a_url_are_refused() -> None:
    with pytest.raises(InputError, match="never put them in a URL"):
        S3Backend.from_url("s3://AKIA:secret@bucket/prefix")


# -- writing and reading -------------------------------------------------------------------------------


def test_a_large_value_goes_up_in_parts_and_comes_back_whole(backend: S3Backend) -> None:
    data = os.urandom((12 << 20) + 12345)
    parts = [b"\x00", memoryview(data)[: 7 << 20], bytearray(data[7 << 20 :])]  # parts of any size
    backend.put("packs/big.pack", parts)
    want = b"\x00" + data
    assert backend.get("packs/big.pack") == want
    entry = backend.stat("packs/big.pack")
    assert entry is not None and entry.size == len(want)
    edge = 5 << 20  # across the boundary of the first two parts
    assert backend.get_ranges("packs/big.pack", [(edge - 3, 6), (len(want) - 2, 10)]) == [
        want[edge - 3 : edge + 3], want[-2:]]
    assert backend.get_range("packs/big.pack", len(want) + 10, 5) == b""  # past the end: empty, not an error
    assert not _uploads_left(backend)


def _uploads_left(backend: S3Backend) -> list[dict[str, object]]:
    return backend.client.list_multipart_uploads(Bucket=backend.bucket, Prefix=backend.prefix).get("Uploads") or []


def test_put_if_absent_has_one_winner_among_racing_writers(backend: S3Backend) -> None:
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: backend.put_if_absent("locks/gc", b"writer %d" % i), range(8)))
    assert won.count(True) == 1
    assert backend.get("locks/gc") == b"writer %d" % won.index(True)


def test_a_missing_key_is_not_found(backend: S3Backend) -> None:
    with pytest.raises(ObjectNotFound, match="is not in s3://"):
        backend.get("objects/00/none")
    with pytest.raises(ObjectNotFound):
        backend.get_range("objects/00/none", 0, 0)
    assert backend.stat("objects/00/none") is None and not backend.delete("objects/00/none")


@pytest.mark.slow
def test_listing_and_deleting_more_keys_than_one_request_holds(backend: S3Backend) -> None:
    keys = [f"keep/{i:05d}" for i in range(1005)]  # a LIST page and a DeleteObjects batch hold 1000
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: backend.put(k, b""), keys))
    assert sorted(backend.list("keep/")) == keys
    backend.delete_many(keys)
    assert not list(backend.list("keep/"))


def test_clean_aborts_multipart_uploads_older_than_the_limit(backend: S3Backend) -> None:
    # moto reports every upload as initiated in 2010, so only "older than now" can be told apart here
    backend.client.create_multipart_upload(Bucket=backend.bucket, Key=backend.prefix + "packs/dead.pack")
    assert backend.clean(time.time() - 365 * 86400 * 30) == 0  # the limit is before 2010's upload
    assert backend.clean(time.time() + 1) == 1 and backend.clean(time.time() + 1) == 0
    assert not _uploads_left(backend)


# -- bad input -----------------------------------------------------------------------------------------


def test_a_bucket_that_does_not_exist(s3_server: MotoServer) -> None:
    with pytest.raises(BucketNotFound, match=r"bucket 'no-such-bucket' does not exist at http://127\.0\.0\.1.*Create"):
        S3Backend.from_url("s3://no-such-bucket/p", endpoint_url=s3_server.url)
    unchecked = S3Backend("no-such-bucket", endpoint_url=s3_server.url, check=False)
    with pytest.raises(BucketNotFound, match="does not exist"):
        unchecked.put("a", b"x")
    with pytest.raises(BucketNotFound, match="does not exist"):
        list(unchecked.list(""))


def test_an_endpoint_that_does_not_connect() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StorageUnreachable, match=rf"cannot reach the S3 endpoint {url}.*--endpoint-url"):
        S3Backend.from_url("s3://bucket/p", endpoint_url=url, max_attempts=2)


def test_no_credentials_at_all(s3_server: MotoServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
                               tmp_path: Path) -> None:
    for name in CREDENTIALS:
        if name.startswith("AWS_ACCESS") or name.startswith("AWS_SECRET"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageAccessDenied, match=r"no AWS credentials found.*AWS_ACCESS_KEY_ID"):
        S3Backend.from_url(f"s3://{s3_bucket}", endpoint_url=s3_server.url)


@pytest.fixture(scope="module")
def auth_server() -> Iterator[tuple[MotoServer, str, dict[str, str]]]:
    """A moto server that checks credentials: the first three requests (an IAM user, its key and its policy)
    are let through unauthenticated (INITIAL_NO_AUTH_ACTION_COUNT); every later one must be signed by a known
    key allowed to do it."""
    server = MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"}).start()
    try:
        import boto3

        iam = boto3.client("iam", endpoint_url=server.url, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        iam.create_user(UserName="assay")
        key = iam.create_access_key(UserName="assay")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="assay", PolicyName="s3", PolicyDocument=json.dumps(policy))
        good = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        server.client(key=good["AWS_ACCESS_KEY_ID"], secret=good["AWS_SECRET_ACCESS_KEY"]).create_bucket(
            Bucket="guarded")
        yield server, "guarded", good
    finally:
        server.stop()


@pytest.mark.parametrize(("key", "secret", "code"), [("AKIAUNKNOWN000000000", "x", "InvalidAccessKeyId"),
                                                     (None, "wrong-secret", "SignatureDoesNotMatch")])
def test_wrong_credentials(auth_server: tuple[MotoServer, str, dict[str, str]], monkeypatch: pytest.MonkeyPatch,
                           key: str | None, secret: str, code: str) -> None:
    server, bucket, good = auth_server
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key or good["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    unchecked = S3Backend(bucket, endpoint_url=server.url, check=False)
    with pytest.raises(StorageAccessDenied, match=rf"refused these credentials .*{code}.*AWS_SECRET_ACCESS_KEY"):
        unchecked.put("a", b"x")
    with pytest.raises(StorageAccessDenied, match=code):
        list(unchecked.list(""))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", good["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", good["AWS_ACCESS_KEY_ID"])
    right = S3Backend(bucket, endpoint_url=server.url)  # the same server takes the right ones
    right.put("a", b"x")
    assert right.get("a") == b"x"


# -- crashes -------------------------------------------------------------------------------------------


def _wait_for_a_part(server: MotoServer, bucket: str, prefix: str, alive: Callable[[], bool],
                     timeout: float = 60.0) -> None:
    """Until a multipart upload under ``prefix`` has at least one part uploaded: the middle of a large put
    (its parts go up one at a time, eight of them, so the put is still under way)."""
    client = server.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert alive(), "the writer ended before a part was seen"
        for up in _uploads(server, bucket, prefix):
            if client.list_parts(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"]).get("Parts"):
                return
        time.sleep(0.02)
    raise AssertionError("no multipart upload began")


_WRITER = """
import os, sys
from assay.store import PackingStore
from assay.store.s3 import S3Backend
url, endpoint = sys.argv[1], sys.argv[2]
backend = S3Backend.from_url(url, endpoint_url=endpoint, multipart_from=5 << 20, part_size=5 << 20, threads=1)
real_call = backend._call
def call(op, **kw):  # after the second part the writer stalls (as a slow link would) until it is killed
    if op == "upload_part" and kw["PartNumber"] > 2:
        import time
        time.sleep(3600)
    return real_call(op, **kw)
backend._call = call
PackingStore(backend).put(sys.stdin.buffer.read())
"""


@pytest.mark.slow
def test_a_writer_killed_in_the_middle_of_a_large_put(s3_server: MotoServer, s3_bucket: str) -> None:
    prefix = f"crash-{uuid.uuid4().hex[:8]}"
    data = os.urandom(40 << 20)  # chunked into a pack of 40 MiB: eight parts of 5 MiB
    oid = hash_bytes(data)
    env = {**os.environ, "PYTHONPATH": SRC}
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, f"s3://{s3_bucket}/{prefix}", s3_server.url],
                              stdin=subprocess.PIPE, env=env)
    assert writer.stdin is not None
    writer.stdin.write(data)
    writer.stdin.close()
    try:
        _wait_for_a_part(s3_server, s3_bucket, prefix, lambda: writer.poll() is None)
    finally:
        writer.kill()
        writer.wait()
    backend = S3Backend.from_url(f"s3://{s3_bucket}/{prefix}", endpoint_url=s3_server.url)
    store = PackingStore(backend)
    assert not store.has(oid)  # no partial object, no pack: the upload was never completed
    assert not [k for k in backend.list("packs/") if k.endswith(".idx")]
    assert backend.clean(time.time() + 1) >= 1 and not _uploads_left(backend)  # the leftover upload
    assert store.put(data) == oid and PackingStore(backend).get(oid) == data  # the next put works


@pytest.mark.slow
def test_the_server_killed_in_the_middle_of_a_large_put() -> None:
    server = MotoServer().start()
    try:
        bucket = server.make_bucket()
        url = f"s3://{bucket}/p"
        store = PackingStore(S3Backend.from_url(url, endpoint_url=server.url, multipart_from=5 << 20,
                                                part_size=5 << 20, threads=1, max_attempts=2, connect_timeout=2))
        data = os.urandom(40 << 20)
        failure: list[BaseException] = []

        def put() -> None:
            try:
                store.put(data)
            except BaseException as e:
                failure.append(e)

        t = threading.Thread(target=put)
        t.start()
        _wait_for_a_part(server, bucket, "p/", t.is_alive)
        server.kill()
        t.join(60)
        assert not t.is_alive() and len(failure) == 1
        assert isinstance(failure[0], StorageUnreachable), repr(failure[0])
        assert "cannot reach the S3 endpoint" in str(failure[0]) or "connection" in str(failure[0])
        server.start()  # moto keeps its data in memory: it comes back empty, so the bucket is made again
        server.make_bucket(bucket)
        again = PackingStore(S3Backend.from_url(url, endpoint_url=server.url))
        oid = hash_bytes(data)
        assert not again.has(oid)
        assert again.put(data) == oid and PackingStore(again.backend).get(oid) == data
    finally:
        server.stop()
