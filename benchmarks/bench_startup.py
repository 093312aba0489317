"""Start-up of the command line: `assay --help`, `--version`, `status`, `log` in a repository with one commit,
beside `dvc --version` and `dvc status` in a DVC repository holding the same table (median of 10 runs each).

Timed with hyperfine (Debian: `apt-get install -y hyperfine`); without it, with a timing loop here (it says so).
The DVC peer is looked for on PATH, then in its own venv, made with
`python3 -m venv /work/peer-dvc-venv && /work/peer-dvc-venv/bin/pip install 'dvc==3.67.*'`.

    python benchmarks/bench_startup.py [--runs N] [--dvc PATH] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
from _common import Dvc, add_dvc_option, assay_cli, find_dvc, fmt_s, make_rows, parser, print_table, run, scratch
from _common import setup as print_setup

GOALS = {"assay --help": 0.2, "assay status": 0.2}  # issue 13: median of 10, in a repository


Timing = dict[str, tuple[float, float]]  # command -> (median wall seconds, mean CPU seconds: user + system)


def hyperfine(commands: dict[str, list[str]], cwd: Path, runs: int, env: dict[str, str] | None) -> Timing:
    """Median wall and mean CPU seconds of each command, measured by hyperfine (3 warm-up runs, then ``runs``)."""
    out = cwd.parent / f"hyperfine-{cwd.name}.json"
    names = list(commands)
    cmd = ["hyperfine", "--warmup", "3", "--runs", str(runs), "--style", "none", "--export-json", str(out),
           "--shell", "none"]
    for name in names:
        cmd += ["--command-name", name, shlex.join(commands[name])]
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    results = json.loads(out.read_text())["results"]
    return {name: (float(r["median"]), float(r["user"]) + float(r["system"]))
            for name, r in zip(names, results, strict=True)}


def loop(commands: dict[str, list[str]], cwd: Path, runs: int, env: dict[str, str] | None) -> Timing:
    """The same without hyperfine: 3 warm-up runs, then ``runs`` timed in this process (CPU from getrusage)."""
    medians = {}
    for name, argv in commands.items():
        for _ in range(3):
            run(argv, cwd, env)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = statistics.median(run(argv, cwd, env) for _ in range(runs))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / runs
        medians[name] = (wall, cpu)
    return medians


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    add_dvc_option(p)
    p.add_argument("--runs", type=int, default=10, help="timed runs per command (default 10); the median is shown")
    args = p.parse_args()
    print_setup(args, "bench_startup")
    timer = hyperfine if shutil.which("hyperfine") else loop
    print("timer: " + ("hyperfine" if timer is hyperfine else
                       "NO hyperfine on PATH (apt-get install -y hyperfine): a timing loop in Python instead, "
                       "which adds its own subprocess overhead"))
    dvc = find_dvc(args.dvc)
    exe = assay_cli()
    rows = make_rows(1, 0, 10_000 if args.quick else 100_000)
    with scratch(args, "bench-startup-") as root:
        here = os.getcwd()
        os.chdir(root)  # assay records the git commit of the working folder; this one is not in git
        try:
            pq.write_table(rows, root / "data.parquet")
            repo = root / "assay"
            run([exe, "init", str(repo)], root)
            run([exe, "-C", str(repo), "add", "table", str(root / "data.parquet"), "--key", "id"], root)
            run([exe, "-C", str(repo), "commit", "-m", "first"], root)
            commands = {f"assay {' '.join(a)}": [exe, *a] for a in (["--help"], ["--version"], ["status"],
                                                                               ["log"])}
            start = time.perf_counter()
            medians = timer(commands, repo, args.runs, None)
            peer: Timing = {}
            if dvc:
                d = Dvc(dvc, root / "dvc")
                shutil.copyfile(root / "data.parquet", d.folder / "data.parquet")
                d.dvc("add", "data.parquet")
                d.git_commit("first", "data.parquet.dvc", ".gitignore")
                peer = timer({"dvc --version": [dvc, "--version"], "dvc status": [dvc, "status"]}, d.folder,
                             args.runs, d.env)
            print(f"timed in {time.perf_counter() - start:.1f} s")
        finally:
            os.chdir(here)
    pairs = {"assay --help": None, "assay --version": "dvc --version", "assay status": "dvc status",
             "assay log": None}
    table = []
    for name, (seconds, cpu) in medians.items():
        other = pairs[name]
        theirs, their_cpu = peer.get(other, (None, None)) if other else (None, None)
        goal = GOALS.get(name)
        table.append([name, fmt_s(seconds), fmt_s(cpu), other or "-", fmt_s(theirs), fmt_s(their_cpu),
                      f"{theirs / seconds:.1f}x" if theirs else "-", f"<= {goal} s" if goal else "-",
                      "-" if goal is None else ("yes" if seconds <= goal else "NO")])
    print_table(f"Summary (median of {args.runs} runs each, after 3 warm-up runs; "
                f"{'hyperfine' if timer is hyperfine else 'Python timing loop'}; load average "
                f"{os.getloadavg()[0]:.2f})",
                ["command", "assay s", "assay CPU s", "peer", "DVC s", "DVC CPU s", "DVC/assay", "goal (wall)", "met?"],
                table)
    print("CPU s (user + system, mean) is what the command costs; on a loaded machine the wall time also holds the "
          "waits for a core.")


if __name__ == "__main__":
    main()
