"""Adaptive micro-batching: requests that arrive while the model is busy run together; a lone request never waits.

One worker task per process takes requests from a queue. When it takes one and nothing else is queued, the
model is idle and nobody is waiting with it, so it runs that request at once (``Batch.waited`` is False). When
others are queued, it takes them too, up to ``max_batch`` instances, and waits at most ``max_wait_ms`` for more
only while the batch keeps growing. Inference runs in one thread beside the event loop (one ONNX Runtime
session per worker process), so requests keep arriving and queueing while a batch runs; that is where the
batches come from under load, without delaying anyone when there is no load.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Feeds = dict[str, np.ndarray]


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
                 on_batch: Callable[[Batch], None] | None = None):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be at least 1 and max_wait_ms at least 0")
        self.run, self.model, self.after, self.on_batch = run, model, after, on_batch
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.history: list[Batch] = []  # the last batches, newest last (bounded)
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
        self.queue.put_nowait(item)
        return await item.future

    async def _take(self) -> tuple[list[Item], bool]:
        first = await self.queue.get()
        items, rows = [first], first.rows
        rows = self._drain(items, rows)
        if len(items) == 1 or rows >= self.max_batch or self.max_wait == 0:
            return items, False  # idle model, lone request: run it now
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
            start = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self._pool, self._run_batch, model, items)
            except Exception as e:  # the model failed on this batch: every request in it gets the error
                for i in items:
                    if not i.future.done():
                        i.future.set_exception(e)
                continue
            batch = Batch(len(items), sum(i.rows for i in items), waited, self.depth, time.perf_counter() - start)
            self.history = [*self.history[-999:], batch]
            if self.on_batch is not None:
                self.on_batch(batch)
            for item, out in zip(items, outputs, strict=True):
                if not item.future.done():
                    item.future.set_result((out, model))

    def _run_batch(self, model: Any, items: list[Item]) -> list[Feeds]:
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
        return split
