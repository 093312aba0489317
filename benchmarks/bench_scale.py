"""What bounds a shared repository (objects on S3, catalog on PostgreSQL), measured here for docs/scale.md.

1. The table steps of bench_table (first commit, append 1%, relabel 1%, diff, unchanged re-add) through the API,
   side by side in one run: a local repository, and one made with ``assay init --store s3://... --catalog
   postgresql://...`` (moto's S3 server in its own process on 127.0.0.1; the PostgreSQL server that .ci/run
   starts). Per step: seconds, the ratio to local (issue 11's goal: within 2x), the S3 requests the step made
   (counted on the client, by operation) and the catalog statements it ran.
2. Catalog writes per second on PostgreSQL: P processes, each committing (record_commit + a compare-and-swap of
   its branch) in a loop on a branch of its own, then P processes on one shared branch (each try that lost the
   race reads the tip again and retries, as commits do).
3. What a manifest costs: bytes per fragment and per row of the table of step 1, so that the manifest of a
   100 TB dataset can be worked out in the open.
4. Partial clones from S3: the local repository of step 1 (plus a small dataset) pushed to a bare S3 remote,
   then ``assay clone`` of it whole, ``--datasets small`` and ``--lazy`` (each a fresh process): seconds and
   bytes stored; then the first read of the big table in the lazy clone (``assay export``, fetched on demand).

moto is a Python test server: every request costs it milliseconds of CPU that a real S3 endpoint does not,
so the S3 seconds are an upper bound; the request counts are what carries over to AWS, MinIO or R2.

    python benchmarks/bench_scale.py [--quick] [--rows N] [--procs 1,2,4] [--seconds S] [--postgres URL]

``--postgres``: a server URL whose user may create databases (default: ``$ASSAY_TEST_POSTGRES``, else the role
that .ci/run creates); the benchmark makes a database of its own and drops it.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _common import assay_cli, dir_bytes, fmt_bytes, fmt_s, parser, print_table, ratio, run, scratch, setup, yes_no
from bench_table import STEPS, bench_api, make_inputs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.s3_server and tests.catalog_servers: the servers the tests use

import assay  # noqa: E402
from tests.catalog_servers import DEFAULT_SERVER, _admin_connect  # noqa: E402
from tests.s3_server import CREDENTIALS, MotoServer  # noqa: E402

GOAL_RATIO = 2.0
TIMED = STEPS[:5]  # first commit .. unchanged re-add: the issue-2 figures


class Counted:
    """S3 requests by operation and catalog statements, counted from hooks on the repository's clients."""

    def __init__(self) -> None:
        self.s3: collections.Counter[str] = collections.Counter()
        self.sql = 0

    def hook(self, repo: Any) -> None:
        client = repo.store.backend.client
        client.meta.events.register("before-call.s3", self._s3)
        import sqlalchemy as sa

        sa.event.listen(repo.catalog.engine, "before_cursor_execute", self._sql)

    def _s3(self, event_name: str, **_: Any) -> None:
        self.s3[event_name.rsplit(".", 1)[-1]] += 1

    def _sql(self, *_: Any) -> None:
        self.sql += 1

    def take(self) -> tuple[dict[str, int], int]:
        out = dict(self.s3), self.sql
        self.s3.clear()
        self.sql = 0
        return out


def table_steps(args: Any, root: Path, catalog: str, server: MotoServer) -> tuple[Any, Any, dict[str, Any]]:
    inp = make_inputs(root / "inputs", args.rows)
    local = bench_api(root / "local", inp, "local")
    bucket = server.make_bucket()
    counted = Counted()
    per_step: dict[str, Any] = {}
    original = assay.init

    def init_hooked(path: Any, **kw: Any) -> Any:  # count from the moment the repository is opened
        repo = original(path, **kw)
        counted.hook(repo)
        return repo

    import bench_table

    real_timed = getattr(bench_table, "timed")  # noqa: B009 (swapped below; not part of its exports)

    def timed_counted(label: str, fn: Any) -> Any:
        counted.take()
        out = real_timed(label, fn)
        step = label.removeprefix("assay ")
        per_step["diff relabel" if step == "diff" else step] = counted.take()
        return out

    bench_table.assay.init = init_hooked  # type: ignore[attr-defined]
    setattr(bench_table, "timed", timed_counted)  # noqa: B010
    try:
        shared = bench_api(
            root / "shared",
            inp,
            "S3 + PG",
            store_url=f"s3://{bucket}/repo",
            catalog_url=f"{catalog}?schema=bench_{uuid.uuid4().hex[:8]}",
        )
    finally:
        bench_table.assay.init = original  # type: ignore[attr-defined]
        setattr(bench_table, "timed", real_timed)  # noqa: B010
    with assay.Repo(root / "local") as repo:
        manifest = repo.dataset("table").manifest
    return local, shared, {"steps": per_step, "manifest": manifest}


def _committer(url: str, branch: str, seconds: float, out: Any) -> None:
    """Commit to ``branch`` of the catalog at ``url`` for ``seconds``: record a commit, move the branch by
    compare-and-swap from the tip it read; a lost race reads the tip again. Puts (commits, lost races)."""
    from assay.errors import ConflictError
    from assay.repo.catalog import RefUpdate, open_catalog

    catalog = open_catalog(url)
    done = lost = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        tip = catalog.get_ref(branch)
        oid = uuid.uuid4().hex + uuid.uuid4().hex
        catalog.record_commit(oid, time.time(), "bench", [tip.commit] if tip else [])
        try:
            catalog.update_refs([RefUpdate(branch, "branch", oid, tip.commit if tip else None)], "bench")
            done += 1
        except ConflictError:
            lost += 1
    catalog.close()
    out.put((done, lost))


