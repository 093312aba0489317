"""A serving app that also monitors: its rules evaluated continuously, their values and states on ``/metrics``.

The serve layer sits below monitor and never imports it, so the glue lives here: ``monitored(app, ...)`` wraps
an app that ``assay.serve.create_app`` made (its lifespan starts and stops a ``Monitor``; a collector joins the
app's Prometheus registry, ``app.state.metrics``), and ``app_from_env`` is the factory each uvicorn worker of
``assay serve`` builds its app with.

``Monitor`` runs two daemon threads: one evaluates the rules every ``every`` seconds (the file's rules, read
again each time, or else the model's stored default rules; nothing while there are none), one delivers the
webhook outbox. Neither runs on the event loop, and a webhook that hangs holds only the delivery thread, for at
most its timeout. Of several workers, one evaluates (an flock on ``.assay/monitor/NAME.leader``; another takes
over when it exits); every worker exports the same gauges, read from the state the evaluation writes::

    assay_monitor_value{model,metric,feature}          the latest window's value of each metric a rule names
    assay_alert_firing{model,rule,severity}            1 while the rule fires (for any feature), else 0
    assay_monitor_last_evaluation_timestamp_seconds{model}
    assay_monitor_webhook_pending{model}               deliveries waiting in the outbox
    assay_monitor_evaluation_errors{model}             failed evaluations since this process started
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import math
import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from assay.monitor.evaluate import Evaluation, evaluate, read_state
from assay.monitor.rules import RuleSet, load_rules
from assay.monitor.webhooks import Outbox

DEFAULT_EVERY = 60.0


class Monitor:
    """Evaluates ``model``'s rules in the repository at ``root`` every ``every`` seconds, in the background."""

    def __init__(self, root: str | Path, model: str, *, rules: str | Path | None = None,
                 every: float = DEFAULT_EVERY, branch: str | None = None, deliver_every: float = 5.0):
        from assay.repo.repository import Repository

        with Repository(root) as repo:
            self.root, self.dir = repo.root, repo.dir
        self.model, self.rules_path, self.every, self.branch = model, rules, every, branch
        self.deliver_every = deliver_every
        self.outbox = Outbox.of(self.dir)
        self.evaluations = self.errors = 0
        self.last_error: str | None = None
        self.last: Evaluation | None = None
        self._stop, self._wake = threading.Event(), threading.Event()
        self._threads: list[threading.Thread] = []
        self._leader_fd: int | None = None

    def rules(self) -> RuleSet | None:
        from assay.monitor.alerts import stored_rules
        from assay.repo.repository import Repository

        if self.rules_path is not None:
            return load_rules(self.rules_path)
        with Repository(self.root) as repo:
            return stored_rules(repo, self.model)

    def tick(self) -> Evaluation | None:
        """One evaluation (None when there are no rules, or another process is the evaluating one)."""
        from assay.repo.repository import Repository

        if not self._leader():
            return None
        rules = self.rules()
        if rules is None:
            return None
        with Repository(self.root) as repo:
            self.last = evaluate(repo, self.model, rules, branch=self.branch)
        self.evaluations += 1
        self._wake.set()
        return self.last

    def _leader(self) -> bool:
        if self._leader_fd is not None:
            return True
        folder = self.dir / "monitor"
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / f"{self.model}.leader", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._leader_fd = fd
        return True

    def start(self) -> None:
        for target in (self._evaluating, self._delivering):
            t = threading.Thread(target=target, name=f"assay-monitor-{self.model}-{target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)  # a delivery that hangs ends at its own timeout; the thread is a daemon meanwhile
        self._threads.clear()
        if self._leader_fd is not None:
            os.close(self._leader_fd)
            self._leader_fd = None

    def _evaluating(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as e:  # a busy repository, a broken rules file: keep serving, say so on /metrics
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
            self._stop.wait(self.every)

    def _delivering(self) -> None:
        now: float | None = math.inf  # at start, everything the outbox holds; then what is due
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # the outbox keeps what failed; the next pass tries again
                self.outbox.deliver(now=now)
            now = None
            self._wake.wait(self.deliver_every)
            self._wake.clear()


class MonitorCollector(Collector):
    """The monitor's gauges, read from the state the last evaluation wrote (by any process)."""

    def __init__(self, assay_dir: Path, model: str, monitor: Monitor | None = None):
        self.dir, self.model, self.monitor = Path(assay_dir), model, monitor

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = read_state(self.dir, self.model) or {}
        value = GaugeMetricFamily("assay_monitor_value", "The latest window's value of a monitored metric.",
                                  labels=["model", "metric", "feature"])
        for v in state.get("values", []):
            value.add_metric([self.model, v["metric"], v["feature"]], v["value"])
        firing = GaugeMetricFamily("assay_alert_firing", "1 while an alert rule fires (for any feature), else 0.",
                                   labels=["model", "rule", "severity"])
        for r in state.get("rules", []):
            firing.add_metric([self.model, r["rule"], r["severity"]], r["firing"])
        last = GaugeMetricFamily("assay_monitor_last_evaluation_timestamp_seconds",
                                 "When the alert rules were last evaluated.", labels=["model"])
        if "evaluated_at" in state:
            last.add_metric([self.model], state["evaluated_at"])
        pending = GaugeMetricFamily("assay_monitor_webhook_pending", "Webhook deliveries waiting in the outbox.",
                                    labels=["model"])
        pending.add_metric([self.model], Outbox.of(self.dir).pending())
        errors = GaugeMetricFamily("assay_monitor_evaluation_errors", "Failed evaluations of the alert rules "
                                   "since this server started.", labels=["model"])
        errors.add_metric([self.model], self.monitor.errors if self.monitor else 0)
        yield from (value, firing, last, pending, errors)


def monitored(app: Any, root: str | Path, *, rules: str | Path | None = None, every: float = DEFAULT_EVERY,
              branch: str | None = None) -> Any:
    """``app`` (from ``assay.serve.create_app``) evaluating its model's rules while it runs."""
    model = app.state.assay.served.version.name
    monitor = Monitor(root, model, rules=rules, every=every, branch=branch)
    app.state.metrics.registry.register(MonitorCollector(monitor.dir, model, monitor))
    app.state.monitor = monitor
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as value:
            monitor.start()
            try:
                yield value
            finally:
                await asyncio.to_thread(monitor.stop)

    app.router.lifespan_context = lifespan
    return app


def create_monitored_app(repo_path: str | Path, spec: str, *, monitor_rules: str | None = None,
                         monitor_every: float = DEFAULT_EVERY, **kwargs: Any) -> Any:
    """``assay.serve.create_app(repo_path, spec, **kwargs)``, monitored (see ``monitored``)."""
    from assay.serve import create_app

    app = create_app(repo_path, spec, **kwargs)
    return monitored(app, repo_path, rules=monitor_rules, every=monitor_every, branch=kwargs.get("branch"))


def app_from_env() -> Any:
    """The factory of ``assay serve``'s workers when monitoring is on: ``$ASSAY_SERVE_CONFIG`` with a
    ``monitor`` entry (``monitor_rules``, ``monitor_every``)."""
    from assay.errors import InputError
    from assay.serve.app import CONFIG_ENV

    try:
        config = json.loads(os.environ[CONFIG_ENV])
    except (KeyError, ValueError) as e:
        raise InputError(f"${CONFIG_ENV} must hold the server's configuration as JSON; start it with `assay "
                         "serve`") from e
    watch = config.pop("monitor", {})
    return create_monitored_app(config.pop("repo"), config.pop("spec"), **watch, **config)

