"""Keys as objects in an S3 bucket (AWS S3 or any S3-compatible server): the raw backend of a store on object storage.

A store on S3 is the packing store over this backend::

    from assay.store import PackingStore
    from assay.store.s3 import S3Backend

    store = PackingStore(S3Backend.from_url("s3://bucket/prefix", endpoint_url="http://127.0.0.1:9000"))

Needs boto3 (``pip install 'assay[s3]'``). Credentials come only from boto3's usual chain (``AWS_ACCESS_KEY_ID``
and ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws``, an instance role); this module never stores them.
The endpoint is ``endpoint_url``, else ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, else AWS. Requests are
retried by botocore's standard retry mode. How each operation of the backend contract maps to S3:

=================  =====================================================================================
put                one PutObject up to ``multipart_from`` bytes; above, a multipart upload of parts of
                   ``part_size`` (at least 5 MiB), uploaded by ``threads`` threads, completed last: the key
                   appears whole when CompleteMultipartUpload returns, or not at all (a failed upload is
                   aborted; one whose writer died is removed by ``clean``)
put_if_match       PutObject with ``If-Match: ETAG`` (or ``If-None-Match: *``): a compare-and-swap; a server
                   without conditional writes is an error here (no racy fallback)
put_if_absent      PutObject with ``If-None-Match: *`` (S3 conditional writes, 2024); 412 means "exists".
                   A server that does not implement it (501) gets a HEAD then a PutObject, which races:
                   two writers that both see the key absent both write it, and the last one wins
get, get_range(s)  GetObject, with a Range header for ranges (nearby ranges in one request)
stat, scan         HeadObject / ListObjectsV2: size and LastModified (whole seconds: HEAD's resolution)
list               ListObjectsV2, paginated
delete             HeadObject then DeleteObject (S3 does not say whether a key existed); ``delete_many``
                   is DeleteObjects, 1000 keys a request
sync               nothing: a key is durable when its put returns
clean              aborts multipart uploads initiated before the limit (leftovers of writers that died)
=================  =====================================================================================

moto's server (the tests' S3) reports every multipart upload as initiated in 2010, so there ``clean`` aborts
uploads still in progress too; on AWS S3 and servers that report the time, only those older than the limit.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlparse

from assay.errors import (
    BucketNotFound,
    InputError,
    ObjectNotFound,
    StorageAccessDenied,
    StorageError,
    StorageUnreachable,
)
from assay.store.backend import Backend, Buffer, Entry, check_key

MULTIPART_FROM = 64 << 20  # values larger than this are written by a multipart upload (a fragment of ~30 MB: one PUT)
PART_SIZE = 8 << 20  # bytes per part (S3: at least 5 MiB but the last, at most 10,000 parts)
_MIN_PART, _MAX_PARTS = 5 << 20, 10_000
_DELETE_BATCH = 1000  # keys per DeleteObjects request (the S3 limit)
_COALESCE_GAP = 1 << 20  # ranges of one get_ranges closer than this are read in one request
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "ExpiredToken",
           "InvalidToken", "InvalidClientTokenId", "AuthorizationHeaderMalformed", "403"}
_MISSING = {"NoSuchKey", "404", "NotFound"}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_KEYLIKE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")  # as backend.check_key
T = TypeVar("T")


_LOADER: list[Any] = []  # botocore's data loader, shared by the sessions of this process


def _botocore_session() -> Any:
    """A botocore session: boto3's core, without boto3's own import (its transfer manager and resources, which
    assay does not use, cost a tenth of a second at every command that opens S3).

    A new session each time (credentials are looked up anew: the environment may have changed), sharing one
    data loader, whose cache of the S3 service model makes every client after the first cost 15 ms, not 100."""
    try:
        import botocore.session
    except ImportError as e:  # pragma: no cover - boto3 (and so botocore) is a dev dependency
        raise InputError("a store on S3 needs boto3, which is not installed: pip install 'assay[s3]'") from e
    session = botocore.session.get_session()
    if _LOADER:
        session.register_component("data_loader", _LOADER[0])
    else:
        _LOADER.append(session.get_component("data_loader"))
    return session


class S3Backend(Backend):
    """Keys as objects under ``prefix`` in ``bucket`` (see the module docstring)."""

    list_page = 1000  # keys a ListObjectsV2 request returns: a listing of N keys costs N / 1000 requests

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, region: str | None = None,
                 multipart_from: int = MULTIPART_FROM, part_size: int = PART_SIZE, threads: int = 4,
                 max_attempts: int = 5, connect_timeout: float = 10.0, read_timeout: float = 60.0,
                 check: bool = True):
        session = _botocore_session()
        from botocore.config import Config

        stripped = check_location(bucket, prefix)
        self.bucket = bucket
        self.prefix = stripped + "/" if stripped else ""
        self.endpoint_url = (endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
                             or os.environ.get("AWS_ENDPOINT_URL") or None)
        self.multipart_from = max(multipart_from, _MIN_PART)
        self.part_size = max(part_size, _MIN_PART)
        self.threads = max(1, threads)
        self.location = f"s3://{bucket}/{self.prefix}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")
        self._conditional = True  # whether the server honours If-None-Match (cleared on a 501)
        # no CRC32 of every body (botocore's default since 1.36): every object is hashed (BLAKE3) where it is
        # read, and the transfer is covered already, by the SigV4 payload hash over HTTP and by TLS over HTTPS
        config = Config(retries={"mode": "standard", "max_attempts": max_attempts}, connect_timeout=connect_timeout,
                        read_timeout=read_timeout, max_pool_connections=2 * self.threads + 4,
                        request_checksum_calculation="when_required", response_checksum_validation="when_required")
        self.client = session.create_client("s3", endpoint_url=self.endpoint_url, config=config,
                                            region_name=region or session.get_config_variable("region")
                                            or "us-east-1")
        if check:
            self.check()

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str | None = None, **kw: Any) -> S3Backend:
        """The backend for ``s3://bucket/prefix``."""
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, endpoint_url=endpoint_url, **kw)

    def check(self) -> None:
        """Raise a clear error unless the bucket exists and these credentials may read it (one HEAD)."""
        self._call("head_bucket", Bucket=self.bucket)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    # -- errors ----------------------------------------------------------------------------------------

    def _call(self, op: str, **kw: Any) -> Any:
        """``client.<op>(**kw)``, with failures of the bucket, the credentials and the endpoint as AssayErrors;
        a missing key stays a ClientError for the caller."""
        from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, NoCredentialsError

        try:
            return getattr(self.client, op)(**kw)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchBucket" or (op == "head_bucket" and code in _MISSING):
                raise BucketNotFound(
                    f"bucket {self.bucket!r} does not exist at {self.endpoint_url or 'AWS S3'}. Create it "
                    f"(aws s3 mb s3://{self.bucket}), or check the bucket name and --endpoint-url.") from e
            if code in _DENIED:
                raise StorageAccessDenied(
                    f"S3 refused these credentials for s3://{self.bucket} ({code}: "
                    f"{e.response.get('Error', {}).get('Message', '')}). Check AWS_ACCESS_KEY_ID, "
                    "AWS_SECRET_ACCESS_KEY or AWS_PROFILE (and ~/.aws/credentials), and that they may read "
                    "and write this bucket.") from e
            raise
        except NoCredentialsError as e:
            raise StorageAccessDenied(
                f"no AWS credentials found for s3://{self.bucket}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or write ~/.aws/credentials") from e
        except (ConnectionError, HTTPClientError) as e:
            raise StorageUnreachable(
                f"cannot reach the S3 endpoint {self.endpoint_url or 'of AWS'} for s3://{self.bucket} ({e}). "
                "Check --endpoint-url (or AWS_ENDPOINT_URL) and that the server is running and reachable; "
                "nothing was written by the failed request.") from e

    def _get_or_missing(self, key: str, op: str, **kw: Any) -> Any:
        from botocore.exceptions import ClientError

        try:
            return self._call(op, Bucket=self.bucket, Key=self._key(key), **kw)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise ObjectNotFound(f"{key} is not in {self.location}") from e
            if code == "InvalidRange":  # a range past the end: only an existing key answers 416
                return None
            raise _other(e, op, key) from e

    # -- writing ---------------------------------------------------------------------------------------

    def put(self, key: str, data: Buffer | Sequence[Buffer], *, sync: bool = True) -> None:
        parts = [data] if isinstance(data, bytes | bytearray | memoryview) else list(data)
        size = sum(memoryview(p).nbytes for p in parts)
        if size <= self.multipart_from:
            self._put_object(key, parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) else _Parts(parts))
        else:
            self._multipart(key, parts, size)

    def _put_object(self, key: str, body: bytes | _Parts, **kw: Any) -> None:
        from botocore.exceptions import ClientError

        try:
            self._call("put_object", Bucket=self.bucket, Key=self._key(key), Body=body, **kw)
        except ClientError as e:
            raise _other(e, "put", key) from e

    def _multipart(self, key: str, parts: list[Buffer], size: int) -> None:
        """Upload ``parts`` as one object, ``part_size`` bytes a part, several at once; abort on failure."""
        from botocore.exceptions import ClientError

        full = self._key(key)
        part_size = max(self.part_size, -(-size // _MAX_PARTS))
        upload = self._call("create_multipart_upload", Bucket=self.bucket, Key=full)["UploadId"]
        try:
            done = self._upload_parts(full, upload, _rechunk(parts, part_size))
            self._call("complete_multipart_upload", Bucket=self.bucket, Key=full, UploadId=upload,
                       MultipartUpload={"Parts": done})
        except BaseException as e:
            with contextlib.suppress(Exception):  # best effort: a leftover upload is no key; clean() aborts it
                self._call("abort_multipart_upload", Bucket=self.bucket, Key=full, UploadId=upload)
            if isinstance(e, ClientError):
                raise _other(e, "put", key) from e
            raise

    def _upload_parts(self, full: str, upload: str, chunks: Iterator[bytes]) -> list[dict[str, Any]]:
        def one(number: int, body: bytes) -> dict[str, Any]:
            r = self._call("upload_part", Bucket=self.bucket, Key=full, UploadId=upload, PartNumber=number,
                           Body=body)
            return {"ETag": r["ETag"], "PartNumber": number}

        return _bounded_map(one, chunks, self.threads)

    def put_if_absent(self, key: str, data: Buffer) -> bool:
        from botocore.exceptions import ClientError

        body = bytes(data)
        for _ in range(5):
            if not self._conditional:  # racy fallback: see the module docstring
                if self.exists(key):
                    return False
                self._put_object(key, body)
                return True
            try:
                self._call("put_object", Bucket=self.bucket, Key=self._key(key), Body=body, IfNoneMatch="*")
                return True
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code == "PreconditionFailed" or status == 412:
                    return False
                if code == "ConditionalRequestConflict" or status == 409:  # a concurrent conditional write
                    continue
                if code == "NotImplemented" or status == 501:
                    self._conditional = False
                    continue
                raise _other(e, "put_if_absent", key) from e
        raise StorageError(f"conditional writes of {key} in {self.location} kept conflicting (409) with others; "
                           "nothing was written by this one: run the command again.")

    def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        """The value of ``key`` and its ETag (the version ``put_if_match`` compares against); None when absent."""
        try:
            r = self._get_or_missing(key, "get_object")
        except ObjectNotFound:
            return None
        return self._read_body(r, key), str(r["ETag"])

    def put_if_match(self, key: str, data: Buffer, etag: str | None) -> bool:
        """Write ``key`` only if its ETag is still ``etag`` (None: only if it is absent): a compare-and-swap by
        S3 conditional writes (``If-Match`` / ``If-None-Match: *``). False when another writer got there first.

        Unlike ``put_if_absent`` there is no racy fallback: a server without conditional writes (501) is an
        error, since a compare-and-swap that races is not one."""
        from botocore.exceptions import ClientError

        cond = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        try:
            self._call("put_object", Bucket=self.bucket, Key=self._key(key), Body=bytes(data), **cond)
            return True
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey") or status in (409, 412, 404):
                return False  # moved, being moved, or deleted since it was read: read it again
            if code == "NotImplemented" or status == 501:
                raise StorageError(
                    f"the S3 server at {self.endpoint_url or 'AWS'} does not implement conditional writes "
                    f"(If-Match), which {key} in {self.location} is moved by. Use a server that does (AWS S3, "
                    "MinIO, moto), or keep the refs in a catalog on PostgreSQL (`--catalog`).") from e
            raise _other(e, "put_if_match", key) from e

    def delete(self, key: str) -> bool:
        if self.stat(key) is None:
            return False
        self.delete_many([key])
        return True

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove every key of ``keys`` (absent ones are ignored), 1000 a request."""
        batch: list[dict[str, str]] = []
        for key in keys:
            batch.append({"Key": self._key(key)})
            if len(batch) == _DELETE_BATCH:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, batch: list[dict[str, str]]) -> None:
        r = self._call("delete_objects", Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        errors = r.get("Errors") or []
        if errors:
            first = errors[0]
            raise StorageError(f"S3 did not delete {len(errors)} of {len(batch)} keys in {self.location} "
                               f"(first: {first.get('Key')}: {first.get('Code')} {first.get('Message')}); "
                               "run the command again.")

    # -- reading ---------------------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        r = self._get_or_missing(key, "get_object")
        return self._read_body(r, key)

    def _read_body(self, response: dict[str, Any], key: str) -> bytes:
        from botocore.exceptions import ConnectionError, HTTPClientError, ResponseStreamingError

        try:
            return bytes(response["Body"].read())
        except (ConnectionError, HTTPClientError, ResponseStreamingError) as e:
            raise StorageUnreachable(f"the connection to {self.location} broke while reading {key} ({e}); "
                                     "check that the server is running, and run the command again.") from e

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            if self.stat(key) is None:
                raise ObjectNotFound(f"{key} is not in {self.location}")
            return b""
        r = self._get_or_missing(key, "get_object", Range=f"bytes={offset}-{offset + length - 1}")
        return b"" if r is None else self._read_body(r, key)

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        wanted = [(o, n) for o, n in ranges if n > 0]
        if not wanted:
            return [self.get_range(key, o, n) for o, n in ranges]
        start = min(o for o, _ in wanted)
        end = max(o + n for o, n in wanted)
        if end - start - sum(n for _, n in wanted) > _COALESCE_GAP:  # far apart: one request each
            return [self.get_range(key, o, n) for o, n in ranges]
        span = self.get_range(key, start, end - start)
        return [span[o - start : o - start + n] if n > 0 else b"" for o, n in ranges]

    def stat(self, key: str) -> Entry | None:
        try:
            r = self._get_or_missing(key, "head_object")
        except ObjectNotFound:
            return None
        return Entry(key, int(r["ContentLength"]), float(int(r["LastModified"].timestamp())))

    def list(self, prefix: str) -> Iterator[str]:
        for entry in self.scan(prefix):
            yield entry.key

    def scan(self, prefix: str) -> Iterator[Entry]:
        token: dict[str, str] = {}
        n = len(self.prefix)
        while True:
            r = self._call("list_objects_v2", Bucket=self.bucket, Prefix=self.prefix + prefix, **token)
            for item in r.get("Contents") or []:
                yield Entry(item["Key"][n:], int(item["Size"]), float(int(item["LastModified"].timestamp())))
            if not r.get("IsTruncated"):
                return
            token = {"ContinuationToken": r["NextContinuationToken"]}

    # -- durability and leftovers ----------------------------------------------------------------------

    def sync(self, keys: Iterable[str]) -> None:
        """Nothing to do: an S3 put is durable when it returns."""

    def clean(self, older_than: float) -> int:
        """Abort the multipart uploads under this prefix initiated before ``older_than``; how many."""
        n = 0
        marker: dict[str, str] = {}
        while True:
            r = self._call("list_multipart_uploads", Bucket=self.bucket, Prefix=self.prefix, **marker)
            for up in r.get("Uploads") or []:
                if up["Initiated"].timestamp() < older_than:
                    self._abort(up["Key"], up["UploadId"])
                    n += 1
            if not r.get("IsTruncated"):
                return n
            marker = {"KeyMarker": r["NextKeyMarker"], "UploadIdMarker": r["NextUploadIdMarker"]}

    def _abort(self, full: str, upload: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self._call("abort_multipart_upload", Bucket=self.bucket, Key=full, UploadId=upload)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "NoSuchUpload":  # aborted or completed meanwhile
                raise _other(e, "clean", full) from e


class _Parts(io.RawIOBase):
    """The buffers of one PutObject's body read one after the other, as one seekable file: botocore hashes it
    and sends it without the copy that joining them would cost (a fragment of 30 MB and its codec byte)."""

    def __init__(self, parts: Sequence[Buffer]):
        self._parts = [memoryview(p).cast("B") for p in parts]
        self._size = sum(p.nbytes for p in self._parts)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        written, at = 0, 0
        for part in self._parts:
            end = at + part.nbytes
            if self._pos < end and written < out.nbytes:
                start = self._pos - at
                n = min(part.nbytes - start, out.nbytes - written)
                out[written:written + n] = part[start:start + n]
                written += n
                self._pos += n
            at = end
        return written

    def __len__(self) -> int:
        return self._size


def parse_s3_url(url: str) -> tuple[str, str]:
    """Bucket and prefix of ``s3://bucket/prefix``, checked (InputError otherwise); no client is made."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
        raise InputError(f"{url!r} is not an S3 URL: write s3://BUCKET/PREFIX (the endpoint goes in "
                         "--endpoint-url or AWS_ENDPOINT_URL, credentials in the AWS credential chain)")
    if parsed.username or parsed.password:
        raise InputError(f"{url!r} holds credentials: never put them in a URL; use AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials")
    check_location(parsed.netloc, parsed.path)
    return parsed.netloc, parsed.path


def check_location(bucket: str, prefix: str) -> str:
    """``prefix`` without its slashes at either end, once bucket and prefix are checked (InputError)."""
    if not _BUCKET.match(bucket):
        raise InputError(f"{bucket!r} is not an S3 bucket name: 3 to 63 lowercase letters, digits, '.' and '-', "
                         "starting and ending with a letter or digit")
    stripped = prefix.strip("/")
    if stripped and not _KEYLIKE.match(stripped):
        raise InputError(f"{prefix!r} is not a prefix for a store: names of letters, digits, '.', '_' and '-' "
                         "joined by '/', none starting with '.' or '-'")
    return stripped


def _other(e: Any, op: str, key: str) -> StorageError:
    err = e.response.get("Error", {})
    return StorageError(f"S3 refused {op} of {key}: {err.get('Code')} {err.get('Message', '')}. Nothing was "
                        "changed by that request; run the command again, and check the server if it persists.")


def _rechunk(parts: Sequence[Buffer], size: int) -> Iterator[bytes]:
    """The bytes of ``parts`` in order, ``size`` bytes at a time (the last shorter)."""
    pending: list[memoryview] = []
    held = 0
    for part in parts:
        view = memoryview(part).cast("B")
        while view.nbytes:
            take = min(size - held, view.nbytes)
            pending.append(view[:take])
            held += take
            view = view[take:]
            if held == size:
                yield b"".join(pending)
                pending, held = [], 0
    if held or not parts:
        yield b"".join(pending)


def _bounded_map(fn: Callable[[int, bytes], T], chunks: Iterator[bytes], threads: int) -> list[T]:
    """``fn(number, chunk)`` for each chunk (numbered from 1) on ``threads`` threads, at most ``threads``
    chunks in flight (so that memory stays bounded); the results in order."""
    results: list[T] = []
    with ThreadPoolExecutor(threads) as pool:
        window: list[Future[T]] = []
        for number, chunk in enumerate(chunks, 1):
            window.append(pool.submit(fn, number, chunk))
            if len(window) >= threads:
                results.append(window.pop(0).result())
        results.extend(f.result() for f in window)
    return results


__all__ = ["MULTIPART_FROM", "PART_SIZE", "S3Backend", "check_location", "parse_s3_url"]
