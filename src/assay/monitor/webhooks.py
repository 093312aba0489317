"""Webhook deliveries through a durable outbox: an event is on disk before anything is posted, and leaves the
disk only once a receiver has answered 2xx.

The outbox is the folder ``.assay/monitor/outbox/``: one JSON file per delivery (URL, body, attempts, next try),
each written atomically (a temporary file, fsynced, renamed). ``deliver`` posts those that are due, each with its
own timeout; a receiver that refuses, fails or hangs only moves its delivery's next try later (exponential
backoff with jitter, up to ``MAX_BACKOFF``); nothing is ever dropped. Every ``assay monitor run`` retries all
that waits (``now=math.inf``), a monitoring server what is due (everything when it starts), so a delivery
survives crashes and restarts. A delivery
may arrive twice (a crash between the answer and the removal): its ``X-Assay-Delivery`` header and the body's
``delivery`` field let a receiver drop the copy. One process at a time delivers (an flock on the folder's lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.store.fs import atomic_write

BASE_BACKOFF = 1.0  # seconds before the first retry; doubled each attempt
MAX_BACKOFF = 600.0


@dataclass(frozen=True)
class DeliveryResult:
    delivered: int
    failed: int  # attempts that failed this time (kept for a retry)
    pending: int  # still in the outbox

    def to_dict(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed": self.failed, "pending": self.pending}


class Outbox:
    """The deliveries waiting in ``folder`` (``.assay/monitor/outbox`` of a repository)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @classmethod
    def of(cls, assay_dir: Path) -> Outbox:
        return cls(Path(assay_dir) / "monitor" / "outbox")

    def put(self, url: str, body: dict[str, Any], *, timeout: float = 5.0) -> str:
        """Keep a delivery of ``body`` to ``url`` on disk (durably); returns its id."""
        self.folder.mkdir(parents=True, exist_ok=True)
        delivery = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        entry = {"id": delivery, "url": url, "timeout": timeout, "body": {**body, "delivery": delivery},
                 "attempts": 0, "next_at": 0.0, "created_at": time.time(), "last_error": None}
        self._write(entry)
        return delivery

    def entries(self) -> list[dict[str, Any]]:
        """Every delivery waiting, oldest first."""
        if not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.glob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                out.append(json.loads(path.read_bytes()))
            except (OSError, ValueError):  # removed by another deliverer meanwhile
                continue
        return out

    def pending(self) -> int:
        return len(self.entries())

    def _write(self, entry: dict[str, Any]) -> None:
        atomic_write(self.folder / f"{entry['id']}.json", json.dumps(entry, sort_keys=True).encode())

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[bool]:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def deliver(self, *, now: float | None = None, budget_s: float | None = None) -> DeliveryResult:
        """Post every delivery that is due; ``budget_s`` stops starting new ones after that many seconds."""
        start = time.monotonic()
        delivered = failed = 0
        with self._exclusive() as mine:
            if not mine:
                return DeliveryResult(0, 0, self.pending())
            for entry in self.entries():
                if budget_s is not None and time.monotonic() - start > budget_s:
                    break
                if entry["next_at"] > (time.time() if now is None else now):
                    continue
                error = post(entry["url"], entry["body"], timeout=float(entry["timeout"]), delivery=entry["id"])
                if error is None:
                    with contextlib.suppress(FileNotFoundError):
                        (self.folder / f"{entry['id']}.json").unlink()
                    delivered += 1
                    continue
                failed += 1
                attempts = entry["attempts"] + 1
                backoff = min(MAX_BACKOFF, BASE_BACKOFF * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)
                self._write({**entry, "attempts": attempts, "next_at": time.time() + backoff,
                             "last_error": error})
        return DeliveryResult(delivered, failed, self.pending())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook's answer is its status: a redirect is not followed (it could lead off http(s))."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: dict[str, Any], *, timeout: float, delivery: str = "") -> str | None:
    """POST ``body`` as JSON; None when answered 2xx, else what went wrong."""
    if not url.lower().startswith(("http://", "https://")):
        return f"not an http(s) URL: {url!r}"
    data = json.dumps(body, sort_keys=True).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "assay-monitor", "X-Assay-Delivery": delivery})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(1 << 16)
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:  # refused, unreachable, timed out
        return f"{type(e).__name__}: {getattr(e, 'reason', e)}"
