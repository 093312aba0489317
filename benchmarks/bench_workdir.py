"""Working folders: `assay status` over a folder dataset's working folder (clean: stat only; 1% of the files
rewritten: only those hashed), and `assay restore` of an older version (only the files that differ written)
against exporting the whole version into a new folder (every file written).

    python benchmarks/bench_workdir.py [--quick] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from _common import fmt_s, parser, ratio, scratch, setup, timed

import assay
from assay.repo import workdir

FILE_BYTES = 20 * 1024


def make_folder(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(3)
    paths = []
    for i in range(n):
        p = folder / f"label{i % 50}" / f"{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.bytes(FILE_BYTES))
        paths.append(p)
    return paths


def main() -> None:
    p = parser(__doc__ or "")
    args = p.parse_args()
    setup(args, "working folders: status and restore")
    n = 2_000 if args.quick else 20_000
    os.environ.setdefault("ASSAY_AUTHOR", "bench <bench@example.com>")
    with scratch(args, "bench-workdir-") as base:
        folder = base / "files"
        paths = make_folder(folder, n)
        repo = assay.init(base / "repo")
        repo.add("files", folder)
        repo.commit("v1")
        repo.tag("v1")
        rng = np.random.default_rng(4)
        changed = [paths[i] for i in rng.choice(n, n // 100, replace=False)]
        for path in changed:
            path.write_bytes(rng.bytes(FILE_BYTES))
        repo.add("files", folder)
        repo.commit("v2")
        clean_s, (clean,) = timed("status clean", lambda: workdir.folder_changes(repo))
        for path in changed:
            path.write_bytes(rng.bytes(FILE_BYTES))
        dirty_s, (dirty,) = timed("status 1% changed", lambda: workdir.folder_changes(repo))
        repo.add("files", folder)
        repo.commit("v3")
        restore_s, done = timed("restore v1", lambda: workdir.restore(repo, "files@v1"))
        export_s, _ = timed("export v1", lambda: repo.export("files@v1", base / "export"))
        assert clean.clean and len(dirty.modified) == len(changed) and len(done.written) == len(changed)
        print(f"{n} files of {FILE_BYTES // 1024} KiB, {len(changed)} changed")
        print(f"status, clean folder:       {fmt_s(clean_s)}")
        print(f"status, 1% files rewritten: {fmt_s(dirty_s)}")
        print(f"restore v1 (1% written):    {fmt_s(restore_s)}")
        print(f"export v1 (all written):    {fmt_s(export_s)}   restore is {ratio(export_s, restore_s)} faster")
        repo.close()


if __name__ == "__main__":
    main()
