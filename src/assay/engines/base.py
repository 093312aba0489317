"""The engine protocol: map a function over items (fragments, blocks, groups of checks), results in order.

The contract every engine keeps, so that a distributed one (Ray, next) fits callers written against the
in-process one:

* **Nothing shared but what is pickled.** ``fn`` and each item may be sent to another process, and each result
  sent back, so all three must be picklable (a Ray engine uses cloudpickle: closures and lambdas are fine, open
  files, locks, sockets and database connections are not). ``fn`` must not count on shared memory: it may not
  mutate its arguments or module state for the caller to see; everything it produces is in its return value,
  or in a store that the worker opens itself (from the store's URL, never from a pickled handle).
* **Results in the order of ``items``**, whatever order the work finishes in.
* **Back-pressure.** ``items`` is consumed lazily, at most ``window`` items ahead of the result the caller is
  taking, so a stream of fragments larger than memory can go through ``map``.
* **Progress from the caller's side.** ``progress(stage, done, total)`` is called as results are taken, in the
  caller's thread; ``total`` is ``len(items)`` when items is sized, else the ``total`` given, else 0.
* **Errors.** An exception raised by ``fn`` is raised by the iterator when its result is reached; the work not
  yet started is cancelled.

``map`` returns an iterator and starts work when it is iterated: ``list(engine.map(fn, items))`` runs it all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from assay._types import Progress
from assay.errors import InputError

T = TypeVar("T")
R = TypeVar("R")


class Engine(ABC):
    """Where work runs. Subclasses implement :meth:`map`; see the module docstring for the contract."""

    @abstractmethod
    def map(self, fn: Callable[[T], R], items: Iterable[T], *, progress: Progress | None = None,
            stage: str | None = None, total: int | None = None) -> Iterator[R]:
        """``fn(item)`` for every item, as an iterator of results in the order of ``items``."""


class InProcessEngine(Engine):
    """Runs ``fn`` in a pool of ``threads`` threads of this process (one thread: inline, no pool).

    Threads suit assay's work: Parquet and Arrow decoding, hashing, compression and DuckDB release the GIL.
    At most ``window`` items (default: ``threads``) are in flight at once.
    """

    def __init__(self, threads: int = 2, *, window: int | None = None) -> None:
        if threads < 1 or (window is not None and window < 1):
            raise InputError(f"an engine needs at least one thread and a window of at least one item (got "
                             f"threads={threads}, window={window}); pass positive numbers")
        self.threads = threads
        self.window = window or threads

    def __repr__(self) -> str:
        return f"InProcessEngine(threads={self.threads}, window={self.window})"

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, progress: Progress | None = None,
            stage: str | None = None, total: int | None = None) -> Iterator[R]:
        known = len(items) if isinstance(items, Sized) else (total or 0)
        results = self._inline(fn, items) if self.threads == 1 else self._pooled(fn, items)
        return _reporting(results, progress, stage or "working", known)

    @staticmethod
    def _inline(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        for item in items:
            yield fn(item)

    def _pooled(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        pending: deque[Future[R]] = deque()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="assay-engine") as pool:
            try:
                for item in items:
                    pending.append(pool.submit(fn, item))
                    while len(pending) >= self.window:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for f in pending:
                    f.cancel()


def _reporting(results: Iterator[R], progress: Progress | None, stage: str, total: int) -> Iterator[R]:
    if progress is None:
        yield from results
        return
    for done, r in enumerate(results, 1):
        progress(stage, done, max(total, done))
        yield r


def default_engine() -> Engine:
    """The engine used when none is passed: two threads in this process (assay's behaviour before engines)."""
    return InProcessEngine()
