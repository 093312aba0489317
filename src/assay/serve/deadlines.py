"""One time limit for every request, kept by one timer rather than a timer each.

``asyncio.timeout`` arms an event-loop timer for each block it guards and cancels it on the way out: under load
that is a timer created and cancelled for every request, twice (the body, then the model and the log), about a
tenth of the event loop's time at 4,000 req/s. Every request here has the same limit, so the deadlines come in
the order the requests do: ``Deadlines`` keeps them in a queue and one timer, ticking every ``tick`` seconds
while any is pending, cancels the tasks whose deadline passed. A block that outlives its limit raises
``TimeoutError``, as under ``asyncio.timeout`` (and a cancellation from elsewhere stays a cancellation); the
limit is kept to within one tick (a tenth of it, at most 0.5 s, at least 1 ms).
"""

from __future__ import annotations

import asyncio
import collections
import time
from types import TracebackType


class _Limit:
    __slots__ = ("cancelling", "deadline", "expired", "task")

    def __init__(self, task: asyncio.Task[object] | None, deadline: float):
        self.task, self.deadline, self.expired = task, deadline, False
        self.cancelling = task.cancelling() if task is not None else 0

    async def __aenter__(self) -> _Limit:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        task, self.task = self.task, None  # done: the timer passes it by
        if self.expired and task is not None and task.uncancel() <= self.cancelling and kind is asyncio.CancelledError:
            raise TimeoutError from error


class Deadlines:
    """``async with deadlines.limit():`` guards a block with the limit of ``seconds`` (see the module docstring)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.tick = max(0.001, min(0.5, seconds / 10))  # (a limit of 0 s: expired at the first tick, not a busy loop)
        self._pending: collections.deque[_Limit] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def limit(self) -> _Limit:
        entry = _Limit(asyncio.current_task(), time.monotonic() + self.seconds)
        self._pending.append(entry)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.tick, self._expire)
        return entry

    def _expire(self) -> None:
        now, pending = time.monotonic(), self._pending
        while pending and (pending[0].task is None or pending[0].deadline <= now):
            entry = pending.popleft()
            if entry.task is not None and not entry.task.done():
                entry.expired = True
                entry.task.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.tick, self._expire) if pending else None
