"""The command line as a user meets it: usage errors, exit codes, --version, help text, output folders."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from assay.cli.main import app
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
