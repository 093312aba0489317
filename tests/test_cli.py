"""The command line: every command has help and is documented; a full session through the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.main import get_command
from typer.testing import CliRunner

import assay
from assay.cli.app import app
from tests.conftest import make_table

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
runner = CliRunner()


def _commands() -> dict[str, object]:
    return dict(get_command(app).commands)  # type: ignore[attr-defined]


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = README.read_text()
    for name, cmd in _commands().items():
        assert getattr(cmd, "help", None), f"assay {name} has no help text"
        assert f"assay {name}" in readme, f"assay {name} is not documented in README.md"
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output


def _assay(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assay.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_session_through_the_cli(tmp_path: Path) -> None:
    pq.write_table(make_table(50), tmp_path / "t.parquet")
    pq.write_table(make_table(5, seed=3, start=10), tmp_path / "fix.parquet")
    assert _assay(tmp_path, "init").returncode == 0
    r = _assay(tmp_path, "add", "train", "t.parquet", "--key", "id")
    assert r.returncode == 0 and "+50 added" in r.stdout
    assert "train" in _assay(tmp_path, "status").stdout
    assert _assay(tmp_path, "commit", "-m", "first").returncode == 0
    assert "no change" in _assay(tmp_path, "add", "train", "t.parquet").stdout
    assert _assay(tmp_path, "tag", "v1").returncode == 0
    r = _assay(tmp_path, "add", "train", "fix.parquet", "--mode", "upsert")
    assert "~5 changed" in r.stdout
    _assay(tmp_path, "commit", "-m", "fix")
    r = _assay(tmp_path, "diff", "v1", "HEAD", "--json")
    (d,) = json.loads(r.stdout)
    assert d["changed"] == 5 and {s["key"]["id"] for s in d["samples"]} == set(range(10, 15))
    r = _assay(tmp_path, "diff", "v1", "HEAD")
    assert "~5 changed" in r.stdout and "45 unchanged" in r.stdout
    lines = [line.strip() for line in r.stdout.splitlines() if line.strip().startswith("~ id=")]
    assert [line.split()[1] for line in lines] == [f"id={i}" for i in range(10, 15)]  # in key order
    assert all(" -> " in line for line in lines)  # the changed columns, old -> new
    stat = _assay(tmp_path, "diff", "v1", "HEAD", "--stat")
    assert "~5 changed" in stat.stdout and "id=10" not in stat.stdout
    log = json.loads(_assay(tmp_path, "log", "--json").stdout)
    assert [c["message"] for c in log] == ["fix", "first"]
    assert _assay(tmp_path, "export", "train@v1", "--to", "out.parquet").returncode == 0
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 50
    assert _assay(tmp_path, "checkout", "-b", "exp").returncode == 0
    assert "* exp" in _assay(tmp_path, "branch").stdout
    assert "ok" in _assay(tmp_path, "fsck").stdout
    r = _assay(tmp_path, "show", "v1")
    assert "train" in r.stdout and "first" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["log", "nope"], "unknown revision"),
    (["add", "t", "missing.csv"], "no such file"),
    (["commit", "-m", "x"], "nothing to commit"),
])
def test_errors_are_one_line_with_exit_code_1(tmp_path: Path, args: list[str], message: str) -> None:
    _assay(tmp_path, "init")
    r = _assay(tmp_path, *args)
    assert r.returncode == 1
    assert r.stderr.startswith("error:") and message in r.stderr
    assert "Traceback" not in r.stderr


def test_outside_a_repository(tmp_path: Path) -> None:
    r = _assay(tmp_path, "status")
    assert r.returncode == 1 and "assay init" in r.stderr


def _readme_commands() -> tuple[str, str]:
    first, second = (b.strip() for b in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)[:2])
    return first, second


def test_the_readme_installs_the_quickstart_first_and_ci_runs_its_second_command() -> None:
    first, second = _readme_commands()
    assert "pip install -e '.[quickstart]' && assay quickstart" in first and "dev" not in first
    steps = [step.strip() for step in second.split("&&")]
    assert "pip install -e '.[dev]'" in steps and steps[-1] == "python -m pytest -q"
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "apt-get update -qq && apt-get install -y -qq chromium >/dev/null" in ci
    assert ci[ci.index(steps[0]):] == steps  # after installing chromium, exactly the README's second command


def _dev_only_modules() -> set[str]:
    """The top-level modules of the dev extra's packages that the quickstart extra and the base do not install."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    names = {"scikit-learn": "sklearn", "pillow": "PIL"}
    installed = {re.split(r"[<>=!~ ]", d)[0] for d in [*extras["quickstart"], *project["dependencies"]]}
    dev = {re.split(r"[<>=!~ ]", d)[0] for d in extras["dev"]} - installed
    return {names.get(d, d.replace("-", "_")) for d in dev} | {"transformers"}  # sentence-transformers' own


