"""The server's Prometheus metrics (prometheus-client), in a registry of its own per app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from assay.serve.batching import Batch

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self, max_batch: int):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("assay_serve_requests", "HTTP requests answered, by route and status code.",
                                ["route", "status"], registry=r)
        self.latency = Histogram("assay_serve_request_duration_seconds", "Time to answer a request, by route.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, max_batch})
        self.batch_size = Histogram("assay_serve_batch_size", "Instances run together in one model call.",
                                    buckets=[float(s) for s in sizes], registry=r)
        self.batch_seconds = Histogram("assay_serve_batch_duration_seconds", "Time of one model call.",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.batches = Counter("assay_serve_batches", "Model calls; waited=false: started as soon as taken "
                               "(a lone request on an idle model, or a full batch).", ["waited"], registry=r)
        self.queue = Gauge("assay_serve_queue_depth", "Requests waiting for the model.", registry=r)
        self.log_buffer = Gauge("assay_serve_log_buffer_rows", "Predictions synced to the local buffer and not "
                                "yet committed to the dataset.", registry=r)
        self.log_errors = Gauge("assay_serve_log_flush_errors", "Failed flushes of the prediction log since "
                                "start (the rows stay buffered).", registry=r)
        self.log_syncs = Gauge("assay_serve_log_syncs", "fsyncs of the prediction log's buffer since start (one "
                               "covers every request waiting for it).", registry=r)
        self.model = Gauge("assay_serve_model_info", "The model version served (1 for the current one).",
                           ["model", "version", "role"], registry=r)

        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count an answer of ``route`` with ``status`` and time it (the labelled children looked up once)."""
        child = self._children.get((route, status))
        if child is None:
            child = self._children[(route, status)] = (self.requests.labels(route=route, status=str(status)),
                                                       self.latency.labels(route=route))
        child[0].inc()
        child[1].observe(seconds)

    def watch(self, queue: Callable[[], float], buffer: Callable[[], float], errors: Callable[[], float],
              syncs: Callable[[], float]) -> None:
        self.queue.set_function(queue)
        self.log_buffer.set_function(buffer)
        self.log_errors.set_function(errors)
        self.log_syncs.set_function(syncs)

    def batch(self, b: Batch) -> None:
        self.batch_size.observe(b.rows)
        self.batch_seconds.observe(b.seconds)
        self.batches.labels(waited=str(b.waited).lower()).inc()
