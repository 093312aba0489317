"""The gate through the command line: ingest, quarantine, scores, screen; exit codes and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.test_cli import _assay
from tests.test_gate import samples

POLICY = "screens:\n  duplicate: {action: quarantine}\n  outlier: {action: warn}\n"


def test_ingest_quarantine_and_scores_through_the_cli(tmp_path: Path) -> None:
    pq.write_table(samples(200), tmp_path / "first.parquet")
    copies = samples(200).slice(0, 4).set_column(0, "id", pa.array([900, 901, 902, 903]))
    pq.write_table(pa.concat_tables([samples(40, start=200), copies]), tmp_path / "second.parquet")
    (tmp_path / "gate.yaml").write_text(POLICY)
    assert _assay(tmp_path, "init").returncode == 0
    r = _assay(tmp_path, "ingest", "first.parquet", "--into", "points", "--key", "id", "--policy", "gate.yaml")
    assert r.returncode == 0 and "published 200 sample(s) to main" in r.stdout, r.stderr
    r = _assay(tmp_path, "ingest", "second.parquet", "--into", "points", "--policy", "gate.yaml", "--json",
               "--html", "report.html")
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["accepted"] == 40 and report["quarantined"] == 4
    assert "exact copy of sample" in (tmp_path / "report.html").read_text()
    assert _assay(tmp_path, "branch").stdout.split() == ["*", "main", report["commits"]["main"][:12]]
    listed_all = _assay(tmp_path, "branch", "--all").stdout
    assert "quarantine/points" in listed_all and "staging/" not in listed_all  # removed once published
    listed = json.loads(_assay(tmp_path, "quarantine", "list", "points", "--json").stdout)
    assert len(listed) == 4 and all("duplicate: exact copy" in row["reasons"] for row in listed)
    shown = _assay(tmp_path, "quarantine", "show", "points", listed[0]["sample"][:10])
    assert shown.returncode == 0 and "exact copy" in shown.stdout
    assert sorted(row["label"] for row in listed) == ["id=900", "id=901", "id=902", "id=903"]
    assert "id=900" in _assay(tmp_path, "quarantine", "list", "points").stdout  # the key, in the table too
    by_key = _assay(tmp_path, "quarantine", "show", "points", "id=901")
    assert by_key.returncode == 0 and "id=901" in by_key.stdout
    assert _assay(tmp_path, "quarantine", "release", "points", listed[0]["sample"]).returncode == 0
    assert "dropped 3 sample(s)" in _assay(tmp_path, "quarantine", "drop", "points", "--all").stdout
    r = _assay(tmp_path, "quarantine", "drop", "points")
    assert r.returncode == 1 and "or give --all" in r.stderr
    rows = json.loads(_assay(tmp_path, "scores", "points@main", "--sort", "outlier_score", "--limit", "3",
                             "--json").stdout)
    assert len(rows) == 3 and rows[0]["outlier_score"] <= rows[2]["outlier_score"]
    released = json.loads(_assay(tmp_path, "scores", "points", "--where", "action = 'released'", "--json").stdout)
    assert [row["sample"] for row in released] == [listed[0]["sample"]]
    r = _assay(tmp_path, "screen", "points", "--policy", "gate.yaml", "--save")
    assert r.returncode == 0 and "staged the scores" in r.stdout


def test_a_rejected_batch_exits_with_1_and_a_bad_policy_names_its_line(tmp_path: Path) -> None:
    pq.write_table(samples(100), tmp_path / "first.parquet")
    copies = samples(100).slice(0, 20).set_column(0, "id", pa.array(range(500, 520)))
    pq.write_table(copies, tmp_path / "copies.parquet")
    (tmp_path / "gate.yaml").write_text(POLICY)
    (tmp_path / "bad.yaml").write_text("screens:\n  duplicate: {action: quarantine}\n  outliers: {}\n")
    _assay(tmp_path, "init")
    _assay(tmp_path, "ingest", "first.parquet", "--into", "points", "--key", "id", "--policy", "gate.yaml")
    r = _assay(tmp_path, "ingest", "copies.parquet", "--into", "points", "--policy", "gate.yaml")
    assert r.returncode == 1 and "batch rejected" in r.stdout and "max_quarantined" in r.stdout
    assert "staging/" not in _assay(tmp_path, "branch", "--all").stdout  # removed once rejected
    r = _assay(tmp_path, "ingest", "copies.parquet", "--into", "points", "--policy", "bad.yaml")
    assert r.returncode == 1 and r.stderr.startswith("error:") and "bad.yaml line 3: unknown screen 'outliers'" \
        in r.stderr.replace("\n", "")
    r = _assay(tmp_path, "scores", "nothing")
    assert r.returncode == 1 and "has no scores" in r.stderr
