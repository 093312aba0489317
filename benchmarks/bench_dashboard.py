"""The dashboard's first paint with 1,000 windows of serving data (issue 10: first paint under 1 s with 1,000
windows and 100 alerts).

Builds the monitor tests' repository (model ``digits``), logs real predictions through the server, then writes a
prediction log of WINDOWS x ROWS rows (those predictions, one window a minute) and opens ``/?window=1m`` in
headless Chromium (Debian's, driven by Playwright). Prints, as medians of RUNS page loads:

- first-contentful-paint (the Performance API's paint entry): the goal, under 1 s;
- ready: until every pane has been filled (all API answers in, every chart drawn);
- the serving API's answer time for the 1,000 windows, measured in-process.

With ``assay.monitor.alerts`` installed, ALERTS alerts are stored as it stores them (``store_alerts``); without
it the alerts pane shows "not available" and the count printed is 0.

    PYTHONPATH=src python benchmarks/bench_dashboard.py [--windows 1000] [--rows 10] [--alerts 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.monitor_helpers import FEATURES, digits_table, make_repo, serve


def build(folder: Path, windows: int, rows: int, alerts: int) -> int:
    """The repository with a log of ``windows`` one-minute windows of ``rows`` predictions each, and ``alerts``
    stored alerts where ``assay.monitor.alerts`` is installed; the rows."""
    import assay
    from assay.serve.log import SCHEMA, dataset_name

    make_repo(folder)
    x = np.stack([digits_table().column(f).to_numpy() for f in FEATURES], axis=1)
    serve(folder, x[1200:1500])
    repo = assay.Repo(folder)
    with repo:
        real = repo.dataset(dataset_name("digits"), "HEAD").to_arrow()
        n = windows * rows
        pick = np.arange(n) % real.num_rows
        rng = np.random.default_rng(0)
        start = time.time() - windows * 60
        cols = {c: real.column(c).take(pa.array(pick)) for c in SCHEMA.names}
        cols["request_id"] = pa.array([f"bench-{i:08d}" for i in range(n)])
        cols["time"] = pa.array(start + np.repeat(np.arange(windows) * 60.0, rows) + np.tile(np.arange(rows), windows))
        cols["latency_s"] = pa.array(rng.lognormal(np.log(0.002), 0.5, n))
        repo.add(dataset_name("digits"), pa.table(cols, schema=SCHEMA), key="request_id")
        repo.commit(f"bench: a log of {windows} windows of {rows} predictions")
        _alerts(repo, start, alerts)
    return n


def _alerts(repo: object, start: float, count: int) -> None:
    """``count`` alerts stored as ``assay.monitor.alerts`` stores them (one a window, fired on null_share)."""
    try:
        from assay.monitor.alerts import Alert, store_alerts
    except ImportError:
        return
    made = []
    for i in range(count):
        at = start + i * 60.0
        feature = FEATURES[i % len(FEATURES)]
        made.append(Alert(Alert.make_id("digits", "bench", feature, at), "digits", "bench", "null_share", feature,
                          "warning", 0.5, 0.1, at, at + 60.0, at + 60.0, updated_at=at + 60.0))
    store_alerts(repo, "digits", lambda stored: made)


def measure(folder: Path, runs: int) -> tuple[list[float], list[float], int, int]:
    from playwright.sync_api import sync_playwright

    from tests.test_dashboard import BROWSER_ARGS, CHROMIUM, _server

    fcp, ready = [], []
    with _server(folder) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS,
                                    ignore_default_args=["--enable-automation"])
        for _ in range(runs):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "/?window=1m")
            page.wait_for_selector("body[data-ready='1']", timeout=120_000)
            fcp.append(page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime"))
            ready.append(page.evaluate("performance.getEntriesByName('assay-ready')[0].startTime"))
            points = page.evaluate("document.querySelectorAll('#chart-rows canvas').length")
            alerts = page.locator("#alerts tbody tr[data-id]").count()
            page.close()
        browser.close()
    return fcp, ready, int(points), alerts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--alerts", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "repo"
        rows = build(folder, args.windows, args.rows, args.alerts)

        from starlette.testclient import TestClient

        from assay.monitor.dashboard import create_app

        with TestClient(create_app(folder), base_url="http://127.0.0.1") as c:
            t = time.perf_counter()
            got = c.get("/api/models/digits/serving", params={"window": "1m"}).json()
            api_s = time.perf_counter() - t
        fcp, ready, charts, alerts = measure(folder, args.runs)
    print(f"log: {rows} predictions in {len(got['rows'])} windows of 1 minute; alerts shown: {alerts}")
    print(f"serving API (1,000 windows: rows, latency percentiles, class shares): {api_s * 1000:.0f} ms")
    print(f"first-contentful-paint: median {statistics.median(fcp):.0f} ms (runs: "
          f"{', '.join(f'{v:.0f}' for v in fcp)}); goal < 1000 ms: "
          f"{'met' if statistics.median(fcp) < 1000 else 'NOT met'}")
    print(f"ready (every pane filled, charts drawn: {charts} canvas in the requests pane): median "
          f"{statistics.median(ready):.0f} ms (runs: {', '.join(f'{v:.0f}' for v in ready)})")


if __name__ == "__main__":
    main()
