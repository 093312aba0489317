"""Push and clone through a remote: a folder of files (default 20,000 x 20 KiB) or a table, assay beside DVC.

``--remote folder`` (default): both tools push to a remote on this machine's disk (assay: a repository folder;
DVC: a local remote, the folder kind of `dvc remote add`). ``--remote s3``: both push to the same S3 server,
moto's standalone server started by this script on 127.0.0.1 in its own process (assay: `assay remote add
origin s3://BUCKET/assay --endpoint-url URL`; DVC: `dvc remote add origin s3://BUCKET/dvc` with its
endpointurl; DVC needs `pip install 'dvc[s3]'` in its venv). Steps, each a fresh process at the command line:

1. first push of the folder, 2. a push with nothing new, 3. a push after 1% of the files changed (and how
many bytes it moved), 4. a clone into an empty folder (assay: `assay clone`; DVC: `git clone` + `dvc pull`).
``--repeat N`` runs the whole sequence N times (fresh remotes each time) and prints the medians; the push with
nothing new is timed ``--again`` times in each run.

``--data table``: the same steps on bench_table's table (``--rows``, default 1,000,000 x 20, one Parquet file of
147 MB) instead of the folder; the change of step 3 is that file rewritten with 1% of rows appended and the
labels of 1% relabelled (what a user hands both tools: the whole new file, added again). The issue's goal for
the table: push and clone >= 3x faster than DVC.

    python benchmarks/bench_remote.py [--quick] [--data folder|table] [--files N] [--rows N] [--remote folder|s3]
                                      [--repeat N] [--dvc PATH]

The DVC peer lives in its own virtual environment:
    python3 -m venv /work/peer-dvc-venv && /work/peer-dvc-venv/bin/pip install 'dvc==3.67.*'
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _common import (
    Dvc,
    add_dvc_option,
    assay_cli,
    dir_bytes,
    fmt_bytes,
    fmt_s,
    parser,
    print_table,
    ratio,
    run,
    scratch,
    setup,
    yes_no,
)
from bench_folder import FILE_BYTES, change_files, make_folder
from bench_table import make_inputs

STEPS = ("first push", "push, nothing new", "push after 1% changed", "clone")
PEER = "/work/peer-dvc-venv/bin/dvc"


class Side:
    """Where one tool's remote is: its URL for the tool, the environment, and how many bytes it holds."""

    def __init__(self, kind: str, root: Path, server: Any, bucket: str, name: str):
        self.kind, self.server, self.bucket = kind, server, bucket
        self.prefix = f"{name}-{uuid.uuid4().hex[:8]}"
        self.folder = root / f"{name}-remote"
        self.url = f"s3://{bucket}/{self.prefix}" if kind == "s3" else str(self.folder)

    def bytes(self) -> int:
        if self.kind != "s3":
            return dir_bytes(self.folder)
        total, token = 0, {}
        client = self.server.client()
        while True:
            r = client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix + "/", **token)
            total += sum(int(o["Size"]) for o in r.get("Contents") or [])
            if not r.get("IsTruncated"):
                return total
            token = {"ContinuationToken": r["NextContinuationToken"]}


