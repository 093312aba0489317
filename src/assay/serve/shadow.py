"""A shadow version: it gets a copy of every batch the served version answers, and its predictions are logged
(in the dataset ``predictions.NAME.shadow``, with the same request ids, so the two join) but never returned.

It runs in a thread of its own after the batch was answered, so it never delays a response; when it falls
behind by more than ``backlog`` batches, batches are dropped for it (and counted) rather than queued without
bound. Its inputs must be the served version's (names and dtypes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from assay.serve.batching import Feeds, Item
from assay.serve.log import PredictionLog


def check_inputs(primary: Any, shadow: Any) -> None:
    from assay.errors import NotServable

    mine = [(s.name, s.dtype) for s in primary.validator.signature.inputs]
    theirs = [(s.name, s.dtype) for s in shadow.validator.signature.inputs]
    if mine != theirs:
        raise NotServable(f"the shadow {shadow.version.spec} takes {theirs}, but {primary.version.spec} takes "
                          f"{mine}: a shadow must take the inputs of the version it shadows")


class Shadow:
    def __init__(self, served: Any, log: PredictionLog | None, rows_of: Callable[..., list[dict[str, Any]]],
                 *, backlog: int = 64):
        self.served, self.log, self.rows_of, self.backlog = served, log, rows_of, backlog
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="assay-shadow")
        self._lock = threading.Lock()
        self.waiting = 0
        self.dropped = 0  # batches the shadow did not see because it was behind
        self.errors = 0

    def offer(self, items: Sequence[Item]) -> None:
        with self._lock:
            if self.waiting >= self.backlog:
                self.dropped += 1
                return
            self.waiting += 1
        self._pool.submit(self._run, list(items))

    def _run(self, items: list[Item]) -> None:
        try:
            feeds = {n: np.concatenate([i.feeds[n] for i in items]) for n in items[0].feeds}
            names = self.served.outputs
            outputs: Feeds = dict(zip(names, self.served.session.run(names, feeds), strict=True))
            split, at = [], 0
            for item in items:
                split.append({k: v[at:at + item.rows] for k, v in outputs.items()})
                at += item.rows
            if self.log is not None:
                self.log.append(self.rows_of(items, split, self.served))
        except Exception:  # a shadow that fails never touches the answers; counted
            self.errors += 1
        finally:
            with self._lock:
                self.waiting -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=True)
