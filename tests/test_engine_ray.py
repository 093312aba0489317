"""The Ray engine on a real local cluster of two nodes (a head and a worker, each its own `ray start` process):
the same results as in-process, work on both nodes, errors named and the rest cancelled, stores by URL."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import assay
from assay.engines import InProcessEngine, RayEngine
from assay.errors import NotPortable
from tests.conftest import make_table
from tests.ray_cluster import AUTH, LocalCluster

if os.environ.get("CI") == "true":  # .ci/run installs the dev extra, which holds ray: never skipped there
    import ray
else:
    ray = pytest.importorskip("ray", reason="the Ray engine's tests need ray: pip install 'assay[ray]'")

pytestmark = pytest.mark.slow
# pytest imports this file under a name the workers cannot import: its functions travel by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SUITE = """dataset: t
expectations:
  - {expect: not_null, column: x}
  - {expect: between, column: x, min: 0, max: 1}
  - {expect: between, column: count, min: 0, max: 99}
  - {expect: quantile_between, column: x, quantile: 0.5, min: 0.4, max: 0.6}
  - {expect: unique, column: name}
  - {expect: in_set, column: label, values: [cat, dog, bird]}
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    saved = {k: os.environ.get(k) for k in AUTH}
    os.environ.update(AUTH)  # the driver (this process) talks to the cluster as its nodes do
    try:
        with LocalCluster() as c:
            engine = RayEngine(c.address).connect()
            c.wait_for_nodes(ray, 2)
            yield c
            engine.close()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def engine(cluster: LocalCluster) -> RayEngine:
    return RayEngine(cluster.address)


def _slow_square(x: int) -> int:
    time.sleep(0.05 * (x % 3))  # finishing out of order
    return x * x


def _write_marker(folder_and_item: tuple[str, int]) -> int:
    """Item 0 fails at once; the others wait for the test's go-ahead (or a minute), then leave a marker."""
    folder, item = folder_and_item
    if item == 0:
        raise assay.InputError("item zero is refused")
    end = time.monotonic() + 60
    while not Path(folder, "go").exists() and time.monotonic() < end:
        time.sleep(0.05)
    Path(folder, f"done-{item}").write_text("done")
    return item


def test_results_in_order_with_progress_on_the_callers_thread(engine: RayEngine) -> None:
    calls: list[tuple[str, int, int, int]] = []
    got = list(engine.map(_slow_square, range(12), stage="squaring",
                          progress=lambda s, d, t: calls.append((s, d, t, threading.get_ident()))))
    assert got == [x * x for x in range(12)]
    assert [c[:3] for c in calls] == [("squaring", i, 12) for i in range(1, 13)]
    assert {c[3] for c in calls} == {threading.get_ident()}
    assert list(engine.map(_slow_square, [])) == []


def test_add_and_check_match_in_process_and_run_on_both_nodes(engine: RayEngine, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("assay.table.update.FRAGMENT_ROWS", 20_000)  # cut by the driver: 5 fragments
    table = make_table(100_000)
    results = {}
    for name, eng in (("inprocess", InProcessEngine()), ("ray", engine)):
        assay.init(tmp_path / name)
        with assay.Repo(tmp_path / name, engine=eng) as repo:
            added = repo.add("t", table, key="id")
            repo.set_suite("t", SUITE)
            checked = assay.run_suite(repo.dataset("t"), assay.load_suite(SUITE), engine=eng)
            results[name] = (added.manifest.to_bytes(), checked.to_dict(), repo.dataset("t").to_arrow())
    assert len(assay.table.Manifest.from_bytes(results["ray"][0]).fragments) == 5
    assert results["ray"][0] == results["inprocess"][0]  # the same fragments, byte for byte
    assert results["ray"][1] == results["inprocess"][1] and results["ray"][1]["ok"]
    assert results["ray"][2].equals(results["inprocess"][2])
    assert len(engine.nodes) == 2 and sum(engine.nodes.values()) >= 7  # 5 fragments written, 2 check groups


def test_screens_match_in_process_with_their_neighbour_queries_on_both_nodes(engine: RayEngine, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("assay.screens._neighbors.BLOCK_ROWS", 1_000)  # cut by the driver: 4 blocks
    assay.init(tmp_path)
    with assay.Repo(tmp_path) as repo:
        repo.add("t", make_table(4_000), key="id")
        version = repo.dataset("t")
        before = sum(engine.nodes.values())
        runs = {name: assay.screen(version, ["duplicate", "outlier"], engine=eng)
                for name, eng in (("inprocess", None), ("ray", engine))}
    assert set(runs["ray"].results) == set(runs["inprocess"].results) == {"duplicate", "outlier"}
    for screen, r in runs["ray"].results.items():
        other = runs["inprocess"].results[screen]
        assert np.array_equal(r.score, other.score) and np.array_equal(r.flag, other.flag), screen
        assert r.reason == other.reason, screen
    assert len(engine.nodes) == 2 and sum(engine.nodes.values()) - before >= 4


def test_an_error_names_its_item_keeps_its_class_and_cancels_the_rest(engine: RayEngine, tmp_path: Path) -> None:
    folder = str(tmp_path)
    with pytest.raises(assay.InputError, match=r"item zero is refused \(task 1 of marking, item \(.*, 0\), on node"):
        list(RayEngine(engine.address, window=4).map(_write_marker, [(folder, i) for i in range(10)],
                                                     stage="marking"))
    Path(folder, "go").write_text("")  # a task that was let run now finishes
    time.sleep(5)
    assert sorted(os.listdir(folder)) == ["go"]  # the tasks in flight were cancelled, the rest never sent


def test_workers_open_the_store_from_its_url(engine: RayEngine, tmp_path: Path) -> None:
    assay.init(tmp_path)
    with assay.Repo(tmp_path) as repo:
        oids = [repo.store.put(f"object {i}".encode()) for i in range(6)]
        assert list(engine.map(repo.store.get, oids)) == [f"object {i}".encode() for i in range(6)]
        missing = "0" * 64
        with pytest.raises(assay.ObjectNotFound, match=r"task 2 of working"):
            list(engine.map(repo.store.get, [oids[0], missing]))


def test_a_store_without_a_url_is_refused_not_copied(engine: RayEngine) -> None:
    from assay.store import MemoryBackend
    from assay.store.packing import PackingStore

    store = PackingStore(MemoryBackend())
    with pytest.raises(NotPortable, match="has no URL"):
        list(engine.map(store.get, ["0" * 64]))


def test_the_cli_takes_the_engine_from_its_option_and_the_environment(cluster: LocalCluster, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from assay.cli.app import app

    pq.write_table(make_table(500), tmp_path / "t.parquet")
    (tmp_path / "suite.yaml").write_text(SUITE)
    assay.init(tmp_path / "r")
    runner = CliRunner()
    base = ["-C", str(tmp_path / "r")]
    r = runner.invoke(app, [*base, "add", "t", str(tmp_path / "t.parquet"), "--key", "id",
                            "--engine", f"ray:{cluster.address}"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*base, "check", "t", "--suite", str(tmp_path / "suite.yaml"), "--json"],
                      env={"ASSAY_ENGINE": f"ray:{cluster.address}"})
    local = runner.invoke(app, [*base, "check", "t", "--suite", str(tmp_path / "suite.yaml"), "--json",
                                "--engine", "inprocess"])
    assert (r.exit_code, r.output) == (local.exit_code, local.output) and '"rows": 500' in r.output
