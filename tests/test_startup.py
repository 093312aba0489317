"""Start-up costs only what the command uses: the commands that read refs and the staging area (and --help,
--version) import none of the heavy libraries. Each runs in a fresh interpreter, which then lists what it loaded."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import assay
from tests.conftest import make_table

HEAVY = ("pyarrow", "duckdb", "numpy", "numpy.ma", "scipy", "sklearn", "pandas", "polars", "torch")
# Runs the command line as `assay ARGS...` does, then prints the heavy modules it imported as a JSON line on stderr.
PROBE = f"HEAVY = {HEAVY!r}\n" + """
import json, runpy, sys
sys.argv = ["assay", *sys.argv[1:]]
try:
    runpy.run_module("assay.cli", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
blas = None
if "numpy" in sys.modules:  # the threads numpy's OpenBLAS was loaded with
    from threadpoolctl import threadpool_info
    blas = [p["num_threads"] for p in threadpool_info() if p["internal_api"] == "openblas"]
print(json.dumps({"code": code, "heavy": sorted(m for m in HEAVY if m in sys.modules), "blas": blas}), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def one_commit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("startup")
    with assay.init(root) as repo:
        repo.add("train", make_table(20), key="id")
        repo.commit("first")
        repo.tag("v1")
    return root


def _run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> tuple[str, dict[str, object]]:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                       env=env)
    report = json.loads(r.stderr.strip().splitlines()[-1])
    return r.stdout, report


@pytest.mark.parametrize(("args", "shows"), [
    (["--help"], "Usage: assay"),
    (["--version"], f"assay {version('assay')}"),
    (["status"], "On branch main"),
    (["log"], "first"),
    (["branch"], "* main"),
    (["tag"], "v1"),
])
def test_light_commands_import_no_heavy_library(one_commit: Path, args: list[str], shows: str) -> None:
    stdout, report = _run(one_commit, *args)
    assert report["code"] == 0 and shows in stdout, (stdout, report)
    assert report["heavy"] == [], f"`assay {' '.join(args)}` imported {report['heavy']}"


@pytest.fixture(scope="module")
def one_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("startup-model")
    table = make_table(40)
    with assay.init(root) as repo:
        repo.add("train", table, key="id")
        repo.commit("first")
        x = table.select(["x"]).to_pandas().to_numpy()
        repo.register_model("clf", LogisticRegression().fit(x, table.column("label").to_pylist()), train="train@HEAD",
                            features=["x"])
        repo.register_model("clf", LogisticRegression(C=0.5).fit(x, table.column("label").to_pylist()),
                            parent="clf@1", derived_by="refit")
    return root


@pytest.mark.parametrize(("args", "shows"), [
    (["model", "show", "clf@1"], "clf@1"),
    (["model", "lineage", "clf@2"], "clf@1"),
    (["model", "list"], "clf"),
])
def test_reading_the_registry_imports_no_heavy_library(one_model: Path, args: list[str], shows: str) -> None:
    """Showing a version, its lineage or the list reads records and indexes: no NumPy, Arrow or scikit-learn."""
    stdout, report = _run(one_model, *args)
    assert report["code"] == 0 and shows in stdout, (stdout, report)
    assert report["heavy"] == [], f"`assay {' '.join(args)}` imported {report['heavy']}"


def test_a_command_that_reads_data_still_loads_its_layer(one_commit: Path) -> None:
    """The probe sees imports: `assay datasets` reads manifests (Arrow schemas), so pyarrow shows up."""
    stdout, report = _run(one_commit, "datasets")
    assert report["code"] == 0 and "train" in stdout
    assert "pyarrow" in report["heavy"]  # type: ignore[operator]


def test_package_version_matches_its_metadata() -> None:
    assert assay.__version__ == version("assay")


def test_lazy_public_names_resolve_like_imports() -> None:
    from assay import Repo, Suite

    assert assay.Repo is Repo and assay.Suite is Suite and "Repo" in dir(assay)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = assay.nothing_here  # type: ignore[attr-defined]


def test_adding_a_file_does_not_import_pandas(one_commit: Path) -> None:
    pq.write_table(make_table(5, seed=4), one_commit / "more.parquet")
    stdout, report = _run(one_commit, "add", "more", "more.parquet", "--key", "id")
    assert report["code"] == 0 and "+5 added" in stdout, (stdout, report)
    assert "pyarrow" in report["heavy"] and "pandas" not in report["heavy"]  # type: ignore[operator]


def test_readding_an_unchanged_folder_imports_no_heavy_library(tmp_path: Path) -> None:
    """The stat cache's summary tells an unchanged folder: no Arrow, NumPy or DuckDB is loaded to say so."""
    folder = tmp_path / "imgs" / "cat"
    folder.mkdir(parents=True)
    for i in range(4):
        (folder / f"{i}.png").write_bytes(bytes([i]) * 100)
    with assay.init(tmp_path):
        pass
    stdout, report = _run(tmp_path, "add", "imgs", "imgs")
    assert report["code"] == 0 and "+4 added" in stdout and "pyarrow" in report["heavy"], (stdout, report)
    stdout, report = _run(tmp_path, "add", "imgs", "imgs")
    assert report["code"] == 0 and "imgs: no change (4 samples)" in stdout, (stdout, report)
    assert report["heavy"] == [], f"an unchanged re-add imported {report['heavy']}"
    (folder / "0.png").write_bytes(b"changed")
    stdout, report = _run(tmp_path, "add", "imgs", "imgs")
    assert report["code"] == 0 and "~1 changed" in stdout, (stdout, report)


def test_appending_a_small_batch_starts_no_database(tmp_path: Path) -> None:
    """An append of a few thousand rows hashes them with hashlib and matches ids with Arrow: no DuckDB."""
    with assay.init(tmp_path) as repo:
        repo.add("train", make_table(3000), key="id")
        repo.commit("first")
    pq.write_table(make_table(2000, seed=5, start=3000), tmp_path / "more.parquet")
    stdout, report = _run(tmp_path, "add", "train", "more.parquet", "--mode", "append")
    assert report["code"] == 0 and "+2000 added" in stdout, (stdout, report)
    assert "duckdb" not in report["heavy"]  # type: ignore[operator]
    with assay.Repo(tmp_path) as repo:
        repo.commit("more")
        assert repo.dataset("train").to_arrow().num_rows == 5000


def test_the_table_steps_of_the_command_line_do_not_load_numpy_ma(tmp_path: Path) -> None:
    """An append, a relabel (upsert) and their diffs never load ``numpy.ma`` (10-15 ms each): Arrow's
    ``pa.array(ndarray)`` and NumPy's ``np.unique`` import it, so the table layer goes around both."""
    with assay.init(tmp_path) as repo:
        repo.add("train", make_table(3000), key="id")
        repo.commit("first")
    pq.write_table(make_table(200, seed=5, start=3000), tmp_path / "more.parquet")
    relabelled = make_table(100, seed=6, start=1000).set_column(2, "count", pa.array(range(100), pa.int64()))
    pq.write_table(relabelled, tmp_path / "relabelled.parquet")
    again = relabelled.set_column(2, "count", pa.array(range(100, 200), pa.int64()))
    pq.write_table(again, tmp_path / "relabelled2.parquet")
    for args, shows in ((["add", "train", "more.parquet", "--mode", "append"], "+200 added"),
                        (["commit", "-m", "append"], "append"),
                        (["add", "train", "relabelled.parquet", "--mode", "upsert"], "~100 changed"),
                        (["commit", "-m", "relabel"], "relabel"),
                        # the base now has deleted rows (the relabelled ones' old versions): its ids are picked
                        (["add", "train", "relabelled2.parquet", "--mode", "upsert"], "~100 changed"),
                        (["commit", "-m", "relabel again"], "relabel again"),
                        (["diff", "HEAD~1", "HEAD", "--dataset", "train"], "~100 changed"),
                        (["diff", "HEAD~3", "HEAD~2", "--dataset", "train"], "+200 added")):
        stdout, report = _run(tmp_path, *args)
        assert report["code"] == 0 and shows in stdout, (args, stdout, report)
        assert "numpy.ma" not in report["heavy"], f"`assay {' '.join(args)}` imported numpy.ma"  # type: ignore
    with assay.Repo(tmp_path) as repo:
        assert repo.dataset("train").to_arrow().num_rows == 3200


def test_a_table_command_loads_openblas_with_one_thread_unless_told(tmp_path: Path) -> None:
    """OpenBLAS's idle threads spin on the cores an add reads and hashes with; a command that does no linear
    algebra loads it with one thread, one that may (a screen) with its default, and a user's setting wins."""
    with assay.init(tmp_path) as repo:
        repo.add("train", make_table(300), key="id")
        repo.commit("first")
    pq.write_table(make_table(20, seed=5, start=300), tmp_path / "more.parquet")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    stdout, report = _run(tmp_path, "add", "train", "more.parquet", "--mode", "append", env=env)
    assert report["code"] == 0 and "+20 added" in stdout, (stdout, report)
    assert report["blas"] == [1]
    stdout, report = _run(tmp_path, "add", "train", "more.parquet", "--mode", "upsert",
                          env={**env, "OPENBLAS_NUM_THREADS": "2"})
    assert report["code"] == 0 and report["blas"] == [2], (stdout, report)
    stdout, report = _run(tmp_path, "screen", "train", env=env)
    assert report["code"] == 0, (stdout, report)
    assert report["blas"] and report["blas"][0] == (os.cpu_count() or 1), report  # type: ignore[index]


def test_a_push_of_tables_walks_their_manifests_without_arrow(tmp_path: Path) -> None:
    """What a manifest references is read from its JSON: a push of table versions loads no Arrow (only the
    pack index's NumPy)."""
    with assay.init(tmp_path / "here") as repo:
        repo.add("train", make_table(3000), key="id")
        repo.commit("first")
        repo.add("train", make_table(20, seed=2, start=3000), mode="append")
        repo.commit("second")
    with assay.init(tmp_path / "there"):
        pass
    stdout, report = _run(tmp_path / "here", "remote", "add", "origin", str(tmp_path / "there"))
    assert report["code"] == 0, (stdout, report)
    stdout, report = _run(tmp_path / "here", "push", "origin")
    assert report["code"] == 0 and "pushed main to origin" in stdout, (stdout, report)
    assert "pyarrow" not in report["heavy"], f"a push of tables imported {report['heavy']}"  # type: ignore[operator]
    with assay.Repo(tmp_path / "there") as there:
        assert there.fsck().ok and there.dataset("train", "main").to_arrow().num_rows == 3020


def test_pandas_still_loads_when_something_converts_to_it() -> None:
    code = ("import sys; from assay.cli._common import _arrow_without_pandas, _state; _state['process'] = True; "
            "_arrow_without_pandas(); assert 'pandas' not in sys.modules; import pyarrow as pa; "
            "print(type(pa.table({'a': [1]}).to_pandas()).__name__, pa.array(__import__('pandas').Series([1.5])))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("DataFrame") and "1.5" in r.stdout, r.stderr


def test_a_plain_line_off_a_terminal_is_written_without_rich(one_commit: Path) -> None:
    """`assay commit` into a pipe prints its line without loading Rich (20 ms of its start-up)."""
    probe = PROBE.replace("HEAVY = ", "HEAVY = ('rich.console',) + ", 1)
    with assay.Repo(one_commit) as repo:
        repo.add("more", make_table(5), key="id")
    r = subprocess.run([sys.executable, "-c", probe, "commit", "-m", "more rows"], cwd=one_commit,
                       capture_output=True, text=True, timeout=120)
    report = json.loads(r.stderr.strip().splitlines()[-1])
    assert report["code"] == 0 and "] more rows" in r.stdout, (r.stdout, report)
    assert "rich.console" not in report["heavy"]


def test_the_plain_path_writes_what_rich_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off a terminal, text printed without Rich is byte for byte Rich's; what Rich would change (markup, an
    :emoji: code, tabs, control characters, overlong lines) still goes through Rich."""
    import io
    import random

    from rich.console import Console
    from rich.errors import MarkupError

    from assay.cli._common import _LazyConsole

    rng = random.Random(7)
    texts = ["table: +10 added, ~0 changed", "  padded  ", "two\nlines  \n", "", "ünïcödé 漢字", "[main 1a2b] msg",
             "[bold]x[/]", "a :smile: b", "12:30:45 UTC", "tab\there", "cr\rhere", "a\\b", "\x1b[31mred"]
    alphabet = "ab c\n\\:[]/{}é漢-.0\t\u00a0"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(300)]
    plain = 0
    for text in texts:
        for options in ({}, {"markup": False}, {"markup": False, "highlight": False}, {"end": ""}, {"soft_wrap": True}):
            want = io.StringIO()
            try:
                Console(file=want, width=100_000).print(text, **options)
            except MarkupError:  # a random text that is bad markup: the plain path must not hide the error
                monkeypatch.setattr(sys, "stdout", io.StringIO())
                with pytest.raises(MarkupError):
                    _LazyConsole("stdout").print(text, **options)
                monkeypatch.undo()
                continue
            got = io.StringIO()
            monkeypatch.setattr(sys, "stdout", got)
            console = _LazyConsole("stdout")
            console.print(text, **options)
            monkeypatch.undo()
            assert got.getvalue() == want.getvalue(), (text, options)
            plain += console._console is None
    assert plain > 250  # most of them took the plain path
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    forced = _LazyConsole("stdout")
    forced.print("plain words")
    assert forced._console is not None and forced.is_terminal


def test_diff_into_a_pipe_prints_its_lines_without_rich(tmp_path: Path) -> None:
    """`assay diff` off a terminal builds its lines without markup: Rich is not loaded, and values that look like
    markup are printed as they are."""
    import pyarrow as pa

    probe = PROBE.replace("HEAVY = ", "HEAVY = ('rich.console', 'rich.markup') + ", 1)
    with assay.init(tmp_path) as repo:
        repo.add("t", pa.table({"k": ["[bold]a[/]", "b"], "v": [1, 2]}), key="k")
        repo.commit("one")
        repo.add("t", pa.table({"k": ["[bold]a[/]", "b"], "v": [1, 3]}), key="k")
        repo.add("t", pa.table({"k": ["[red]c"], "v": [4]}), key="k", mode="append")
        repo.commit("two")
    r = subprocess.run([sys.executable, "-c", probe, "diff", "HEAD~1", "HEAD"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    report = json.loads(r.stderr.strip().splitlines()[-1])
    assert report["code"] == 0 and "pyarrow" in report["heavy"], report  # the probe sees what the command loads
    assert "rich.console" not in report["heavy"] and "rich.markup" not in report["heavy"]
    assert r.stdout.splitlines() == ["t: +1 added, -0 removed, ~1 changed, 1 unchanged (2 -> 3 samples)",
                                "  columns changed: v (1)", "  + k='[red]c'", "  ~ k='b'  v: 2 -> 3"]


def _console(cwd: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_console_command_ends_without_teardown_but_runs_exit_handlers(tmp_path: Path) -> None:
    """``assay`` (``app.run``) ends with ``os._exit`` after the exit handlers and a flush of its output, with
    ``main``'s exit code; the interpreter's teardown is skipped, so a handler is the only way to see it ran."""
    script = ("import atexit, sys\n"
              "atexit.register(lambda: print('handler ran', flush=True))\n"
              "sys.argv = ['assay', *{args!r}]\n"
              "from assay.cli.app import run\n"
              "run()\n"
              "print('not reached')\n")
    r = _console(tmp_path, script.format(args=["--version"]))
    assert r.returncode == 0 and r.stdout == f"assay {version('assay')}\nhandler ran\n", r
    r = _console(tmp_path, script.format(args=["-C", str(tmp_path / "none"), "status"]))
    assert r.returncode == 1 and "error:" in r.stderr and "handler ran" in r.stdout, r
    r = _console(tmp_path, script.format(args=["no-such-command"]))
    assert r.returncode == 2 and "handler ran" in r.stdout and "not reached" not in r.stdout, r


def test_the_console_command_waits_for_a_thread_it_left_running(tmp_path: Path) -> None:
    """A thread still running when the command returns gets Python's ordinary exit, which waits for it."""
    marker = tmp_path / "written"
    r = _console(tmp_path, "import sys, threading, time\n"
                           "def late():\n"
                           "    time.sleep(0.3)\n"
                           f"    open({str(marker)!r}, 'w').write('done')\n"
                           "threading.Thread(target=late).start()\n"
                           "sys.argv = ['assay', '--version']\n"
                           "from assay.cli.app import run\n"
                           "run()\n")
    assert r.returncode == 0 and marker.read_text() == "done", r


def test_the_installed_command_writes_whole_output_into_a_pipe(tmp_path: Path) -> None:
    """The ``assay`` executable itself (its entry point is ``run``): every line of a long output reaches
    the pipe, and what it wrote is in the repository."""
    exe = Path(sys.executable).parent / "assay"
    assert exe.exists(), f"{exe}: install the package (pip install -e .)"
    with assay.init(tmp_path) as repo:
        for i in range(100):
            repo.add("train", make_table(5, seed=i, start=5 * i), key="id", mode="append" if i else "replace")
            repo.commit(f"batch {i}")
    r = subprocess.run([str(exe), "-C", str(tmp_path), "log"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.count("    batch ") == 100 and len(r.stdout) > 8192, r.stdout[-500:]
    assert r.stdout.rstrip().endswith("batch 0"), r.stdout[-200:]
    r = subprocess.run([str(exe), "-C", str(tmp_path), "branch", "from-the-console"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r
    with assay.Repo(tmp_path) as repo:
        assert "from-the-console" in repo.branches()
    # its SQLite connections were closed on the way out: the WAL is folded into catalog.db, which alone holds it
    assert not (tmp_path / ".assay" / "catalog.db-wal").exists()
    shutil.copyfile(tmp_path / ".assay" / "catalog.db", tmp_path / "alone.db")
    with contextlib.closing(sqlite3.connect(tmp_path / "alone.db")) as con:
        assert ("from-the-console",) in con.execute("SELECT name FROM refs").fetchall()


def test_a_profiled_console_command_still_reports(tmp_path: Path) -> None:
    """Under a profiler (cProfile here; pyinstrument alike) the command exits the ordinary way, so that the
    profiler writes its report after the script."""
    exe = Path(sys.executable).parent / "assay"
    out = tmp_path / "assay.prof"
    r = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), str(exe), "--version"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("assay "), r
    assert out.stat().st_size > 0
