"""Remotes on S3 (moto's server in its own process, over HTTP): clone, fetch, push, pull; refs by conditional
writes; pushes killed or cut off midway; a remote whose refs are in PostgreSQL (a private server, restarted)."""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import assay
from assay.errors import BucketNotFound, ConflictError, CorruptObject, InputError, NonFastForward, RefNotFound
from assay.remote import add_remote, clone, fetch, missing, pull, push, push_tags
from assay.remote.ends import open_url
from assay.remote.s3refs import REFS_KEY, S3Refs
from assay.repo.catalog import RefUpdate
from assay.store import LocalObjectStore
from assay.store.s3 import S3Backend
from tests.conftest import make_table
from tests.s3_server import CREDENTIALS, MotoServer, free_port
from tests.tcp_proxy import Relay

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def endpoint(s3_server: MotoServer, s3_env: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    return s3_server.url


@pytest.fixture
def url(s3_bucket: str) -> str:
    return f"s3://{s3_bucket}/remote-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def local(tmp_path: Path, endpoint: str, url: str) -> Iterator[assay.Repo]:
    r = assay.init(tmp_path / "local")
    r.add("t", make_table(200), key="id")
    r.commit("first")
    r.tag("v1")
    add_remote(r, "origin", url)
    yield r
    r.close()


def _rows(repo: assay.Repo) -> int:
    return repo.dataset("t").to_arrow().num_rows


def _refs_doc(s3_server: MotoServer, url: str) -> dict:  # type: ignore[type-arg]
    bucket, _, prefix = url[len("s3://"):].partition("/")
    body = s3_server.client().get_object(Bucket=bucket, Key=f"{prefix}/{REFS_KEY}")["Body"].read()
    return dict(json.loads(body))


def _whole(url: str, commit: str, scratch: Path, endpoint: str | None = None) -> None:
    """Every object ``commit`` reaches is on the remote and hashes to its id (a walk reading all of them)."""
    with open_url(url, endpoint_url=endpoint) as remote:
        empty = LocalObjectStore(scratch / uuid.uuid4().hex)
        order, _ = missing(remote.store, empty, [commit])  # reads (and verifies) each object it walks
        assert commit in order


def test_push_clone_fetch_and_pull_through_a_bare_s3_remote(local: assay.Repo, url: str, tmp_path: Path,
                                                            s3_server: MotoServer) -> None:
    first = push(local, "origin")
    assert first.old is None and first.new == local.head() and first.sent.objects > 0
    assert push_tags(local, "origin") == {"v1": local.head()}
    copy = clone(url, tmp_path / "copy")
    assert copy.branch == "main" and copy.head() == local.head() and _rows(copy) == 200
    assert copy.tags() == local.tags() and copy.fsck().ok
    copy.add("t", make_table(2, start=1000), mode="append")
    tip = copy.commit("two more")
    again = push(copy, "origin")
    assert again.new == tip and again.old == local.head() and 0 < again.sent.objects <= 8  # the change only
    assert push(copy, "origin").up_to_date
    fetched, merged = pull(local, "origin")
    assert merged.fast_forward and local.head() == tip and _rows(local) == 202
    assert fetched.branches == {"main": (first.new, tip)}
    doc = _refs_doc(s3_server, url)
    assert doc["head"] == "main" and doc["refs"]["main"] == {"kind": "branch", "commit": tip}
    assert doc["refs"]["v1"]["kind"] == "tag" and next(e[2] for e in doc["log"]) == tip
    entry = json.loads((local.dir / "remotes.json").read_text())["remotes"]["origin"]
    assert entry == {"url": url}  # the endpoint came from the environment; nothing else is kept
    copy.close()


def test_a_lazy_clone_of_an_s3_remote_reads_data_and_models_over_http_on_first_use(
        local: assay.Repo, url: str, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from assay.remote.partial import PartialStore

    data = local.dataset("t").to_arrow()
    model = LogisticRegression(max_iter=200).fit(data.to_pandas()[["x", "count"]], data.column("label").to_pylist())
    local.register_model("clf", model, train="t@HEAD")
    push(local, "origin")
    copy = assay.clone(url, tmp_path / "lazy", lazy=True)
    assert isinstance(copy.store, PartialStore)
    held = len(list(copy.store.iter_oids()))
    assert copy.store.fetched.objects == 0 and copy.fsck().not_fetched > 0
    assert copy.dataset("t").to_arrow().equals(data)  # fragments read from S3, verified, kept
    loaded = copy.load_model("clf")  # the artifact too
    assert (loaded.predict(data.to_pandas()[["x", "count"]]) == model.predict(data.to_pandas()[["x", "count"]])).all()
    assert len(list(copy.store.iter_oids())) == held + copy.store.fetched.objects > held
    assert copy.fsck().ok
    copy.close()


def test_a_push_behind_an_s3_remote_is_refused_and_pull_then_push_works(local: assay.Repo, url: str,
                                                                       tmp_path: Path) -> None:
    push(local, "origin")
    a, b = clone(url, tmp_path / "a"), clone(url, tmp_path / "b")
    a.add("t", make_table(1, start=5000), mode="append")
    a.commit("a's")
    push(a, "origin")
    b.add("t", make_table(1, start=6000), mode="append")
    b.commit("b's")
    with pytest.raises(NonFastForward, match="assay pull origin main"):
        push(b, "origin")
    pull(b, "origin")
    assert push(b, "origin").new == b.head() and _rows(b) == 202
    a.close()
    b.close()


def test_s3_refs_move_by_compare_and_swap_under_concurrent_writers(endpoint: str, url: str) -> None:
    commits = [f"{i:064x}" for i in range(1, 9)]
    errors: list[BaseException] = []

    def move(name: str, new: str, expected: str | None) -> None:
        try:
            S3Refs(S3Backend.from_url(url)).update_ref(name, "branch", new, expected)
        except BaseException as e:
            errors.append(e)

    def race(args: list[tuple[str, str, str | None]]) -> None:
        threads = [threading.Thread(target=move, args=a) for a in args]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    race([(f"b{i}", c, None) for i, c in enumerate(commits)])  # eight branches at once: every one lands
    refs = S3Refs(S3Backend.from_url(url))
    assert not errors and {r.name: r.commit for r in refs.list_refs("branch")} == {
        f"b{i}": c for i, c in enumerate(commits)}
    race([("b0", c, commits[0]) for c in commits[1:]])  # seven moves of one branch from one commit: one wins
    assert len(errors) == 6 and all(isinstance(e, ConflictError) for e in errors)
    assert refs.get_ref("b0").commit in commits[1:]  # type: ignore[union-attr]
    with pytest.raises(ConflictError):  # all or nothing: one stale update refuses the lot
        refs.update_refs([RefUpdate("b1", "branch", commits[0], commits[1]),
                          RefUpdate("b2", "branch", commits[0], "f" * 64)])
    assert refs.get_ref("b1").commit == commits[1]  # type: ignore[union-attr]


def test_bad_s3_remote_input_says_what_to_do(local: assay.Repo, tmp_path: Path, url: str) -> None:
    with pytest.raises(RefNotFound, match="nothing was pushed there yet"):
        fetch(local, "origin")
    add_remote(local, "nobucket", "s3://no-such-bucket-here/x")
    with pytest.raises(BucketNotFound, match="no-such-bucket-here"):
        push(local, "nobucket")
    with pytest.raises(InputError, match="not an S3 bucket name"):
        add_remote(local, "bad", "s3://Bad_Bucket/x")
    with pytest.raises(InputError, match="password does not go"):
        add_remote(local, "pg", url, catalog="postgresql://u:secret@127.0.0.1/db")
    with pytest.raises(InputError, match="for S3 remotes"):
        add_remote(local, "folder", str(tmp_path), catalog="postgresql://127.0.0.1/db")
    with pytest.raises(InputError, match="not an S3 endpoint URL"):
        add_remote(local, "ep", url, endpoint_url="http://key:secret@127.0.0.1:9000")
    with pytest.raises(RefNotFound, match="nothing was pushed there yet"):
        clone(url, tmp_path / "c")
    assert not (tmp_path / "c").exists()
    assert "secret" not in (local.dir / "remotes.json").read_text()


def test_credentials_are_never_in_config_refs_or_output(tmp_path: Path, s3_server: MotoServer, url: str) -> None:
    key, secret = "AKIAASSAYTESTKEY0001", "assay-s3-secret-" + uuid.uuid4().hex
    env = {**os.environ, **CREDENTIALS, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    import pyarrow.parquet as pq

    pq.write_table(make_table(30), tmp_path / "t.parquet")
    outputs: list[str] = []

    def run(*args: str, cwd: Path = tmp_path / "w", ok: bool = True) -> None:
        p = subprocess.run([sys.executable, "-m", "assay.cli", *args], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=120)
        outputs.append(p.stdout + p.stderr)
        assert (p.returncode == 0) == ok, p.stdout + p.stderr

    (tmp_path / "w").mkdir()
    run("init")
    run("add", "t", str(tmp_path / "t.parquet"), "--key", "id")
    run("commit", "-m", "first")
    run("remote", "add", "origin", url, "--endpoint-url", s3_server.url)
    run("remote", "list", "--json")
    assert json.loads(outputs[-1])["origin"] == {"url": url, "endpoint_url": s3_server.url, "branches": {}}
    run("push", "origin")
    run("clone", url, str(tmp_path / "c"), "--endpoint-url", s3_server.url, cwd=tmp_path)
    run("fetch", "origin", cwd=tmp_path / "c")
    run("remote", "add", "gone", "s3://no-such-bucket-here/x", "--endpoint-url", s3_server.url)
    run("push", "gone", ok=False)
    assert "does not exist" in outputs[-1]
    stored = [p.read_bytes() for d in ("w", "c") for p in (tmp_path / d / ".assay").rglob("*") if p.is_file()]
    stored.append(json.dumps(_refs_doc(s3_server, url)).encode())
    for blob in [*stored, *(o.encode() for o in outputs)]:
        assert secret.encode() not in blob and key.encode() not in blob


# -- crashes ------------------------------------------------------------------------------------------------------

CHILD = """
import os, signal, sys
import assay
from assay.remote import push, transfer
transfer.BATCH = 2  # many small batches: many points to die at
kill_at, victim = int(sys.argv[2]), int(sys.argv[3]) or os.getpid()
def progress(stage, done, total):
    if done >= kill_at:
        os.kill(victim, signal.SIGKILL)
push(assay.Repo(sys.argv[1]), "origin", progress=progress)
"""


_SEQ = itertools.count()


def _many_commits(repo: assay.Repo, n: int) -> str:
    for _ in range(n):
        i = next(_SEQ)
        repo.add(f"d{i % 4}", make_table(20 + i % 7, seed=i, start=100 * i), key="id")
        repo.commit(f"c{i}")
    return repo.head()  # type: ignore[return-value]


def _push_child(repo: assay.Repo, kill_at: int, victim: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-c", CHILD, str(repo.root), str(kill_at), str(victim)], env=env,
                          capture_output=True, text=True, timeout=180)


def _remote_tip(url: str, endpoint: str | None = None) -> str | None:
    with open_url(url, endpoint_url=endpoint, create=True) as remote:
        ref = remote.catalog.get_ref("main")
        return ref.commit if ref else None


@pytest.mark.slow
def test_a_push_killed_at_random_points_leaves_the_remote_whole_and_resumes(local: assay.Repo, url: str,
                                                                           tmp_path: Path) -> None:
    push(local, "origin")
    base = local.head()
    rng = random.Random(11)
    for round_ in range(int(os.environ.get("ASSAY_CRASH_ROUNDS", "4"))):  # the figure: 20
        tip = _many_commits(local, 6)
        with open_url(url, create=True) as remote:
            total = len(missing(local.store, remote.store, [tip])[0])
        kill_at = rng.randrange(1, total)
        child = _push_child(local, kill_at)
        assert child.returncode == -9, child.stderr  # died by SIGKILL, in the middle
        assert _remote_tip(url) == base  # the ref did not move: the objects it reaches are all there
        _whole(url, base, tmp_path)
        resumed = push(local, "origin")
        stored_before = total - resumed.sent.objects
        assert resumed.new == tip and stored_before >= kill_at - (kill_at % 2)  # only what was missing moved
        assert 0 < resumed.sent.objects < total
        _whole(url, tip, tmp_path)
        base = tip
        print(f"round {round_}: {total} objects, killed after {kill_at}, resumed with {resumed.sent.objects}")
    copy = clone(url, tmp_path / "copy")
    assert copy.head() == base and copy.fsck().ok
    copy.close()


@pytest.mark.slow
def test_the_s3_endpoint_dying_mid_push_leaves_old_refs_and_a_retry_completes(
        tmp_path: Path, s3_server: MotoServer, s3_env: None, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    relay = Relay(free_port(), s3_server.port).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", relay.url)
    url = f"s3://{s3_bucket}/relay-{uuid.uuid4().hex[:8]}"
    repo = assay.init(tmp_path / "w")
    try:
        base = _many_commits(repo, 2)
        add_remote(repo, "origin", url)
        push(repo, "origin")
        for kill_at in (1, 5):
            tip = _many_commits(repo, 5)
            assert relay.proc is not None
            child = _push_child(repo, kill_at, victim=relay.proc.pid)
            relay.proc.wait()
            relay.proc = None
            assert child.returncode == 1 and "cannot reach the S3 endpoint" in child.stderr, child.stderr
            assert _remote_tip(url, s3_server.url) == base  # read past the dead endpoint, from the server
            _whole(url, base, tmp_path, s3_server.url)
            relay.start()  # the endpoint is back, with what it had
            with open_url(url) as remote:
                left = len(missing(repo.store, remote.store, [tip])[0])
            done = push(repo, "origin")
            assert done.new == tip and done.sent.objects == left
            _whole(url, tip, tmp_path)
            base = tip
    finally:
        repo.close()
        relay.kill()


# -- refs in PostgreSQL ---------------------------------------------------------------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A PostgreSQL server of this test's own (initdb + pg_ctl in a temporary folder, on a free port): it can
    be stopped and restarted without touching the machine's shared cluster."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="assay-pg-", dir="/tmp"))
        self.port = free_port()
        self.password = "pg-" + uuid.uuid4().hex
        self.user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        os.chmod(self.dir, 0o755)
        (self.dir / "pw").write_text(self.password)
        if self.user:
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.dir / "pw", "postgres")
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "assay", "--auth=scram-sha-256",
                  f"--pwfile={self.dir / 'pw'}")
        (self.dir / "pw").unlink()

    def _run(self, *args: str) -> None:
        subprocess.run([*self.user, str(PG_BIN / args[0]), *args[1:]], check=True, capture_output=True, timeout=120)

    def ctl(self, action: str) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-o", opts, "-l", str(self.dir / "log"), "-w",
                  *(["-m", "fast"] if action != "start" else []), action)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://assay@127.0.0.1:{self.port}/postgres?schema=remote1"

    def remove(self) -> None:
        subprocess.run([*self.user, str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists():
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"no PostgreSQL at {PG_BIN}: .ci/run installs Debian's postgresql package")
        pytest.skip(f"no PostgreSQL binaries at {PG_BIN} (.ci/run installs them)")
    server = PrivatePostgres()
    try:
        server.ctl("start")
        yield server
    finally:
        server.remove()


@pytest.mark.slow
def test_an_s3_remote_with_refs_in_postgresql_survives_a_restart_of_the_server(
        local: assay.Repo, url: str, tmp_path: Path, private_postgres: PrivatePostgres,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from assay.errors import CatalogUnavailable

    monkeypatch.setenv("PGPASSWORD", private_postgres.password)
    monkeypatch.setenv("PGUSER", "assay")  # for the working folder attached below (its config keeps no user)
    add_remote(local, "shared", url, catalog=private_postgres.url)
    assert private_postgres.password not in (local.dir / "remotes.json").read_text()
    push(local, "shared")
    private_postgres.ctl("restart")  # between two pushes: the catalog's connections are new ones
    local.add("t", make_table(3, start=900), mode="append")
    second = local.commit("after a restart")
    assert push(local, "shared").new == second
    private_postgres.ctl("stop")
    local.add("t", make_table(3, start=950), mode="append")
    third = local.commit("while the server is down")
    with pytest.raises(CatalogUnavailable, match="PGPASSWORD"):
        push(local, "shared")
    private_postgres.ctl("start")
    with open_url(url, catalog=private_postgres.url) as remote:
        assert remote.catalog.get_ref("main").commit == second  # type: ignore[union-attr]
        left = len(missing(local.store, remote.store, [third])[0])
    done = push(local, "shared")
    assert done.new == third and done.sent.objects == left
    shared = assay.init(tmp_path / "attached", store_url=url, catalog_url=private_postgres.url)
    assert shared.head() == third and _rows(shared) == 206 and shared.fsck().ok  # it is the shared repository
    copy = clone(url, tmp_path / "copy", catalog=private_postgres.url)
    assert copy.head() == third
    shared.close()
    copy.close()


def test_reading_many_objects_from_an_s3_store_takes_a_request_per_pack_span(local: assay.Repo, url: str) -> None:
    push(local, "origin")
    with open_url(url) as remote:
        oids = sorted(remote.store.iter_oids())
        store: Any = remote.store
        gets: list[str] = []
        store.backend.client.meta.events.register("before-send.s3.GetObject", lambda **kw: gets.append("get"))
        many = store.get_many(oids)
        assert many == [local.store.get(o) for o in oids] and len(oids) > 3
        assert len(gets) < len(oids) // 2  # packed objects come a span at a time, not one request each
        name, off, length = store._packs[oids[0]]
        key = f"{store.backend.prefix}packs/{name}.pack"
        client = store.backend.client
        body = bytearray(client.get_object(Bucket=store.backend.bucket, Key=key)["Body"].read())
        body[off + length - 1] ^= 1  # one byte of one object flipped on the server
        client.put_object(Bucket=store.backend.bucket, Key=key, Body=bytes(body))
        with pytest.raises(CorruptObject):
            store.get_many(oids)