def catalog_writes(url: str, procs: list[int], seconds: float) -> list[list[str]]:
    rows = []
    ctx = mp.get_context("spawn")
    for shared in (False, True):
        for p in procs:
            schema = f"{url}?schema=writes_{uuid.uuid4().hex[:8]}"
            from assay.repo.catalog import open_catalog

            open_catalog(schema).close()  # made (and migrated) once, before the writers start
            out = ctx.Queue()
            workers = [
                ctx.Process(target=_committer, args=(schema, "main" if shared else f"b{i}", seconds, out))
                for i in range(p)
            ]
            for w in workers:
                w.start()
            got = [out.get(timeout=seconds + 120) for _ in workers]
            for w in workers:
                w.join()
            done, lost = sum(g[0] for g in got), sum(g[1] for g in got)
            rows.append(
                [
                    "one shared branch" if shared else "a branch each",
                    str(p),
                    f"{done / seconds:,.0f}",
                    f"{done / seconds / p:,.0f}",
                    f"{lost:,}",
                ]
            )
    return rows


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the table of step 1")
    p.add_argument("--procs", default="1,2,4", help="writer processes for the catalog figures")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds each catalog run lasts")
    p.add_argument("--postgres", default=os.environ.get("ASSAY_TEST_POSTGRES", DEFAULT_SERVER))
    args = p.parse_args()
    if args.quick:
        args.rows //= 10
    setup(args, "bench_scale")
    os.environ.update(CREDENTIALS)
    admin = _admin_connect(args.postgres)
    db = f"assay_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{db}"')
    catalog = args.postgres.rsplit("/", 1)[0] + "/" + db
    from assay.repo.catalog import parse_catalog_url

    u = parse_catalog_url(catalog)  # the repository's config keeps no credentials: a user gives them so
    os.environ.update({"PGUSER": u.user or "", "PGPASSWORD": u.password or ""})
    server = MotoServer().start()
    os.environ["AWS_ENDPOINT_URL"] = server.url  # how a user points assay at an S3-compatible endpoint
    try:
        with scratch(args, "bench-scale-") as root:
            local, shared, extra = table_steps(args, root, catalog, server)
            partial = partial_clones(root, server.make_bucket())
        writes = catalog_writes(catalog, [int(x) for x in args.procs.split(",")], args.seconds)
    finally:
        server.stop()
        admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()

    rows = []
    for step in TIMED:
        a, b = local.seconds.get(step), shared.seconds.get(step)
        s3, sql = extra["steps"].get(step, ({}, 0))
        ops = ", ".join(f"{k} {v}" for k, v in sorted(s3.items(), key=lambda kv: -kv[1]))
        rows.append(
            [
                step,
                fmt_s(a),
                fmt_s(b),
                ratio(b, a),
                f"{sum(s3.values())}",
                ops or "-",
                str(sql),
                yes_no(None if a is None or b is None else b / a <= GOAL_RATIO),
            ]
        )
    print_table(
        f"Table steps, {args.rows:,} x 20: local vs S3 (moto) + PostgreSQL, API, one run",
        [
            "step",
            "local s",
            "S3+PG s",
            "S3+PG/local",
            "S3 requests",
            "by operation",
            "catalog statements",
            f"within {GOAL_RATIO:g}x?",
        ],
        rows,
    )
    print_table(
        f"Catalog commits per second on PostgreSQL ({args.seconds:g} s a run; a commit is record_commit "
        "+ a compare-and-swap of the branch)",
        ["writers on", "processes", "commits/s", "per process", "lost races (retried)"],
        writes,
    )
    m = extra["manifest"]
    size = len(m.to_bytes())
    rows_total = sum(f.rows for f in m.fragments)
    print_table(
        "Manifest of the table after step 1's relabel",
        ["fragments", "rows", "manifest bytes", "bytes / fragment", "bytes / million rows"],
        [
            [
                str(len(m.fragments)),
                f"{rows_total:,}",
                fmt_bytes(size),
                f"{size / len(m.fragments):,.0f}",
                f"{size / rows_total * 1e6:,.0f}",
            ]
        ],
    )
    print_table(
        "Partial clones of the repository of step 1 from a bare S3 remote (CLI, one run each)",
        ["clone", "seconds", "stored here", "of the whole clone"],
        [[k, fmt_s(sec), fmt_bytes(size), f"{size / partial['whole'][1]:.1%}"] for k, (sec, size) in partial.items()],
    )


def partial_clones(root: Path, bucket: str) -> dict[str, tuple[float, int]]:
    """Push the local repository of step 1 (plus a small dataset) to S3, then clone it whole and partially."""
    import pyarrow as pa

    exe = assay_cli()
    with assay.Repo(root / "local") as repo:
        repo.add("small", pa.table({"id": list(range(10_000)), "y": [i % 7 for i in range(10_000)]}), key="id")
        repo.commit("a small dataset")
    url = f"s3://{bucket}/partial"
    run([exe, "remote", "add", "s3", url], root / "local")
    run([exe, "push", "s3", "main"], root / "local")
    out: dict[str, tuple[float, int]] = {}
    for label, extra in (("whole", []), ("--datasets small", ["--datasets", "small"]), ("--lazy", ["--lazy"])):
        folder = root / f"clone-{len(out)}"
        seconds = run([exe, "clone", url, str(folder), *extra], root)
        out[label] = (seconds, dir_bytes(folder / ".assay"))
    lazy = root / f"clone-{len(out) - 1}"
    seconds = run([exe, "export", "table", "--to", str(root / "table.parquet")], lazy)
    out["--lazy, then export table"] = (seconds, dir_bytes(lazy / ".assay"))
    return out


if __name__ == "__main__":
    main()