def test_quickstart_runs_and_says_what_it_did(tmp_path: Path) -> None:
    blocked = sorted(_dev_only_modules())
    assert {"torch", "sentence_transformers", "pandas", "playwright"} <= set(blocked)
    only_the_quickstart_extra = (  # as if installed with pip install -e '.[quickstart]'
        "import importlib.abc, runpy, sys\n"
        "class DevOnly(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ModuleNotFoundError(f'{name} is a dev extra, not in the quickstart extra')\n"
        "sys.meta_path.insert(0, DevOnly())\n"
        "runpy.run_module('assay.cli', run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", only_the_quickstart_extra, "quickstart", "--path", "demo"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for expected in ("committed 1797 images", "suite refused", "relabelled", "merged branch more-data", "fsck", "ok",
                     "gate, clean batch", "gate, batch with flipped labels", "gate, batch with a backdoor"):
        assert expected in r.stdout
    backdoor = next(line for line in r.stdout.splitlines() if line.startswith("gate, batch with a backdoor"))
    caught, planted = map(int, backdoor.split("caught ")[1].split(" planted")[0].split(" of "))
    assert planted >= 10 and caught >= 0.9 * planted  # the gate holds the poisoned images back
    assert (tmp_path / "demo" / "ingest-report.html").read_text().count("data:image/png") >= caught
    for expected in ("registered digits-mlp@1", "exported digits-mlp@1 to ONNX as digits-mlp@2", "labels agree on 100%",
                     "quantised to INT8 as digits-mlp@3", "benchmarked digits-mlp@3", "packaged digits-mlp@3"):
        assert expected in r.stdout  # the model demo, with only the quickstart extra's packages
    assert (tmp_path / "demo" / "edge" / "digits-mlp" / "predict.py").is_file()
    for expected in ("serving digits-mlp@champion (version 3) on http://127.0.0.1:",
                     "drift of the 600 shifted requests", "inputs-drift (multivariate", "explained ",
                     "labels arrived for 300",
                     "assay ingest predictions/digits-mlp --into digits-train: of ",
                     "parent digits-mlp@3", "the running server answered with version 6"):
        assert expected in r.stdout  # the loop: served, shifted, drift, alert, explained, labelled, ingested, ...
    logged = re.search(r"digits-train: of (\d+) logged rows, 300 labelled", r.stdout)
    with assay.Repo(tmp_path / "demo") as demo:  # every request logged: the test digits as they are, 600 shifted
        assert logged and int(logged.group(1)) == demo.dataset("digits-test").to_arrow().num_rows + 600
    shifted = re.search(r"brighter, noisier digits \(accuracy (\d+)%\)", r.stdout)
    retrained = re.search(r"(\d+)% on the 300 shifted digits nobody labelled", r.stdout)
    assert shifted and retrained and int(retrained.group(1)) > int(shifted.group(1)) + 50
    again = _assay(tmp_path, "quickstart", "--path", "demo", timeout=300)
    assert again.returncode == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    refused = _assay(tmp_path, "quickstart", "--path", "other")
    assert refused.returncode == 1 and (tmp_path / "other" / "keep.txt").exists()


def test_merge_conflict_at_the_cli_shows_values_and_the_ways_out(tmp_path: Path) -> None:
    import assay

    repo = assay.init(tmp_path)
    repo.add("t", make_table(20), key="id")
    repo.commit("base")
    repo.checkout("b", create=True)
    repo.add("t", make_table(1, seed=1, start=5), mode="upsert")
    repo.commit("theirs")
    repo.checkout("main")
    repo.add("t", make_table(1, seed=2, start=5), mode="upsert")
    repo.commit("ours")
    r = _assay(tmp_path, "merge", "b")
    assert r.returncode == 3 and "sample id=5: ours changed, theirs changed (x: ours " in r.stderr
    assert "--ours" in r.stderr and "--theirs" in r.stderr and "--resolve DATASET=FILE" in r.stderr
    assert _assay(tmp_path, "merge", "b", "--ours", "--theirs").returncode == 1
    bad = _assay(tmp_path, "merge", "b", "--resolve", "fixes.csv")
    assert bad.returncode == 1 and "DATASET=FILE" in bad.stderr
    r = _assay(tmp_path, "merge", "b", "--theirs")
    assert r.returncode == 0 and "1 conflict(s) taken from theirs" in r.stdout


def test_json_output_from_the_commands_that_change_things(tmp_path: Path) -> None:
    pq.write_table(make_table(30), tmp_path / "t.parquet")
    _assay(tmp_path, "init")
    added = json.loads(_assay(tmp_path, "add", "t", "t.parquet", "--key", "id", "--json").stdout)
    assert added["added"] == 30 and added["unchanged"] == 0 and added["changed"] is True
    made = json.loads(_assay(tmp_path, "commit", "-m", "one", "--json").stdout)
    assert len(made["commit"]) == 64 and made["branch"] == "main"
    _assay(tmp_path, "tag", "v1")
    assert json.loads(_assay(tmp_path, "tag", "--json").stdout) == {"v1": made["commit"]}
    assert set(json.loads(_assay(tmp_path, "gc", "--json").stdout)) >= {"unreachable", "removed"}
    up = json.loads(_assay(tmp_path, "merge", "v1", "--json").stdout)
    assert up["up_to_date"] is True and up["commit"] == made["commit"]
