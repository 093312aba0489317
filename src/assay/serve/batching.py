"""Adaptive micro-batching: requests that arrive while the model is busy run together; a lone request never waits.

One worker task per process takes requests from a queue. When it takes one and nothing else is queued, the
model is idle and nobody is waiting with it, so it runs that request at once (``Batch.waited`` is False). When
others are queued, it takes them too, up to ``max_batch`` instances, and waits at most ``max_wait_ms`` for more
only while the model is the bottleneck: when a batch of that size takes longer than the time between two
requests (both averaged as they come), running now would keep the next request waiting behind a busy model, so
gathering it first is cheaper; when the model is faster than the requests come, waiting only adds latency (a
closed-loop client never sends more while it waits), and the batch runs at once. Inference runs in one thread
beside the event loop (one ONNX Runtime session per worker process), so requests keep arriving and queueing
while a batch runs; that is where the batches come from under load, without delaying anyone when there is no
load.

A batch that costs less than handing it to that thread and back (``inline_s``, 0.3 ms: a small model, with no
fsync after it) runs in the event loop itself, as a hand-written endpoint calls its model: the hand-off costs
more than such a model, and the thread would only add it to every answer. Each batch's own time (the model and
its ``after``, without the hand-off) is averaged per size (rows rounded up to a power of two); a batch whose
size has no average yet, or one over ``inline_s``, goes to the thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Feeds = dict[str, np.ndarray]
INLINE_S = 0.0003  # a batch expected to take less than this runs in the event loop, not the inference thread


@dataclass
class Item:
    """One request in the queue: its input arrays (``rows`` instances) and what it is answered through."""

    feeds: Feeds
    rows: int
    future: asyncio.Future[Any]
    context: Any = None  # what the ``after`` hook needs about the request (its id, key name, start time)
    queued: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Batch:
    """A batch as it ran: how many requests and instances, whether it waited for company, the queue behind it."""

    requests: int
    rows: int
    waited: bool  # False: it started as soon as it was taken (the queue was empty or full enough)
    queue_left: int
    seconds: float


class Batcher:
    """Runs ``run(feeds) -> outputs`` over batches of queued requests; ``after(items, outputs, model)`` runs in the
    inference thread before any of the batch's requests are answered (the prediction log syncs there).

    ``model`` is whatever ``run`` needs (a session and its version); ``swap`` replaces it for the batches taken
    after, while a batch already running finishes on the one it took.
    """

    def __init__(self, run: Callable[[Any, Feeds], Feeds], model: Any, *, max_batch: int = 64,
                 max_wait_ms: float = 2.0,
                 after: Callable[[Sequence[Item], list[Feeds], Any], None] | None = None,
                 on_batch: Callable[[Batch], None] | None = None, inline_s: float = INLINE_S):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be at least 1 and max_wait_ms at least 0")
        self.run, self.model, self.after, self.on_batch = run, model, after, on_batch
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.history: collections.deque[Batch] = collections.deque(maxlen=1000)  # the last batches, newest last
        self.inline_s = inline_s
        self._cost: dict[int, float] = {}  # rows (rounded up to a power of two) -> average seconds of a batch
        self._work = 0.0  # the last batch's own seconds (model and ``after``), set where it ran
        self._gap: float | None = None  # average seconds between two requests
        self._last: float | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="assay-infer")
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._pool.shutdown(wait=True)

    def swap(self, model: Any) -> None:
        self.model = model

    async def submit(self, feeds: Feeds, rows: int, context: Any = None) -> Any:
        """Queue a request; returns ``(outputs, model)`` once its batch ran (and ``after`` returned)."""
        item = Item(feeds, rows, asyncio.get_running_loop().create_future(), context)
        if self._last is not None:
            gap = item.queued - self._last
            self._gap = gap if self._gap is None else 0.9 * self._gap + 0.1 * gap
        self._last = item.queued
        self.queue.put_nowait(item)
        return await item.future

    async def _take(self) -> tuple[list[Item], bool]:
        first = await self.queue.get()
        items, rows = [first], first.rows
        rows = self._drain(items, rows)
        if len(items) == 1 or rows >= self.max_batch or self.max_wait == 0:
            return items, False  # idle model, lone request: run it now
        cost = self._cost.get(_size(rows))
        if cost is not None and self._gap is not None and cost < self._gap:
            return items, False  # the model keeps up with the requests: gathering more would only delay these
        deadline = time.perf_counter() + self.max_wait
        while rows < self.max_batch:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                nxt = await asyncio.wait_for(self.queue.get(), left)
            except TimeoutError:
                break
            items.append(nxt)
            rows = self._drain(items, rows + nxt.rows)
        return items, True

    def _drain(self, items: list[Item], rows: int) -> int:
        while rows < self.max_batch and not self.queue.empty():
            nxt = self.queue.get_nowait()
            items.append(nxt)
            rows += nxt.rows
        return rows

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items, waited = await self._take()
            items = [i for i in items if not i.future.cancelled()]  # timed-out requests are not run
            if not items:
                continue
            model = self.model
            rows = sum(i.rows for i in items)
            size = _size(rows)
            start = time.perf_counter()
            try:
                if self._cost.get(size, self.inline_s) < self.inline_s:
                    outputs = self._run_batch(model, items)  # cheaper than the hand-off to the thread
                else:
                    outputs = await loop.run_in_executor(self._pool, self._run_batch, model, items)
            except Exception as e:  # the model failed on this batch: every request in it gets the error
                for i in items:
                    if not i.future.done():
                        i.future.set_exception(e)
                continue
            took = time.perf_counter() - start
            before, work = self._cost.get(size), self._work
            self._cost[size] = work if before is None else 0.9 * before + 0.1 * work
            batch = Batch(len(items), rows, waited, self.depth, took)
            self.history.append(batch)
            if self.on_batch is not None:
                self.on_batch(batch)
            for item, out in zip(items, outputs, strict=True):
                if not item.future.done():
                    item.future.set_result((out, model))

    def _run_batch(self, model: Any, items: list[Item]) -> list[Feeds]:
        start = time.perf_counter()
        names = list(items[0].feeds)
        feeds = {n: np.concatenate([i.feeds[n] for i in items]) if len(items) > 1 else items[0].feeds[n]
                 for n in names}
        outputs = self.run(model, feeds)
        split, at = [], 0
        for item in items:
            split.append({k: v[at:at + item.rows] for k, v in outputs.items()})
            at += item.rows
        if self.after is not None:
            self.after(items, split, model)
        self._work = time.perf_counter() - start  # the batch's own cost, without the hand-off
        return split


def _size(rows: int) -> int:
    """A batch's rows rounded up to a power of two: the sizes whose cost is averaged."""
    return 1 << max(rows - 1, 0).bit_length()
