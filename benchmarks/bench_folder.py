"""A folder of 50,000 files of 20 KiB random bytes (1 GB) in 100 label sub-folders: first add + commit,
unchanged re-add, 1% of the files rewritten, and the floor (read + BLAKE3 of every byte, one process).

Before every timed step of every tool the whole folder is read once, so that each tool starts with the
same (warm) page cache. DVC's ``git add/commit`` of the .dvc file is timed apart and not included.

    python benchmarks/bench_folder.py [--quick] [--dvc PATH] [--workdir DIR] [--keep] [--profile]
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
from _common import (
    Dvc,
    add_dvc_option,
    assay_cli,
    find_dvc,
    fmt_bytes,
    fmt_s,
    parser,
    print_table,
    ratio,
    read_all,
    run,
    scratch,
    setup,
    timed,
    yes_no,
)
from blake3 import blake3

import assay

NAME = "files"
FILE_BYTES = 20 * 1024
LABELS = 100
STEPS = ("first add+commit", "unchanged re-add", "1% changed add+commit")


@dataclass
class Side:
    seconds: dict[str, float] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    git: dict[str, float] = field(default_factory=dict)

    def growth(self, step: str) -> int | None:
        i = STEPS.index(step)
        return None if i == 0 or step not in self.stored else self.stored[step] - self.stored[STEPS[i - 1]]


def make_folder(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        sub = folder / f"class_{i % LABELS:02d}"
        if i < LABELS:
            sub.mkdir(parents=True)
        p = sub / f"{i:06d}.bin"
        p.write_bytes(rng.bytes(FILE_BYTES))
        paths.append(p)
    return paths


def change_files(paths: list[Path], count: int) -> int:
    rng = np.random.default_rng(11)
    for i in sorted(rng.choice(len(paths), count, replace=False).tolist()):
        paths[i].write_bytes(rng.bytes(FILE_BYTES))
    return count * FILE_BYTES


def floor(folder: Path) -> float:
    start = time.perf_counter()
    for dirpath, _, files in os.walk(folder):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                blake3(fh.read()).digest()
    return time.perf_counter() - start


def warm(folder: Path) -> None:
    """Same start for every tool and step: the folder in the page cache, earlier writes on disk."""
    read_all(folder)
    os.sync()


def _stored(folder: Path) -> int:
    with assay.Repo(folder) as r:
        return r.store.stored_bytes()


def _staged(folder: Path) -> bool:
    with assay.Repo(folder) as r:
        return bool(r.status().staged)


def api_first(repo: assay.Repo, data: Path, s: Side, step: str) -> None:
    warm(data)
    io = psutil.Process().io_counters()

    def go() -> None:
        repo.add(NAME, data)
        repo.commit(step)
    s.seconds[step], _ = timed(f"assay {step}", go)
    read = psutil.Process().io_counters().read_chars - io.read_chars
    s.stored[step] = repo.store.stored_bytes()
    s.notes[step] = f"read {fmt_bytes(read)}"
    print(f"  assay API  {step:24} {s.seconds[step]:8.3f} s  stored {fmt_bytes(s.stored[step]):>9}  "
          f"{s.notes[step]}")


def api_readd(repo: assay.Repo, data: Path, s: Side, step: str) -> None:
    warm(data)
    io = psutil.Process().io_counters()

    def go() -> bool:
        repo.add(NAME, data)
        staged = bool(repo.status().staged)
        if staged:
            repo.commit(step)
        return staged
    s.seconds[step], staged = timed(f"assay {step}", go)
    read = psutil.Process().io_counters().read_chars - io.read_chars
    s.stored[step] = repo.store.stored_bytes()
    s.notes[step] = f"read {fmt_bytes(read)}; {'staged+committed' if staged else 'nothing staged'}"
    print(f"  assay API  {step:24} {s.seconds[step]:8.3f} s  stored {fmt_bytes(s.stored[step]):>9}  "
          f"(+{fmt_bytes(s.growth(step) or 0)}) {s.notes[step]}")


def cli_step(exe: str, repo: Path, data: Path, s: Side, step: str) -> None:
    warm(data)
    t = run([exe, "-C", str(repo), "add", NAME, str(data)], repo)
    staged = _staged(repo)
    s.seconds[step] = t + (run([exe, "-C", str(repo), "commit", "-m", step], repo) if staged else 0.0)
    s.stored[step] = _stored(repo)
    s.notes[step] = "staged+committed" if staged else "nothing staged"
    print(f"  assay CLI  {step:24} {s.seconds[step]:8.3f} s  stored {fmt_bytes(s.stored[step]):>9}  "
          f"(+{fmt_bytes(s.growth(step) or 0)}) {s.notes[step]}")


def dvc_step(d: Dvc, data: Path, s: Side, step: str) -> None:
    warm(data)
    s.seconds[step] = d.dvc("add", data.name)
    s.git[step] = d.git_commit(step, f"{data.name}.dvc", ".gitignore")
    s.stored[step] = d.cache_bytes()
    print(f"  DVC        {step:24} {s.seconds[step]:8.3f} s  cache  {fmt_bytes(s.stored[step]):>9}  "
          f"(+{fmt_bytes(s.growth(step) or 0)}) (+ git add/commit {s.git[step]:.3f} s, not included)")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    add_dvc_option(p)
    args = p.parse_args()
    setup(args, "bench_folder")
    dvc_exe = find_dvc(args.dvc)
    n = 5_000 if args.quick else 50_000
    changed_n = n // 100
    with scratch(args, "bench-folder-") as root:
        here = os.getcwd()
        os.chdir(root)  # assay records the git commit of the working folder; this one is not in git
        try:
            ws = root / "ws"
            data = ws / "images"
            start = time.perf_counter()
            paths = make_folder(data, n)
            total = n * FILE_BYTES
            print(f"data: {n:,} files x {FILE_BYTES // 1024} KiB = {fmt_bytes(total)} in {LABELS} sub-folders "
                  f"(generated in {time.perf_counter() - start:.1f} s)")
            d = Dvc(dvc_exe, ws) if dvc_exe else None
            warm(data)
            floor_s = min(floor(data) for _ in range(2))
            print(f"  floor      read + BLAKE3 of every file, one thread: {floor_s:.3f} s "
                  f"({total / floor_s / 1e9:.2f} GB/s; best of 2, warm page cache)")
            api, cli, dv = Side(), Side(), Side()
            exe = assay_cli()
            repo = assay.init(root / "assay-api")
            (root / "assay-cli").mkdir()
            run([exe, "init", str(root / "assay-cli")], root)
            for step in STEPS:
                if step == STEPS[2]:
                    changed = change_files(paths, changed_n)
                    print(f"  -- rewrote {changed_n:,} files ({fmt_bytes(changed)}) with new random bytes")
                if step == STEPS[0]:
                    api_first(repo, data, api, step)
                else:
                    api_readd(repo, data, api, step)
                cli_step(exe, root / "assay-cli", data, cli, step)
                if d:
                    dvc_step(d, data, dv, step)
            repo.close()
        finally:
            os.chdir(here)
    rows = []
    # step -> (goal text, API ratio goal, CLI ratio goal); the CLI goals are issue 13's (two processes for add+commit)
    goals = {STEPS[0]: ("API and CLI >= 4x faster than DVC", 4.0, 4.0),
             STEPS[1]: ("API >= 10x, CLI >= 8x faster than DVC; nothing staged", 10.0, 8.0),
             STEPS[2]: (f"stores only the changed files (~{fmt_bytes(changed)})", None, None)}
    for step in STEPS:
        a, c, v = api.seconds[step], cli.seconds[step], dv.seconds.get(step)
        g = api.growth(step)
        text, api_x, cli_x = goals[step]
        met_api: bool | None
        met_cli: bool | None
        if step == STEPS[2]:
            met_api = g is not None and changed <= g <= changed * 1.05 + (1 << 20)
            cg = cli.growth(step)
            met_cli = cg is not None and changed <= cg <= changed * 1.05 + (1 << 20)
            growth = f"+{fmt_bytes(g or 0)} ({fmt_bytes((g or 0) - changed)} beyond the files)"
        else:
            met_api = _faster(v, a, api_x, step != STEPS[1] or "nothing staged" in api.notes[step])
            met_cli = _faster(v, c, cli_x, step != STEPS[1] or "nothing staged" in cli.notes[step])
            growth = f"stored {fmt_bytes(api.stored[step])}" if step == STEPS[0] else f"+{fmt_bytes(g or 0)}"
        dgrowth = "-" if v is None else (f"stored {fmt_bytes(dv.stored[step])}" if step == STEPS[0]
                                         else f"+{fmt_bytes(dv.growth(step) or 0)}")
        rows.append([step, fmt_s(a), fmt_s(c), fmt_s(v), fmt_s(dv.git.get(step)), ratio(v, a), ratio(v, c),
                     growth, dgrowth, api.notes[step], text, yes_no(met_api), yes_no(met_cli)])
    rows.append(["floor: read+BLAKE3", fmt_s(floor_s), "-", "-", "-", "-", "-", "-", "-",
                 f"{total / floor_s / 1e9:.2f} GB/s", "-", "-", "-"])
    print_table(f"Summary ({n:,} files, {fmt_bytes(total)}; folder read and earlier writes synced before each "
                "timed step; every goal is checked on the in-process API time and on the command line's (one "
                "process per command); DVC s = `dvc add` only, git add/commit shown apart)",
                ["step", "assay API s", "assay CLI s", "DVC s", "DVC git s", "DVC/API", "DVC/CLI",
                 "assay growth", "DVC growth", "assay notes", "goal", "met? API", "met? CLI"], rows)


def _faster(peer: float | None, ours: float, times: float | None, ok: bool) -> bool | None:
    """Whether ``ours`` is at least ``times`` faster than the peer (None without a peer); False unless ``ok``."""
    if not ok:
        return False
    return None if peer is None or times is None else peer / ours >= times

if __name__ == "__main__":
    main()
