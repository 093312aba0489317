"""The dashboard (``assay ui``): its JSON API over a repository whose model served requests, the page in headless
Chromium (no console errors, charts drawn, click paths), read-only, and bound to 127.0.0.1."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from assay.monitor.dashboard import create_app
from tests.monitor_helpers import FEATURES, digits_table, make_repo, serve
from tests.test_report import BROWSER_ARGS, CHROMIUM

SERVED = 300  # requests logged: 6 windows of 50 rows


def _has(module: str) -> bool:
    return importlib.util.find_spec(f"assay.monitor.{module}") is not None


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_repo(tmp_path_factory.mktemp("ui"))
    x = np.stack([digits_table().column(f).to_numpy() for f in FEATURES], axis=1)
    serve(folder, x[1200:1200 + SERVED])
    return folder


@pytest.fixture(scope="module")
def client(folder: Path) -> Iterator[TestClient]:
    with TestClient(create_app(folder), base_url="http://127.0.0.1") as c:
        yield c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _server(folder: Path) -> Iterator[str]:
    """The dashboard under uvicorn on 127.0.0.1, in a thread; its base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(folder), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the dashboard did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def _page(url: str) -> Iterator[tuple[Any, list[str]]]:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS,
                                    ignore_default_args=["--enable-automation"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        yield page, errors
        browser.close()


def _coloured_pixels(png: bytes) -> int:
    """Pixels of a saturated colour (the series; axes, grid and text are grey or black)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())


# -- the JSON API ------------------------------------------------------------------------------------------------


def test_serving_metrics_per_window_come_from_the_prediction_log(client: TestClient) -> None:
    s = client.get("/api/models/digits/serving", params={"window": "50"}).json()
    assert s["rows"] == [50] * (SERVED // 50) and s["total_rows"] == SERVED and s["window"] == "50 rows"
    assert all(a <= b <= c for a, b, c in zip(s["p50"], s["p95"], s["p99"], strict=True))
    assert all(v > 0 for v in s["p50"])  # milliseconds, from latency_s
    for i in range(len(s["rows"])):
        assert sum(s["shares"][c][i] for c in s["classes"]) == pytest.approx(1.0)
    assert set(s["classes"]) <= {str(d) for d in range(10)} and len(s["classes"]) >= 8  # digits predicted
    auto = client.get("/api/models/digits/serving").json()
    assert sum(auto["rows"]) == SERVED and len(auto["rows"]) <= 100


def test_datasets_commits_models_and_lineage_both_ways(client: TestClient) -> None:
    names = [d["name"] for d in client.get("/api/datasets").json()]
    assert names == ["digits-test", "digits-train", "predictions.digits"]
    train = client.get("/api/datasets/digits-train").json()
    assert train["rows"] == 1200 and train["commits"][0]["message"] == "digits split for training and evaluation"
    assert [t["model"] for t in train["trained_on"]] == ["digits@1"]  # data -> the models trained on it
    assert client.get("/api/datasets/predictions.digits").json()["trained_on"] == []
    m = client.get("/api/models/digits").json()
    assert m["lineage"]["train"]["dataset"] == "digits-train" and m["lineage"]["eval"]["dataset"] == "digits-test"
    assert m["logged"] and [v["spec"] for v in m["versions"]] == ["digits@1"]  # model -> its data
    log = client.get("/api/commits").json()
    assert log[0]["message"].startswith("serve: log") and log[-1]["parents"] == []


def test_bad_requests_get_a_clear_error(client: TestClient) -> None:
    r = client.get("/api/models/nope")
    assert r.status_code == 404 and "no model 'nope'" in r.json()["error"]
    r = client.get("/api/models/digits/serving", params={"window": "soon"})
    assert r.status_code == 400 and "neither a duration" in r.json()["error"]
    assert client.get("/api/datasets/nothing").status_code == 404
    r = client.get("/api/models/digits/drift", params={"windows": "0"})
    assert r.status_code == 400 and "from 1 to 2000" in r.json()["error"]
    r = client.get("/api/models/digits/explain", params={"slice": "x"})
    assert r.status_code == 400 and "whole number" in r.json()["error"]


def test_parts_not_installed_say_so(client: TestClient) -> None:
    for part, module in (("drift", "drift"), ("performance", "performance"), ("alerts", "alerts"),
                         ("explain", "explain")):
        got = client.get(f"/api/models/digits/{part}", params={"window": "50"})
        assert got.status_code in (200, 400)
        if not _has(module):
            assert got.json() == {"available": False, "reason": got.json()["reason"]}
            assert got.json()["reason"].startswith(f"not available: assay.monitor.{module}")


def test_writes_are_refused_and_only_this_machine_is_answered(client: TestClient, folder: Path) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/", "/api/models", "/api/models/digits/alerts", "/anything"):
            r = client.request(method, path)
            assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD", (method, path)
    assert client.head("/").status_code == 200
    assert "default-src 'self'" in client.get("/").headers["content-security-policy"]
    with TestClient(create_app(folder), base_url="http://attacker.example") as other:
        assert other.get("/api/models").status_code == 400  # a rebound DNS name is not this machine


@pytest.mark.slow
def test_assay_ui_binds_127_0_0_1_by_default(folder: Path) -> None:
    import psutil

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "assay.cli", "-C", str(folder), "ui", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/api/overview").status_code == 200:
                    break
            time.sleep(0.2)
        listening = {c.laddr for c in psutil.Process(proc.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {("127.0.0.1", port)}
        assert httpx.post(f"http://127.0.0.1:{port}/api/models").status_code == 405
    finally:
        proc.terminate()
        proc.wait(20)


# -- the page in headless Chromium -------------------------------------------------------------------------------


def test_page_draws_its_charts_without_console_errors(folder: Path) -> None:
    with _server(folder) as url, _page(url + "/?window=50") as (page, errors):
        assert page.locator("#datasets tbody tr").count() == 3
        assert page.locator("#models tbody tr").count() == 1
        for chart in ("chart-rows", "chart-latency", "chart-classes"):
            box = page.locator(f"#{chart}")
            assert box.get_attribute("data-drawn") == "1", chart
            assert _coloured_pixels(box.locator("canvas").screenshot()) > 300, chart  # the series are drawn
        for chart, module in (("chart-drift", "drift"), ("chart-perf", "performance")):
            box = page.locator(f"#{chart}")
            if _has(module):  # drift per feature, estimated performance: drawn once the part is installed
                assert box.get_attribute("data-drawn") == "1", box.inner_text()
                assert _coloured_pixels(box.locator("canvas").screenshot()) > 300, chart
            else:
                assert box.locator(".unavailable").inner_text().startswith("not available")
        if not _has("alerts"):
            assert page.locator("#alerts-status .unavailable").inner_text().startswith("not available")
        assert "50 rows" in page.locator("#monitor-status").inner_text()
    assert errors == []


def test_click_paths_dataset_to_commits_and_models_model_to_lineage(folder: Path) -> None:
    with _server(folder) as url, _page(url + "/?window=50") as (page, errors):
        page.locator("#datasets tbody tr", has_text="digits-train").click()
        page.wait_for_selector("#dataset-commits")
        assert page.locator("#dataset-commits tbody tr").count() == 1
        assert "digits split" in page.locator("#dataset-commits").inner_text()
        page.locator("#dataset-models button", has_text="digits@1").click()  # dataset -> the model trained on it
        page.wait_for_selector("#lineage")
        lineage = page.locator("#lineage").inner_text()
        assert "train: digits-train@" in lineage and "eval: digits-test@" in lineage and "digits@1" in lineage
        page.locator("#lineage button", has_text="digits-test").click()  # model -> its evaluation data
        page.locator("#dataset-detail h3", has_text="digits-test: 597 rows").wait_for()
        page.locator("#models tbody tr", has_text="digits").click()
        page.wait_for_selector("#model-versions tbody tr")
        assert page.locator("#model-versions tbody tr").count() == 1
    assert errors == []


def test_drill_down_feature_to_slices_to_samples(folder: Path) -> None:
    """The drill-down from the drift chart: a feature -> its slices -> the samples of one. Where drift or explain
    is not part of the build, the page says so in their place."""
    with _server(folder) as url, _page(url + "/?window=100") as (page, errors):
        if not (_has("drift") and _has("explain")):
            assert "not available" in page.locator("#chart-drift").inner_text()
            assert "Pick an alert" in page.locator("#drill").inner_text()
        else:
            page.locator("#chart-drift button[data-feature]").first.click()
            page.wait_for_selector("#slices tbody tr.clickable", timeout=60_000)
            page.locator("#slices tbody tr.clickable").first.click()
            page.wait_for_selector("#samples tbody tr", timeout=60_000)
            assert page.locator("#samples tbody tr").count() >= 1
    assert errors == []


def test_percentiles_per_window_are_numpys() -> None:
    from assay.monitor.dashboard.views import _percentiles

    rng = np.random.default_rng(3)
    sizes = [1, 7, 0, 30, 2, 5]
    values = rng.exponential(size=sum(sizes) + 4)
    values[[3, 20]] = np.nan  # a lost latency is left out
    edges = np.concatenate([[4], 4 + np.cumsum(sizes)])
    bounds = np.stack([edges[:-1], edges[1:]], axis=1)
    got = _percentiles(values, bounds, (50, 95, 99))
    for j, (a, b) in enumerate(bounds):
        part = values[a:b][~np.isnan(values[a:b])]
        for i, q in enumerate((50, 95, 99)):
            want = float(np.percentile(part, q)) if len(part) else None
            assert got[i][j] == (pytest.approx(want) if want is not None else None)


def test_the_page_and_its_chart_library_are_package_data() -> None:
    import fnmatch
    import tomllib

    import assay

    root = Path(assay.__file__).parent
    globs = tomllib.loads((root.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    static = [p.relative_to(root).as_posix() for p in (root / "monitor" / "dashboard" / "static").rglob("*")
              if p.is_file()]
    assert {"monitor/dashboard/static/index.html", "monitor/dashboard/static/vendor/uplot/uPlot.iife.min.js",
            "monitor/dashboard/static/vendor/uplot/LICENSE"} <= set(static)
    missing = [p for p in static if not any(fnmatch.fnmatch(p, g) and p.count("/") == g.count("/")
                                            for g in globs["assay"])]
    assert missing == []  # in the wheel: setuptools globs do not cross folders
    page = (root / "monitor" / "dashboard" / "static" / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing from the internet


def test_an_empty_repository_shows_empty_panes_without_errors(tmp_path: Path) -> None:
    import assay

    assay.init(tmp_path).close()
    with _server(tmp_path) as url, _page(url) as (page, errors):
        assert "0 datasets · 0 models" in page.locator("#repo-info").inner_text()
        assert page.locator("#datasets tbody").inner_text().strip() == "none"
        assert "no model has a prediction log" in page.locator("#monitor-status").inner_text()
    assert errors == []


TRAFFIC = ("rules:\n  - name: traffic\n    metric: rows\n    threshold: 1000\n    direction: below\n"
           "    severity: warning\n")


def test_drill_down_alert_to_feature_to_slice_to_samples(folder: Path, tmp_path: Path) -> None:
    """The click path of an alert: the alerts table -> the alert's feature -> its slices -> the samples of one,
    on an alert fired by the real rules evaluation. Where alerts or explain is not part of the build, the page
    says so in their place."""
    if not (_has("alerts") and _has("explain")):
        with _server(folder) as url, _page(url + "/?window=100") as (page, errors):
            assert "not available" in page.locator("#alerts-status").inner_text() or not _has("explain")
        assert errors == []
        return
    import shutil

    import assay
    from assay.monitor.evaluate import run
    from assay.monitor.rules import parse_rules

    copy = Path(shutil.copytree(folder, tmp_path / "repo"))
    with assay.Repo(copy) as repo:
        fired = run(repo, "digits", parse_rules(TRAFFIC), deliver_s=0)
    assert fired is not None
    with _server(copy) as url, _page(url + "/?window=100") as (page, errors):
        rows = page.locator("#alerts tbody tr.clickable")
        assert rows.count() >= 1 and "traffic" in rows.first.inner_text()
        rows.first.click()
        page.locator("#drill-feature").click()  # the alert's feature
        page.wait_for_selector("#slices tbody tr.clickable", timeout=60_000)
        page.locator("#slices tbody tr.clickable").first.click()
        page.wait_for_selector("#samples tbody tr", timeout=60_000)
        assert page.locator("#samples tbody tr").count() >= 1
    assert errors == []
