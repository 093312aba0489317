"""The predict route's own ASGI path, beside FastAPI's.

Every request to a served model goes through FastAPI's router, its exception middleware, a ``Request`` object
and a task for each timeout: about 100 us of a worker's CPU per request, more than the digits model's call, its
validation and its JSON together (about 35 us). ``ServeApp`` is the FastAPI app, and answers ``POST`` on the
predict path itself, straight from the ASGI messages; every other request (the predict path's other methods
included, and the OpenAPI schema, which still lists the route) goes to FastAPI as before. Both ways end in the
same function (``Reply`` from ``create_app``'s ``respond``), so a request gets the same answer either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.requests import ClientDisconnect

from assay.errors import BodyTooLarge

log = logging.getLogger("assay.serve")


@dataclass
class Reply:
    """An answer: status, JSON body, and extra headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(status: int, message: str, detail: Any = None, headers: dict[str, str] | None = None) -> Reply:
    """The one shape of an error: ``{"error": message, "detail": [...]}``."""
    return Reply(status, orjson.dumps({"error": message, "detail": detail if detail is not None else []}),
                 headers or {})


def header(scope: MutableMapping[str, Any], name: bytes) -> str | None:
    """A request header (``name`` in lower case, as ASGI gives them), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def receive_body(scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
                       limit: int) -> bytes:
    """The body, or BodyTooLarge as soon as it is known to pass ``limit`` bytes (the declared length first)."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body has {declared} bytes; this server takes at most {limit}")
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect  # Starlette's, as its Request.stream raises it
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body passes {limit} bytes, the most this server takes")
        parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


Respond = Callable[[str | None, Callable[[], Awaitable[bytes]]], Awaitable[Reply]]


class ServeApp(FastAPI):
    """FastAPI, with ``POST predict_path`` answered by ``respond`` straight from the ASGI messages.

    ``observe(route, status, seconds)`` counts and times each answer there (FastAPI's routes are observed by the
    middleware ``create_app`` adds)."""

    def serve_predict(self, path: str, respond: Respond, observe: Callable[[str, int, float], None],
                      max_body: int) -> None:
        self._predict = (path, respond, observe, max_body)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        fast = getattr(self, "_predict", None)
        if fast is None or scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != fast[0]:
            await super().__call__(scope, receive, send)
            return
        path, respond, observe, max_body = fast
        start, status = time.perf_counter(), 500
        try:
            try:
                reply = await respond(header(scope, b"authorization"), lambda: receive_body(scope, receive, max_body))
            except ClientDisconnect:
                status = 499  # nginx's code for a client that closed the connection first; nothing is sent
                return
            except Exception:
                log.exception("the predict route failed")
                reply = error_reply(500, "the server failed on this request; see its log")
            status = reply.status
            await send({"type": "http.response.start", "status": status, "headers": _headers(reply)})
            await send({"type": "http.response.body", "body": reply.body})
        finally:
            observe(path, status, time.perf_counter() - start)


def _headers(reply: Reply) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(reply.body)).encode())]
    headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items())
    return headers
