"""Alert rules: parsing with line numbers, evaluation over windows, stored alerts (one per episode), the webhook
outbox against real receivers on 127.0.0.1, `assay monitor run` exit codes, and a serving app that monitors."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import assay
from assay.cli.app import app
from assay.errors import RefNotFound, RulesError
from assay.monitor.alerts import get_alert, list_alerts, set_rules, stored_rules
from assay.monitor.evaluate import check, evaluate, read_state, run
from assay.monitor.rules import parse_rules
from assay.monitor.webhooks import Outbox
from monitor_helpers import FEATURES, digits_table, make_repo, serve

TRAFFIC = """\
rules:
  - name: traffic
    metric: rows
    threshold: 1000
    direction: below
    severity: {severity}
"""


@pytest.fixture(scope="module")
def served_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_repo(tmp_path_factory.mktemp("alerts") / "repo")
    t = digits_table()
    serve(folder, np.stack([t.column(f).to_numpy() for f in FEATURES], axis=1)[1200:1400])
    return folder


@pytest.fixture
def served(served_once: Path, tmp_path: Path) -> Path:
    """A fresh copy of a repository whose model ``digits`` answered 200 logged requests."""
    return Path(shutil.copytree(served_once, tmp_path / "repo"))


def _until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(0.05)
    return predicate()


# -- the rules file ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, line, words", [
    ("rules:\n  - metric: rows\n    threshold: a: b\n", 3, "invalid YAML"),
    ("rules:\n  - metric: rows\n    treshold: 5\n", 3, "unknown key 'treshold'"),
    ("rules:\n  - metric: rows\n    threshold: many\n", 3, "numeric 'threshold'"),
    ("rules:\n  - metric: rows\n    threshold: 5\n    for: 0\n", 4, "consecutive windows"),
    ("rules:\n  - metric: rows\n    threshold: 5\n    severity: fatal\n", 4, "error or warning"),
    ("rules:\n  - metric: rows\n    threshold: 5\n    window: 3 fortnights\n", 4, "row count"),
    ("window: 1h\nrules:\n  - metric: rows\n    threshold: 5\n  - metric: rows\n    threshold: 6\n", 5,
     "second rule named 'rows-\\*'"),
    ("webhooks:\n  - file:///etc/passwd\nrules:\n  - metric: rows\n    threshold: 5\n", 2, "http:// or https://"),
    ("rules: []\n", 1, "list of rules"),
])
def test_a_bad_rules_file_names_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(RulesError, match=rf"rules.yaml line {line}: .*{words}"):
        parse_rules(text, "rules.yaml")


def test_an_unknown_metric_or_feature_names_its_line(served: Path) -> None:
    repo = assay.Repo(served)
    text = "rules:\n  - metric: rows\n    threshold: 5\n  - metric: nulls_share\n    threshold: 0.1\n"
    with pytest.raises(RulesError, match=r"r.yaml line 4: unknown metric 'nulls_share'; known: .*null_share"):
        check(repo, "digits", parse_rules(text, "r.yaml"))
    text = "rules:\n  - metric: null_share\n    threshold: 0.1\n    feature: p64\n"
    with pytest.raises(RulesError, match=r"r.yaml line 4: model 'digits' has no feature 'p64'"):
        check(repo, "digits", parse_rules(text, "r.yaml"))
    text = "rules:\n  - metric: rows\n    feature: p3\n    threshold: 5\n"
    with pytest.raises(RulesError, match=r"r.yaml line 3: metric 'rows' is one value per window"):
        check(repo, "digits", parse_rules(text, "r.yaml"))


def test_a_drift_metric_needs_the_drift_part(served: Path) -> None:
    rules = parse_rules("rules:\n  - metric: psi\n    feature: p3\n    threshold: 0.2\n", "r.yaml")
    import importlib

    try:
        importlib.import_module("assay.monitor.drift")
    except ImportError:
        with pytest.raises(RulesError, match=r"r.yaml line 2: metric 'psi' comes from the drift part .*"
                                             r"assay.monitor.drift"):
            check(assay.Repo(served), "digits", rules)
    else:  # the drift part is here: the rule is valid
        check(assay.Repo(served), "digits", rules)


# -- evaluation and stored alerts ------------------------------------------------------------------------------


def test_a_rule_that_keeps_firing_is_one_alert_updated_then_resolved(served: Path) -> None:
    repo = assay.Repo(served)
    rules = parse_rules(TRAFFIC.format(severity="error"))
    first = evaluate(repo, "digits", rules)
    assert first.failed and [r.value for r in first.results] == [200.0]
    (alert,) = first.opened
    assert alert.state == "firing" and alert.rule == "traffic" and alert.value == 200.0
    again = evaluate(repo, "digits", rules, now=first.evaluated_at + 1)  # the same window: nothing to write
    assert not again.opened and not again.updated and again.commit is None
    later = evaluate(repo, "digits", rules, now=first.evaluated_at + 7200)  # an empty window: 0 rows, still firing
    assert [a.id for a in later.updated] == [alert.id] and later.updated[0].value == 0.0
    assert [a.id for a in list_alerts(repo, "digits")] == [alert.id]
    clear = parse_rules(TRAFFIC.format(severity="error").replace("1000", "100"))
    done = evaluate(repo, "digits", clear)
    assert not done.failed and [a.id for a in done.resolved] == [alert.id]
    assert get_alert(repo, "digits", alert.id[:6]).state == "resolved"
    reopened = evaluate(repo, "digits", rules, now=done.evaluated_at + 1)
    (new,) = reopened.opened
    assert new.id != alert.id
    assert {a.id: a.state for a in list_alerts(repo, "digits")} == {alert.id: "resolved", new.id: "firing"}
    with pytest.raises(RefNotFound, match="no alert 'ffffffff'"):
        get_alert(repo, "digits", "ffffffff")


def test_for_needs_every_consecutive_window_to_breach(served: Path) -> None:
    repo = assay.Repo(served)
    text = "rules:\n  - metric: rows\n    threshold: 100\n    direction: below\n    window: {w}\n    for: {n}\n"
    two = evaluate(repo, "digits", parse_rules(text.format(w="80 rows", n=2)))  # 80 and 80 rows: both below
    assert two.results[0].values == (80.0, 80.0) and two.results[0].firing
    three = evaluate(repo, "digits", parse_rules(text.format(w="150 rows", n=2)))  # 50, then 150
    assert three.results[0].values == (50.0, 150.0) and not three.results[0].firing


def test_a_window_with_no_rows(served: Path) -> None:
    repo = assay.Repo(served)
    text = TRAFFIC.format(severity="warning") + "  - metric: null_share\n    threshold: 0.5\n"
    now = evaluate(repo, "digits", parse_rules(text))  # with rows: '*' is every feature, each on its own
    shares = {r.feature: r.value for r in now.results if r.metric == "null_share"}
    assert shares == {f: 0.0 for f in [*FEATURES, "prediction"]}
    ev = evaluate(repo, "digits", parse_rules(text), now=time.time() + 86400)  # tomorrow: the last hour is empty
    status = {(r.rule, r.feature): (r.status, r.value) for r in ev.results}
    assert status[("traffic", "*")] == ("firing", 0.0)
    assert status[("null_share-*", "*")] == ("no data", None)  # nothing to say: neither fires nor resolves
    assert not ev.failed  # only a warning fires
    values = {(v["metric"], v["feature"]): v["value"] for v in read_state(repo.dir, "digits")["values"]}
    assert values == {("rows", "*"): 0.0}


def test_a_model_never_served_has_empty_windows(tmp_path: Path) -> None:
    repo = assay.Repo(make_repo(tmp_path / "repo"))
    ev = evaluate(repo, "digits", parse_rules(TRAFFIC.format(severity="error")))
    assert ev.results[0].values == (0.0,) and ev.failed


def test_default_rules_are_committed_and_checked(served: Path) -> None:
    repo = assay.Repo(served)
    with pytest.raises(RulesError, match=r"has no alert rules.*rules set digits"):
        evaluate(repo, "digits")
    bad = "rules:\n  - metric: null_share\n    feature: nope\n    threshold: 0.1\n"
    with pytest.raises(RulesError, match=r"mine.yaml line 3: model 'digits' has no feature 'nope'"):
        set_rules(repo, "digits", bad, where="mine.yaml", check=lambda r: check(repo, "digits", r))
    assert stored_rules(repo, "digits") is None
    text = TRAFFIC.format(severity="warning")
    set_rules(repo, "digits", text, check=lambda r: check(repo, "digits", r))
    assert stored_rules(repo, "digits").source == text  # type: ignore[union-attr]
    assert "alerts.digits.rules" in repo.datasets("HEAD")
    assert [r.rule for r in evaluate(repo, "digits").results] == ["traffic"]


def test_monitor_run_exits_1_on_a_firing_error_rule(served: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    for severity, code in (("warning", 0), ("error", 1)):
        (tmp_path / f"{severity}.yaml").write_text(TRAFFIC.format(severity=severity))
        r = runner.invoke(app, ["-C", str(served), "monitor", "run", "digits", "--rules",
                                str(tmp_path / f"{severity}.yaml"), "--json"])
        assert r.exit_code == code, r.output
        assert json.loads(r.stdout)["results"][0]["status"] == "firing"
    r = runner.invoke(app, ["-C", str(served), "monitor", "alerts", "digits", "--json"])
    assert r.exit_code == 0 and [a["severity"] for a in json.loads(r.stdout)] == ["warning"]  # one episode
    (tmp_path / "bad.yaml").write_text("rules:\n  - metric: rowz\n    threshold: 1\n")
    r = runner.invoke(app, ["-C", str(served), "monitor", "run", "digits", "--rules", str(tmp_path / "bad.yaml")])
    assert isinstance(r.exception, RulesError) and "bad.yaml line 2: unknown metric 'rowz'" in str(r.exception)


# -- webhooks ---------------------------------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    got: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append({"body": json.loads(body), "delivery": self.headers["X-Assay-Delivery"]})  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Hanging:
    """Accepts connections on ``port`` and never answers."""

    def __init__(self, port: int):
        self.sock = socket.create_server(("127.0.0.1", port))
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread, frees the port
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def port() -> Iterator[int]:
    yield _free_port()


def _accepting(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    server.got = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_webhook_that_refuses_then_hangs_then_accepts_gets_every_alert_once(served: Path, port: int) -> None:
    repo = assay.Repo(served)
    text = f"webhooks:\n  - url: http://127.0.0.1:{port}/hook\n    timeout: 0.5\n" + TRAFFIC.format(severity="error")
    rules = parse_rules(text)
    ev = run(repo, "digits", rules, deliver_s=5)  # nothing listens: refused
    (alert,) = ev.opened
    assert ev.queued == 1 and ev.delivery is not None and (ev.delivery.failed, ev.delivery.pending) == (1, 1)
    (entry,) = Outbox.of(repo.dir).entries()
    assert entry["attempts"] == 1 and "Connection refused" in entry["last_error"] and entry["next_at"] > time.time()
    assert Outbox.of(repo.dir).deliver().failed == 0  # not due yet: backoff
    hanging = _Hanging(port)
    try:
        t0 = time.monotonic()
        got = Outbox.of(repo.dir).deliver(now=time.time() + 3600)
        assert (got.failed, got.pending) == (1, 1) and time.monotonic() - t0 < 5  # its timeout, not forever
        t0 = time.monotonic()
        evaluate(repo, "digits", rules, now=ev.evaluated_at + 7200)  # evaluating never waits for a webhook
        assert time.monotonic() - t0 < 5
    finally:
        hanging.close()
    assert "timed out" in Outbox.of(repo.dir).entries()[0]["last_error"]
    receiver = _accepting(port)
    try:
        done = Outbox(repo.dir / "monitor" / "outbox").deliver(now=time.time() + 86400)  # a fresh process' view
        assert (done.delivered, done.pending) == (1, 0)
        (post,) = receiver.got  # type: ignore[attr-defined]
        assert post["body"]["event"] == "firing" and post["body"]["alert"]["id"] == alert.id
        assert post["delivery"] == entry["id"] == post["body"]["delivery"]
        resolve = parse_rules(text.replace("1000", "100"))
        ev = run(repo, "digits", resolve)  # resolved: posted at once now the receiver answers
        assert ev.delivery is not None and ev.delivery.delivered == 1
        assert [p["body"]["event"] for p in receiver.got] == ["firing", "resolved"]  # type: ignore[attr-defined]
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert Outbox.of(repo.dir).entries() == []


# -- a server that monitors ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_monitoring_server_exports_gauges_and_a_hanging_webhook_does_not_hold_it(served: Path, tmp_path: Path,
                                                                                  port: int) -> None:
    from starlette.testclient import TestClient

    from assay.monitor.serving import create_monitored_app

    hanging = _Hanging(port)
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"webhooks:\n  - url: http://127.0.0.1:{port}/\n    timeout: 30\n" +
                     TRAFFIC.format(severity="error") + "  - metric: null_share\n    feature: p5\n    threshold: 0.5\n")
    try:
        app = create_monitored_app(served, "digits", auth=False, monitor_rules=str(rules), monitor_every=0.2,
                                   flush_rows=10, flush_seconds=0.1)
        with TestClient(app) as client:
            scraped = _until(lambda: "assay_alert_firing{" in (text := client.get("/metrics").text) and text)
            assert 'assay_alert_firing{model="digits",rule="traffic",severity="error"} 1.0' in scraped
            assert 'assay_monitor_value{feature="*",metric="rows",model="digits"} 200.0' in scraped
            assert 'assay_monitor_value{feature="p5",metric="null_share",model="digits"} 0.0' in scraped
            assert _until(lambda: hanging.conns)  # the delivery thread is stuck in the receiver now
            t0 = time.monotonic()
            r = client.post("/v1/models/digits/predict", json={"X": [0.0] * 64})
            assert r.status_code == 200 and time.monotonic() - t0 < 5
            assert 'assay_monitor_webhook_pending{model="digits"} 1.0' in client.get("/metrics").text
            assert app.state.monitor.errors == 0
    finally:
        hanging.close()
    repo = assay.Repo(served)
    assert [a.rule for a in list_alerts(repo, "digits", state="firing")] == ["traffic"]
    assert _until(lambda: Outbox.of(repo.dir).entries() and Outbox.of(repo.dir).entries()[0]["attempts"] == 1)
    receiver = _accepting(port)  # the next start replays the outbox at once, backoff or not
    try:
        app = create_monitored_app(served, "digits", auth=False, monitor_rules=str(rules), monitor_every=60)
        with TestClient(app):
            assert _until(lambda: receiver.got)  # type: ignore[attr-defined]
        (post,) = receiver.got  # type: ignore[attr-defined]
        assert post["body"]["event"] == "firing" and post["body"]["alert"]["rule"] == "traffic"
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert Outbox.of(repo.dir).entries() == []


def test_null_share_counts_nulls_and_nans_and_a_feature_all_null() -> None:
    import pyarrow as pa

    from assay.monitor.values import null_share

    rows = pa.table({"request_id": ["a", "b"], "time": [1.0, 2.0], "p0": pa.array([None, None], pa.float64()),
                     "p1": [1.0, float("nan")], "prediction": [3, 4]})
    assert null_share(rows) == {"p0": 1.0, "p1": 0.5, "prediction": 0.0}
