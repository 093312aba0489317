"""The command line as a user meets it: usage errors, exit codes, --version, help text, output folders."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from assay.cli.app import app
from tests.conftest import make_table

README = Path(__file__).parents[1] / "README.md"


def _assay(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assay.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--version-typo"], "No such option: --version-typo"),
    (["add", "train"], "Missing argument 'SOURCE'"),
    (["add", "--bogus", "x", "y"], "No such option: --bogus"),
    (["nocommand"], "No such command 'nocommand'"),
    (["suite", "infer"], "Missing argument"),
])
def test_a_usage_error_is_the_usage_and_one_line_with_exit_code_2(tmp_path: Path, args: list[str],
                                                                   message: str) -> None:
    r = _assay(tmp_path, *args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 4
    assert r.stderr.startswith("Usage: assay")
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and message.lower() in last.lower()


def test_version() -> None:
    r = _assay(Path.cwd(), "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"assay {version('assay')}"


def test_exit_codes_0_1_2_3_through_the_cli(tmp_path: Path) -> None:
    pq.write_table(make_table(10), tmp_path / "t.parquet")
    pq.write_table(make_table(1, seed=1, start=5), tmp_path / "theirs.parquet")
    pq.write_table(make_table(1, seed=2, start=5), tmp_path / "ours.parquet")
    assert _assay(tmp_path, "init").returncode == 0
    assert _assay(tmp_path, "add", "t", "t.parquet", "--key", "id").returncode == 0
    assert _assay(tmp_path, "commit", "-m", "base").returncode == 0
    r = _assay(tmp_path, "commit", "-m", "again")
    assert r.returncode == 1 and r.stderr.startswith("error:")
    assert _assay(tmp_path, "add", "--mode").returncode == 2
    assert _assay(tmp_path, "checkout", "-b", "b").returncode == 0
    assert _assay(tmp_path, "add", "t", "theirs.parquet", "--mode", "upsert").returncode == 0
    assert _assay(tmp_path, "commit", "-m", "theirs").returncode == 0
    assert _assay(tmp_path, "checkout", "main").returncode == 0
    assert _assay(tmp_path, "add", "t", "ours.parquet", "--mode", "upsert").returncode == 0
    assert _assay(tmp_path, "commit", "-m", "ours").returncode == 0
    r = _assay(tmp_path, "merge", "b")
    assert r.returncode == 3 and r.stderr.startswith("error:") and "Traceback" not in r.stderr


def test_exit_codes_are_documented_in_the_readme_and_the_help() -> None:
    from typer.testing import CliRunner

    readme = README.read_text()
    help_text = " ".join(CliRunner().invoke(app, ["--help"]).output.split())
    assert "Exit codes:" in readme and "Exit codes:" in help_text
    for code, meaning in [("0", "done"), ("1", "an error"), ("2", "a usage error"), ("3", "a merge conflict")]:
        assert f"| {code} " in readme and meaning.removeprefix("a ") in readme
        assert f"{code} {meaning}" in help_text, help_text


def test_an_output_file_gets_its_folders(tmp_path: Path) -> None:
    pq.write_table(make_table(20), tmp_path / "t.parquet")
    _assay(tmp_path, "init")
    _assay(tmp_path, "add", "t", "t.parquet", "--key", "id")
    _assay(tmp_path, "commit", "-m", "first")
    r = _assay(tmp_path, "suite", "infer", "t@HEAD", "-o", "suites/new/t.yaml")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "suites/new/t.yaml").read_text().startswith("format: 1")
    r = _assay(tmp_path, "check", "t", "--suite", "suites/new/t.yaml", "--html", "reports/x/check.html")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "reports/x/check.html").stat().st_size > 0
    assert _assay(tmp_path, "export", "t", "--to", "out/deep/t.parquet").returncode == 0
    assert pq.read_table(tmp_path / "out/deep/t.parquet").num_rows == 20


# -- every command of README.md, in order ------------------------------------------------------------------------

SKIPPED = {  # README lines not run here, and why
    "python3 -m venv": "installs the package (needs the network)",
    ". .venv/bin/activate": "runs the linters and this test suite",
}


def _readme_commands() -> list[str]:
    """The commands of README.md's bash blocks, in order (``a; b`` is two commands; comments dropped)."""
    commands, in_bash = [], False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            in_bash = line == "```bash"
            continue
        if not in_bash or any(line.startswith(s) for s in SKIPPED):
            continue
        commands += [c.strip() for c in re.split(r"\s#", line)[0].split("; ") if c.strip()]
    return commands