def one_run(args: Any, root: Path, n: int, exe: str, dvc_exe: str | None, server: Any, bucket: str,
            env: dict[str, str]) -> tuple[dict[str, float], dict[str, float], dict[str, int], int]:
    assay_s: dict[str, float] = {}
    dvc_s: dict[str, float] = {}
    moved: dict[str, int] = {}
    table = args.data == "table"
    name = "table.parquet" if table else "images"  # in data/: what both tools add
    data = root / "data" / name
    if table:
        inputs = make_inputs(root / "inputs", args.rows // 10 if args.quick else args.rows)
        data.parent.mkdir()
        shutil.copyfile(inputs.v1, data)
        paths: list[Path] = []
    else:
        paths = make_folder(data, n)
    dataset, key = ("table", ["--key", "id"]) if table else ("images", [])
    local = root / "assay-local"
    side = Side(args.remote, root, server, bucket, "assay")
    extra = ["--endpoint-url", server.url] if server else []
    run([exe, "init", str(local)], root, env)
    if args.remote == "folder":
        run([exe, "init", str(side.folder)], root, env)
    run([exe, "-C", str(local), "add", dataset, str(data), *key], root, env)
    run([exe, "-C", str(local), "commit", "-m", "first"], root, env)
    run([exe, "-C", str(local), "remote", "add", "origin", side.url, *extra], root, env)
    d = dvc_side = None
    if dvc_exe:
        d = Dvc(dvc_exe, root / "dvc-ws")
        d.env.update(env)
        os.rename(root / "data", root / "dvc-ws" / "data")
        data = root / "dvc-ws" / "data" / name
        paths = [data / p.relative_to(root / "data" / name) for p in paths]
        dvc_side = Side(args.remote, root, server, bucket, "dvc")
        d.dvc("add", f"data/{name}")
        d.dvc("remote", "add", "-d", "origin", dvc_side.url)
        if server:
            d.dvc("remote", "modify", "origin", "endpointurl", server.url)
        d.git_commit("data", f"data/{name}.dvc", "data/.gitignore", ".dvc/config")
    push = [exe, "-C", str(local), "push", "origin", "main"]
    os.sync()
    assay_s[STEPS[0]] = run(push, root, env)
    moved[STEPS[0]] = side.bytes()
    if d:
        os.sync()
        dvc_s[STEPS[0]] = d.dvc("push")
    os.sync()
    assay_s[STEPS[1]] = statistics.median(run(push, root, env) for _ in range(args.again))
    if d:
        dvc_s[STEPS[1]] = statistics.median(d.dvc("push") for _ in range(args.again))
    if table:  # the file rewritten: 1% appended, 1% relabelled; the rows that changed, as Parquet
        shutil.copyfile(inputs.v3, data)
        changed = inputs.new_rows.stat().st_size + inputs.relabelled.stat().st_size
    else:
        changed = change_files(paths, max(1, n // 100))
    run([exe, "-C", str(local), "add", dataset, str(data), *key], root, env)
    run([exe, "-C", str(local), "commit", "-m", "1% changed"], root, env)
    if d:
        d.dvc("add", f"data/{name}")
        d.git_commit("changed", f"data/{name}.dvc")
    before = side.bytes()
    os.sync()
    assay_s[STEPS[2]] = run(push, root, env)
    moved[STEPS[2]] = side.bytes() - before
    if d and dvc_side:
        before_dvc = dvc_side.bytes()
        dvc_s[STEPS[2]] = d.dvc("push")
        moved["dvc " + STEPS[2]] = dvc_side.bytes() - before_dvc
    os.sync()
    assay_s[STEPS[3]] = run([exe, "clone", side.url, str(root / "assay-clone"), *extra], root, env)
    if d:
        start = time.perf_counter()
        run(["git", "clone", "-q", str(d.folder), str(root / "dvc-clone")], root, d.env)
        run([d.exe, "pull", "-q"], root / "dvc-clone", d.env)
        dvc_s[STEPS[3]] = time.perf_counter() - start
    run([exe, "-C", str(root / "assay-clone"), "fsck"], root, env)
    return assay_s, dvc_s, moved, changed


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    add_dvc_option(p)
    p.add_argument("--files", type=int, default=20_000, help="files in the folder (the issue's figure: 50,000)")
    p.add_argument("--remote", choices=("folder", "s3"), default="folder", help="the kind of remote (see above)")
    p.add_argument("--data", choices=("folder", "table"), default="folder", help="what is pushed (see above)")
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the table (--data table)")
    p.add_argument("--repeat", type=int, default=1, help="whole runs to take medians over")
    p.add_argument("--again", type=int, default=5, help="pushes with nothing new per run (their median)")
    args = p.parse_args()
    setup(args, "bench_remote")
    from _common import find_dvc

    dvc_exe = find_dvc(args.dvc or (PEER if Path(PEER).exists() else None))
    n = args.files // 10 if args.quick else args.files
    server, bucket, env = None, "", dict(os.environ)
    if args.remote == "s3":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.s3_server import CREDENTIALS, MotoServer

        server = MotoServer().start()
        bucket = server.make_bucket()
        env.update(CREDENTIALS)
        print(f"S3: moto's server {server.url} (its own process), bucket {bucket}")
    runs = []
    try:
        for i in range(args.repeat):
            with scratch(args, "bench-remote-") as root:
                print(f"run {i + 1}/{args.repeat}: " + ("the table" if args.data == "table" else
                      f"{n:,} files x {FILE_BYTES // 1024} KiB = {fmt_bytes(n * FILE_BYTES)}"))
                runs.append(one_run(args, root, n, assay_cli(), dvc_exe, server, bucket, env))
    finally:
        if server:
            server.stop()
    report(args, n, runs)


def report(args: Any, n: int, runs: list[Any]) -> None:
    def med(i: int, key: str) -> float | None:
        values = [r[i][key] for r in runs if key in r[i]]
        return statistics.median(values) if values else None

    changed = runs[0][3]
    x = 3 if args.data == "table" else 5
    goals = {STEPS[0]: f">= {x}x faster than DVC", STEPS[1]: "<= 0.5 s", STEPS[2]: "moves about the changed bytes",
             STEPS[3]: f">= {x}x faster than DVC (git clone + dvc pull)"}
    rows = []
    for step in STEPS:
        a, v = med(0, step), med(1, step)
        assert a is not None
        moved = med(2, step)
        if step == STEPS[1]:
            met: bool | None = a <= 0.5
        elif step == STEPS[2]:
            met = moved is not None and moved <= changed * 1.2 + (1 << 20)
        else:
            met = None if v is None else v / a >= x
        note = f"moved {fmt_bytes(moved)}" if moved is not None else ""
        if step == STEPS[2]:
            note += f" (changed {fmt_bytes(changed)}; DVC {fmt_bytes(med(2, 'dvc ' + step) or 0)})"
        rows.append([step, fmt_s(a), fmt_s(v), ratio(v, a), note, goals[step], yes_no(met)])
    where = "the same local S3 server (moto)" if args.remote == "s3" else "this machine's disk"
    what = f"the table, {args.rows // 10 if args.quick else args.rows:,} rows" if args.data == "table" \
        else f"{n:,} files"
    print_table(f"Summary ({what}; remotes on {where}; medians of {len(runs)} run(s); every step a fresh "
                "process)", ["step", "assay s", "DVC s", "DVC/assay", "notes", "goal", "met?"], rows)


if __name__ == "__main__":
    main()
