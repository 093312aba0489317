"""Push and clone through a remote: a folder of files (default 20,000 x 20 KiB), assay beside DVC.

Both tools push to a remote on this machine's disk (assay: a repository folder; DVC: a local remote, the
folder kind of `dvc remote add`), so the figures measure the tools, not a network. Steps, each a fresh
process at the command line:

1. first push of the folder, 2. a push with nothing new, 3. a push after 1% of the files changed (and how
many bytes it moved), 4. a clone into an empty folder (assay: `assay clone`; DVC: `git clone` + `dvc pull`).

The S3 figures of the scale issue need the S3 remote; this script is the folder half.

    python benchmarks/bench_remote.py [--quick] [--files N] [--dvc PATH] [--workdir DIR] [--keep]

The DVC peer lives in its own virtual environment:
    python3 -m venv /work/peer-dvc-venv && /work/peer-dvc-venv/bin/pip install 'dvc==3.67.*'
"""

from __future__ import annotations

import os
import time
from pathlib import Path

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

STEPS = ("first push", "push, nothing new", "push after 1% changed", "clone")
PEER = "/work/peer-dvc-venv/bin/dvc"


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    add_dvc_option(p)
    p.add_argument("--files", type=int, default=20_000, help="files in the folder (the issue's figure: 50,000)")
    args = p.parse_args()
    setup(args, "bench_remote")
    from _common import find_dvc

    dvc_exe = find_dvc(args.dvc or (PEER if Path(PEER).exists() else None))
    n = args.files // 10 if args.quick else args.files
    assay_s: dict[str, float] = {}
    dvc_s: dict[str, float] = {}
    moved: dict[str, int] = {}
    with scratch(args, "bench-remote-") as root:
        here = os.getcwd()
        os.chdir(root)
        try:
            exe = assay_cli()
            data = root / "data" / "images"
            paths = make_folder(data, n)
            print(f"data: {n:,} files x {FILE_BYTES // 1024} KiB = {fmt_bytes(n * FILE_BYTES)}")
            local, remote = root / "assay-local", root / "assay-remote"
            for folder in (local, remote):
                run([exe, "init", str(folder)], root)
            run([exe, "-C", str(local), "add", "images", str(data)], root)
            run([exe, "-C", str(local), "commit", "-m", "first"], root)
            run([exe, "-C", str(local), "remote", "add", "origin", str(remote)], root)
            d = dvc_remote = None
            if dvc_exe:
                d = Dvc(dvc_exe, root / "dvc-ws")
                os.rename(root / "data", root / "dvc-ws" / "data")
                data = root / "dvc-ws" / "data" / "images"
                paths = [data / p.relative_to(root / "data" / "images") for p in paths]
                dvc_remote = root / "dvc-remote"
                d.dvc("add", "data/images")
                d.dvc("remote", "add", "-d", "origin", str(dvc_remote))
                d.git_commit("data", "data/images.dvc", "data/.gitignore", ".dvc/config")

            def sync() -> None:
                os.sync()

            sync()
            assay_s[STEPS[0]] = run([exe, "-C", str(local), "push", "origin", "main"], root)
            moved[STEPS[0]] = dir_bytes(remote / ".assay")
            if d:
                sync()
                dvc_s[STEPS[0]] = d.dvc("push")
            sync()
            assay_s[STEPS[1]] = run([exe, "-C", str(local), "push", "origin", "main"], root)
            if d:
                dvc_s[STEPS[1]] = d.dvc("push")
            changed = change_files(paths, max(1, n // 100))
            run([exe, "-C", str(local), "add", "images", str(data)], root)
            run([exe, "-C", str(local), "commit", "-m", "1% changed"], root)
            if d:
                d.dvc("add", "data/images")
                d.git_commit("changed", "data/images.dvc")
            before = dir_bytes(remote / ".assay")
            sync()
            assay_s[STEPS[2]] = run([exe, "-C", str(local), "push", "origin", "main"], root)
            moved[STEPS[2]] = dir_bytes(remote / ".assay") - before
            if d and dvc_remote:
                before_dvc = dir_bytes(dvc_remote)
                dvc_s[STEPS[2]] = d.dvc("push")
                moved["dvc " + STEPS[2]] = dir_bytes(dvc_remote) - before_dvc
            sync()
            assay_s[STEPS[3]] = run([exe, "clone", str(remote), str(root / "assay-clone")], root)
            if d:
                start = time.perf_counter()
                run(["git", "clone", "-q", str(d.folder), str(root / "dvc-clone")], root, d.env)
                run([d.exe, "pull", "-q"], root / "dvc-clone", d.env)
                dvc_s[STEPS[3]] = time.perf_counter() - start
            run([exe, "-C", str(root / "assay-clone"), "fsck"], root)
        finally:
            os.chdir(here)
    goals = {STEPS[0]: ">= 5x faster than DVC", STEPS[1]: "<= 0.5 s", STEPS[2]: "moves about the changed bytes",
             STEPS[3]: ">= 5x faster than DVC (git clone + dvc pull)"}
    rows = []
    for step in STEPS:
        a, v = assay_s[step], dvc_s.get(step)
        if step == STEPS[1]:
            met: bool | None = a <= 0.5
        elif step == STEPS[2]:
            met = moved[step] <= changed * 1.2 + (1 << 20)
        else:
            met = None if v is None else v / a >= 5
        note = f"moved {fmt_bytes(moved[step])}" if step in moved else ""
        if step == STEPS[2]:
            note += f" (changed {fmt_bytes(changed)}; DVC {fmt_bytes(moved.get('dvc ' + step, 0))})"
        rows.append([step, fmt_s(a), fmt_s(v), ratio(v, a), note, goals[step], yes_no(met)])
    print_table(f"Summary ({n:,} files; remotes on this machine's disk; every step a fresh process)",
                ["step", "assay s", "DVC s", "DVC/assay", "notes", "goal", "met?"], rows)


if __name__ == "__main__":
    main()