def _write_readme_data(folder: Path) -> None:
    """The files README.md's commands name: data/train.parquet, data/images/, fixes.csv, other.yaml, the gate's."""
    from tests.conftest import write_images

    (folder / "data").mkdir()
    train = make_table(200)
    pq.write_table(train, folder / "data/train.parquet")
    write_images(folder / "data/images", {"dark": 20, "light": 180}, 12)
    fixes = make_table(5, seed=1)
    pcsv.write_csv(fixes.set_column(4, "label", fixes.column("label").cast(pa.string())), folder / "fixes.csv")
    copies = train.slice(10, 2).set_column(0, "id", pa.array([900, 901], pa.int64()))  # two copies: quarantined
    pq.write_table(pa.concat_tables([make_table(30, seed=5, start=200), copies]), folder / "batch.parquet")
    write_images(folder / "new-images", {"dark": 20, "light": 180}, 18, seed=3)
    for old in folder.glob("new-images/*/*.png"):  # new files only: the first 12 of each label are in data/images
        if int(old.stem) < 12:
            old.unlink()
    (folder / "gate.yaml").write_text("format: 1\nchecks: warn\nscreens:\n"
                                      "  duplicate: {action: quarantine, near: 0, text_similarity: 1}\n"
                                      "  outlier: {action: warn}\n  label_issue: {action: warn}\n")
    (folder / "other.yaml").write_text("format: 1\ndataset: train\nexpectations:\n"
                                       "- {expect: not_null, column: id}\n")


@pytest.mark.slow
def test_every_command_of_the_readme_runs_in_order(tmp_path: Path) -> None:
    _write_readme_data(tmp_path)
    commands = _readme_commands()
    assert len(commands) > 30 and commands[0] == "assay init"
    for command in commands:
        args = shlex.split(command)
        assert args[0] == "assay", command
        if "3f2a9c" in args:  # the README's example sample id: the first one the gate held back
            listed = json.loads(_assay(tmp_path, "quarantine", "list", "train", "--json").stdout)
            args[args.index("3f2a9c")] = listed[0]["sample"][:6]
        r = _assay(tmp_path, *args[1:])
        assert r.returncode == 0, f"{command}: exit code {r.returncode}\n{r.stdout}\n{r.stderr}"


def test_status_shows_a_staged_suite_and_a_staged_removal(tmp_path: Path) -> None:
    pq.write_table(make_table(20), tmp_path / "t.parquet")
    pq.write_table(make_table(5), tmp_path / "u.parquet")
    for args in (["init"], ["add", "t", "t.parquet", "--key", "id"], ["add", "u", "u.parquet"],
                 ["commit", "-m", "first"], ["suite", "infer", "t", "-o", "t.yaml"], ["suite", "set", "t", "t.yaml"],
                 ["rm", "u"]):
        assert _assay(tmp_path, *args).returncode == 0, args
    r = _assay(tmp_path, "status")
    rows = {line.split()[1]: line for line in r.stdout.splitlines() if line.startswith("│")}
    assert "suite staged" in rows["t"] and "+0" not in rows["t"] and "()" not in rows["t"]
    assert "dataset removed" in rows["u"]
    staged = json.loads(_assay(tmp_path, "status", "--json").stdout)["staged"]
    assert len(staged["t"]["suite"]) == 64 and staged["u"]["removed_dataset"] is True
    assert _assay(tmp_path, "commit", "-m", "suite").returncode == 0
    assert "Nothing staged" in _assay(tmp_path, "status").stdout


def _all_commands() -> list[list[str]]:
    from typer.main import get_command

    def walk(cmd: Any, path: list[str]) -> list[list[str]]:
        below = [p for n, c in getattr(cmd, "commands", {}).items() for p in walk(c, [*path, n])]
        return [*below, path]

    return walk(get_command(app), [])


