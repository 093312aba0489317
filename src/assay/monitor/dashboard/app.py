"""The dashboard's ASGI app: one static page and a read-only JSON API over ``assay.monitor.dashboard.views``.

Only GET and HEAD are answered; any other method gets 405, on every path. Each request opens the repository,
reads, and closes it, so the page shows what is committed now (the server's log included). Errors come back
as ``{"error": "..."}`` with 400 (bad input) or 404 (nothing of that name).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from assay.errors import AssayError, InputError, ObjectNotFound, RefNotFound
from assay.monitor.dashboard import views

STATIC = Path(__file__).parent / "static"
READ_METHODS = ("GET", "HEAD")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
HEADERS = {"Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


class ReadOnly:
    """ASGI middleware: 405 for any method but GET and HEAD, whatever the path; the security headers on every
    answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in READ_METHODS:
            answer = JSONResponse({"error": f"the dashboard is read-only: {scope['method']} is refused; use GET"},
                                  status_code=405, headers={"Allow": ", ".join(READ_METHODS), **HEADERS})
            await answer(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *((k.lower().encode(), v.encode())
                                                              for k, v in HEADERS.items())]
            await send(message)

        await self.app(scope, receive, with_headers)


Handler = Callable[[Any, Request], Any]


def _endpoint(root: Path, fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A route that opens the repository at ``root``, calls ``fn(repo, request)`` in a worker thread and answers
    its result as JSON (AssayErrors as ``{"error": ...}``)."""
    from assay.repo.repository import Repository

    def call(request: Request) -> Any:
        with Repository(root) as repo:
            return fn(repo, request)

    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await run_in_threadpool(call, request))
        except (RefNotFound, ObjectNotFound) as e:
            return JSONResponse({"error": str(e.args[0]) if e.args else str(e)}, status_code=404)
        except AssayError as e:
            return JSONResponse({"error": str(e)}, status_code=400)

    return endpoint


def _int(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{name}={text!r} is not a whole number") from None


def _window(request: Request) -> str | None:
    return views.check_window(request.query_params.get("window"))


def _routes() -> dict[str, Handler]:
    q = "query_params"
    return {
        "/api/overview": lambda repo, r: views.overview(repo),
        "/api/datasets": lambda repo, r: views.datasets(repo),
        "/api/datasets/{name:path}": lambda repo, r: views.dataset(repo, r.path_params["name"]),
        "/api/commits": lambda repo, r: views.commits(repo, limit=_int(r, "limit", 200)),
        "/api/models": lambda repo, r: views.models(repo),
        "/api/models/{name}": lambda repo, r: views.model(repo, r.path_params["name"],
                                                         version=getattr(r, q).get("version")),
        "/api/models/{name}/serving": lambda repo, r: views.serving(repo, r.path_params["name"], window=_window(r)),
        "/api/models/{name}/drift": lambda repo, r: views.drift(
            repo, r.path_params["name"], window=_window(r), reference=getattr(r, q).get("reference"),
            last=_int(r, "windows", views.SERIES_WINDOWS)),
        "/api/models/{name}/performance": lambda repo, r: views.performance(
            repo, r.path_params["name"], window=_window(r), last=_int(r, "windows", views.SERIES_WINDOWS)),
        "/api/models/{name}/alerts": lambda repo, r: views.alerts(repo, r.path_params["name"]),
        "/api/models/{name}/alerts/{id}": lambda repo, r: views.alert(repo, r.path_params["name"],
                                                                      r.path_params["id"]),
        "/api/models/{name}/explain": lambda repo, r: views.explain(
            repo, r.path_params["name"], alert=getattr(r, q).get("alert"), feature=getattr(r, q).get("feature"),
            metric=getattr(r, q).get("metric"), slice_rank=_int(r, "slice", 1)),
    }


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


def create_app(root: str | Path, *, host: str = "127.0.0.1") -> Starlette:
    """The dashboard of the repository at ``root`` (or a parent folder). ``host`` is the address it is served
    on: bound to this machine, it answers only requests that name this machine (no DNS rebinding)."""
    from assay.repo.repository import Repository

    with Repository(root) as repo:  # not a repository: the error now, not on the first request
        folder = repo.root
    routes: list[Route | Mount] = [Route("/", _index, methods=list(READ_METHODS))]
    routes += [Route(path, _endpoint(folder, fn), methods=list(READ_METHODS)) for path, fn in _routes().items()]
    routes.append(Mount("/static", app=StaticFiles(directory=STATIC), name="static"))
    middleware = [Middleware(ReadOnly)]
    if host in LOOPBACK:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"]))
    return Starlette(routes=routes, middleware=middleware)