def test_help_names_values_as_a_user_reads_them() -> None:
    from typer.testing import CliRunner

    commands = _all_commands()
    assert ["add"] in commands and ["suite", "infer"] in commands and ["quarantine", "release"] in commands
    for path in commands:
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "<" not in result.output and "{" not in result.output, (path, result.output)
        assert "docs/" not in result.output, path  # an installed copy has no docs folder
    add = CliRunner().invoke(app, ["add", "--help"]).output
    assert "Usage: root add [OPTIONS] NAME SOURCE" in add and "-k, --key COLUMN" in add


def test_the_app_reduced_to_one_command_parses_and_helps_as_the_whole_one() -> None:
    """A process builds only the command it runs (app.for_command); its help and errors are the whole app's."""
    from typer.testing import CliRunner

    from assay.cli.app import for_command

    for path in filter(None, _all_commands()):
        for args in ([*path, "--help"], ["-C", ".", *path, "--help"], ["--repo=.", *path, "--bogus"]):
            reduced = for_command(args)
            assert reduced is not app and len(reduced.registered_commands) + len(reduced.registered_groups) == 1
            mine, whole = CliRunner().invoke(reduced, args), CliRunner().invoke(app, args)
            assert (mine.exit_code, mine.output) == (whole.exit_code, whole.output), args
    for args in (["--help"], [], ["--version"], ["nocommand"], ["-C"], ["--bogus", "add"]):
        assert for_command(args) is app, args


def test_the_command_map_names_each_command_and_group_where_it_is_defined() -> None:
    """for_command imports one module by the map in app.py: a command added to a module and not to the map (or
    moved) would be missing from the reduced app, so the map must be what the modules define."""
    import importlib

    import typer

    from assay.cli import app as cli

    names = sorted(p.stem for p in (Path(cli.__file__).parent).glob("*_cmds.py"))
    defined: dict[str, str] = {}
    groups: set[tuple[str, str]] = set()
    for name in names:
        module = importlib.import_module(f"assay.cli.{name}")
        typers = {attr: v for attr, v in vars(module).items() if isinstance(v, typer.Typer)}
        nested = {id(g.typer_instance) for v in typers.values() for g in v.registered_groups}
        for attr, v in typers.items():
            if id(v) in nested:
                continue  # a group inside a group (serve keys, monitor rules): reached through its parent
            if attr == "app" and not isinstance(v.info.help, str) and not isinstance(v.info.name, str):  # top level
                defined.update({cli._name_of(c): name for c in v.registered_commands})
            else:
                groups.add((name, attr))
    assert defined == cli._COMMANDS
    assert groups == set(cli._GROUPS.values())
    assert {w for w, m in cli._GROUPS.items()} | set(defined) | {"ui", "quickstart"} == set(cli._WORDS)
    assert callable(importlib.import_module("assay.cli.ui_cmds").ui)


def test_help_screens_tells_the_policy_file_and_every_parameter() -> None:
    from assay.screens import SCREENS

    r = _assay(Path.cwd(), "help", "screens")
    assert r.returncode == 0 and "max_quarantined" in r.stdout and "action" in r.stdout
    for name, screen in SCREENS.items():
        assert f"  {name}: " in r.stdout
        assert all(f"    {param} (default " in r.stdout for param in screen.params)
    r = _assay(Path.cwd(), "help", "nothing")
    assert r.returncode == 1 and "the topics: screens" in r.stderr


def test_tables_are_not_cut_when_not_on_a_terminal(tmp_path: Path) -> None:
    from tests.test_gate import samples

    pq.write_table(samples(120), tmp_path / "first.parquet")
    _assay(tmp_path, "init")
    assert _assay(tmp_path, "ingest", "first.parquet", "--into", "points", "--key", "id").returncode == 0
    r = _assay(tmp_path, "scores", "points", "--limit", "3")  # five screens: wider than 80 columns
    assert r.returncode == 0 and "…" not in r.stdout and "..." not in r.stdout
    ids = [row["sample"] for row in json.loads(_assay(tmp_path, "scores", "points", "--limit", "3",
                                                      "--json").stdout)]
    assert all(f"│ {i[:12]} │ accepted" in r.stdout for i in ids), r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) > 80
