"""The ASGI app that serves one model version (FastAPI; routes thin, the work in the modules beside it).

``create_app(repo_path, "digits@champion")`` resolves the version, opens one ONNX Runtime session for this
worker process and returns the app; the batcher and the prediction log start with the app (its lifespan).
Errors have one JSON shape: ``{"error": message, "detail": [...]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from assay.errors import AssayError, BodyInvalid, BodyTooLarge, InputError, KeyRefused, NotServable
from assay.models import ModelVersion, Signature, get, read_artifact
from assay.models import model_lineage as lineage_of
from assay.models.onnx_export import session as onnx_session
from assay.serve import rollout
from assay.serve.asgi import Reply, ServeApp, error_reply, receive_body
from assay.serve.batching import Batcher, Feeds, Item
from assay.serve.deadlines import Deadlines
from assay.serve.keys import KeyStore
from assay.serve.log import DURABILITY, PredictionLog
from assay.serve.metrics import Metrics
from assay.serve.schema import Validator, finite, rows
from assay.serve.shadow import Shadow, check_inputs

MAX_BODY = 1 << 20  # bytes
SWITCH_INTERVAL = 0.0005  # seconds: how long a thread waits for the GIL at most (sys.setswitchinterval)


@dataclass
class Served:
    """A loaded version: its record, its session, and the validator built from its signature."""

    version: ModelVersion
    session: Any
    validator: Validator
    outputs: list[str] = field(default_factory=list)


class Prediction(BaseModel):
    model: str
    version: int
    request_id: str
    prediction: dict[str, Any] | None = None  # for one instance
    predictions: list[dict[str, Any]] | None = None  # for a list of instances


def load_served(repo: Any, spec: str, *, threads: int = 1) -> Served:
    version = get(repo, spec)
    if version.framework != "onnx":
        raise NotServable(f"{version.spec} is a {version.framework} model; assay serve runs ONNX versions: export "
                          f"it first (`assay model export {version.spec}`) and serve the exported version")
    sess = onnx_session(read_artifact(repo, version.spec), threads=threads)
    signature = version.signature
    if not signature.inputs:
        signature = Signature(tuple(_spec(i) for i in sess.get_inputs()), signature.outputs, signature.features,
                              signature.label, signature.classes)
    validator = Validator.build(version.name, signature)
    return Served(version, sess, validator, [o.name for o in sess.get_outputs()])


def _spec(arg: Any) -> Any:
    from assay.models import TensorSpec

    dtype = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
             "tensor(int32)": "int32", "tensor(bool)": "bool", "tensor(string)": "string"}.get(arg.type, "float32")
    return TensorSpec(arg.name, dtype, tuple(d if isinstance(d, int) else None for d in arg.shape))


def _run(served: Served, feeds: Feeds) -> Feeds:
    return dict(zip(served.outputs, served.session.run(served.outputs, feeds), strict=True))


def assay_error_reply(e: AssayError) -> Reply:
    """The answer to a request that failed with ``e``: 401/403 for keys, 422 for a body that does not fit the
    signature, 413 for one too large, 400 for other bad input, else 500."""
    if isinstance(e, KeyRefused):
        return error_reply(e.status, str(e), headers={"WWW-Authenticate": "Bearer"} if e.status == 401 else None)
    if isinstance(e, BodyInvalid):
        return error_reply(422, str(e), e.errors)
    if isinstance(e, BodyTooLarge):
        return error_reply(413, str(e))
    return error_reply(400 if isinstance(e, InputError) else 500, str(e))


def _response(reply: Reply) -> Response:
    """FastAPI's form of a ``Reply``."""
    return Response(reply.body, reply.status, headers=reply.headers, media_type="application/json")


class _Observe:
    """ASGI middleware: counts responses by route and status, and times them."""

    def __init__(self, app: Any, metrics: Metrics, routes: set[str]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"
        start, status = time.perf_counter(), [500]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe(route, status[0], time.perf_counter() - start)


@dataclass
class _State:
    served: Served
    shadow: Shadow | None = None
    batcher: Batcher | None = None
    log: PredictionLog | None = None
    ready: bool = False
    replayed: int = 0
    lineage: dict[str, Any] = field(default_factory=dict)
    rollout_errors: int = 0
    last_rollout_error: str | None = None


def _json(feeds: Feeds, i: int) -> str:
    """JSON of instance ``i`` of a batch's inputs or outputs, straight from the arrays by orjson: a float32 as its
    shortest text (``0.1`` as sent, not the ``0.10000000149011612`` of a float64), half the bytes of ``tolist``
    and a third of its time (the standard library's encoder was a fifth of the server's time: 44 us for a
    98-float output); a non-finite number (an output answered as a 422, but logged) is written as null, as orjson
    does."""
    return orjson.dumps({k: v[i] for k, v in feeds.items()}, option=orjson.OPT_SERIALIZE_NUMPY,
                        default=_plain).decode()


def _plain(value: Any) -> Any:
    """What orjson does not write itself (a string array's item): its Python value."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def request_ids() -> Callable[[], str]:
    """Request ids of 32 hex digits: 16 random ones drawn once per app (each worker, each start) and a counter.
    Unique across workers and restarts as uuid4's are (64 random bits against 122), without reading the
    system's random source for every request; the prediction log keys its rows on them."""
    prefix, counter = secrets.token_hex(8), itertools.count()
    return lambda: f"{prefix}{next(counter):016x}"


def log_rows(items: Sequence[Item], outputs: list[Feeds], model: Served) -> list[dict[str, Any]]:
    """The prediction log's rows of a batch: one per instance (``ID/i`` for the instances of a list)."""
    now, entries = time.time(), []
    name, version = model.version.name, model.version.version
    for item, out in zip(items, outputs, strict=True):
        rid, key_name, t0, many = item.context
        latency = time.perf_counter() - t0
        for i in range(item.rows):
            entries.append({"request_id": f"{rid}/{i}" if many else rid, "time": now, "model": name,
                            "version": version, "key_name": key_name, "latency_s": latency,
                            "inputs": _json(item.feeds, i), "outputs": _json(out, i)})
    return entries


def create_app(repo_path: str | Path, spec: str, *, max_batch: int = 64, max_wait_ms: float = 2.0,
               auth: bool = True, log: bool = True, max_body: int = MAX_BODY, timeout_s: float = 10.0,
               threads: int = 1, flush_rows: int = 10_000, flush_seconds: float = 1.0,
               branch: str | None = None, poll_seconds: float = 2.0, shadow: str | None = None,
               log_durability: str = "sync") -> ServeApp:
    """The app serving ``spec`` (``NAME[@VERSION|@ALIAS]``) of the repository at ``repo_path``; unless ``spec``
    names a version number, the version it names is checked every ``poll_seconds`` (0: never) and swapped in
    when it changes (``assay.serve.rollout``). ``shadow`` names a version that gets a copy of the traffic and
    whose predictions are logged, not returned (``assay.serve.shadow``)."""
    from assay.repo.repository import Repository as Repo

    if log_durability not in DURABILITY:
        raise InputError(f"unknown log durability {log_durability!r}; use one of {', '.join(DURABILITY)}")
    with Repo(repo_path) as repo:
        served = load_served(repo, spec, threads=threads)
        root, assay_dir = repo.root, repo.dir
        lineage = lineage_of(repo, served.version.spec).to_dict()
        shadow_served = load_served(repo, shadow, threads=threads) if shadow else None
    if shadow_served is not None:
        check_inputs(served, shadow_served)
    name = served.version.name
    state = _State(served, lineage=lineage)
    metrics = Metrics(max_batch)
    keys = KeyStore(assay_dir) if auth else None
    deadlines, next_id = Deadlines(timeout_s), request_ids()
    predict_path = f"/v1/models/{name}/predict"

    def after(items: Sequence[Item], outputs: list[Feeds], model: Served) -> None:
        if state.log is not None:
            state.log.append(log_rows(items, outputs, model), wait=False)  # synced by the group commit
        if state.shadow is not None:
            state.shadow.offer(items)

    async def follow() -> None:
        while True:
            await asyncio.sleep(poll_seconds)
            current = state.served.version.version
            try:
                found = await asyncio.to_thread(rollout.changed, root, spec, current, threads=threads)
            except Exception as e:  # the repository is busy or the new version does not load: keep serving
                state.rollout_errors += 1
                state.last_rollout_error = f"{type(e).__name__}: {e}"
                continue
            if found is None:
                continue
            new, state.lineage = found
            state.served = new
            assert state.batcher is not None
            state.batcher.swap(new)
            metrics.model.remove(name, str(current), "primary")
            metrics.model.labels(model=name, version=str(new.version.version), role="primary").set(1)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if log:
            state.log = PredictionLog(root, name, branch=branch, flush_rows=flush_rows, flush_seconds=flush_seconds,
                                      durability=log_durability, commit_process=True)
            state.replayed = await asyncio.to_thread(state.log.start)
        if shadow_served is not None:
            shadow_log = None
            if log:
                shadow_log = PredictionLog(root, f"{name}.shadow", branch=branch, flush_rows=flush_rows,
                                           flush_seconds=flush_seconds, durability="batch", commit_process=True)
                await asyncio.to_thread(shadow_log.start)
            state.shadow = Shadow(shadow_served, shadow_log, log_rows)
            metrics.model.labels(model=shadow_served.version.name, version=str(shadow_served.version.version),
                                 role="shadow").set(1)
        state.batcher = Batcher(_run, served, max_batch=max_batch, max_wait_ms=max_wait_ms, after=after,
                                on_batch=metrics.batch)
        state.batcher.start()
        metrics.watch(lambda: state.batcher.depth if state.batcher else 0,
                      lambda: state.log.pending if state.log else 0, lambda: state.log.errors if state.log else 0,
                      lambda: state.log.syncs if state.log else 0)
        metrics.model.labels(model=name, version=str(served.version.version), role="primary").set(1)
        follower = (asyncio.get_running_loop().create_task(follow()) if poll_seconds > 0 and not rollout.pinned(spec)
                    else None)
        # what was loaded to start (the model, Arrow, the libraries) stays: out of the garbage collector's
        # generations, so that its full collections do not walk it while requests wait
        gc.collect()
        gc.freeze()
        # a thread that waits for the GIL (the group commit's, a batch run in the pool) gets it within 0.5 ms,
        # not the interpreter's 5: at 4,000 req/s the event loop always holds it, and handing it over in 5 ms
        # slices put p99 at 200-400 ms in some runs (13-19 ms with 0.5 ms; bench_serve's digits model)
        switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            if follower is not None:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
            await state.batcher.stop()
            if state.shadow is not None:
                await asyncio.to_thread(state.shadow.close)
                if state.shadow.log is not None:
                    await asyncio.to_thread(state.shadow.log.close)
            if state.log is not None:
                await asyncio.to_thread(state.log.close)
            if keys is not None:
                keys.close()
            sys.setswitchinterval(switch)

    app = ServeApp(title=f"assay serve: {name}", version=str(served.version.version), lifespan=lifespan)
    app.state.assay = state
    app.state.metrics = metrics  # for layers above that add their own gauges (assay.monitor.serving)
    instance = served.validator.model
    body_schema = {"oneOf": [{"$ref": f"#/components/schemas/{instance.__name__}"},
                             {"type": "array", "minItems": 1,
                              "items": {"$ref": f"#/components/schemas/{instance.__name__}"}}]}

    @app.exception_handler(AssayError)
    async def _assay_error(_: Request, e: AssayError) -> Response:
        return _response(assay_error_reply(e))

    async def respond(authorization: str | None, read: Callable[[], Awaitable[bytes]]) -> Reply:
        """The answer to a predict request: both of its paths (``ServeApp``'s own and FastAPI's) come here."""
        t0 = time.perf_counter()
        try:
            key_name = keys.check(name, authorization) if keys is not None else ""
            try:
                async with deadlines.limit():
                    body = await read()
            except TimeoutError:
                return error_reply(408, f"the body did not arrive within {timeout_s} s")
            feeds, many = state.served.validator.parse(body)
        except AssayError as e:
            return assay_error_reply(e)
        count = len(next(iter(feeds.values())))
        rid = next_id()
        if state.batcher is None:
            return error_reply(503, "the server is starting; try again")
        try:
            async with deadlines.limit():
                out, model = await state.batcher.submit(feeds, count, (rid, key_name, t0, many))
                if state.log is not None:
                    await state.log.durable()  # the group commit: its rows are on disk before it is answered
        except TimeoutError:
            return error_reply(504, f"the model did not answer within {timeout_s} s; try again")
        if not finite(out):
            return error_reply(422, "the model's output for this input is not a finite number (an input far "
                                    "outside the range the model was trained on overflowed); send inputs in "
                                    "that range")
        values = rows(out, count)
        answer: dict[str, Any] = {"model": name, "version": model.version.version, "request_id": rid}
        answer.update({"predictions": values} if many else {"prediction": values[0]})
        return Reply(200, orjson.dumps(answer), {"X-Request-Id": rid})

    @app.post(predict_path, response_model=Prediction, summary=f"Predict with {name}",
              openapi_extra={"requestBody": {"required": True,
                                             "content": {"application/json": {"schema": body_schema}}},
                             "responses": {"422": {"description": "The body does not fit the signature"},
                                           "401": {"description": "No API key"},
                                           "403": {"description": "A revoked key, or another model's"},
                                           "408": {"description": "The body did not arrive in time"},
                                           "413": {"description": "The body is too large"},
                                           "503": {"description": "The server is starting"},
                                           "504": {"description": "The model did not answer in time"}}})
    async def predict(request: Request) -> Any:
        """FastAPI's path to ``respond`` (``ServeApp`` answers POST there itself; this one is the schema's)."""
        return _response(await respond(request.headers.get("authorization"),
                                       lambda: receive_body(request.scope, request.receive, max_body)))

    @app.get("/v1/models")
    async def models() -> Any:
        v = state.served.version
        return {"models": [{"name": v.name, "version": v.version, "spec": v.spec, "framework": v.framework,
                            "signature": state.served.validator.signature.to_dict(), "lineage": state.lineage,
                            "predict": predict_path, "auth": keys is not None,
                            "log": state.log.dataset if state.log else None,
                            "shadow": shadow_info()}]}

    def shadow_info() -> dict[str, Any] | None:
        sh = state.shadow
        if sh is None:
            return None
        return {"spec": sh.served.version.spec, "log": sh.log.dataset if sh.log else None, "dropped": sh.dropped,
                "errors": sh.errors}

    @app.get("/healthz")
    async def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Any:
        if not state.ready:
            return _response(error_reply(503, "not ready: the model or the prediction log is still loading"))
        return {"status": "ready", "model": state.served.version.spec}

    @app.get("/metrics", response_class=PlainTextResponse,
             responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}})
    async def metrics_route() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            defs = instance.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(defs.pop("$defs", {}))
            components[instance.__name__] = defs
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(_Observe, metrics=metrics, routes={predict_path, "/v1/models", "/healthz", "/readyz",
                                                          "/metrics"})
    app.serve_predict(predict_path, respond, metrics.observe, max_body)
    return app


CONFIG_ENV = "ASSAY_SERVE_CONFIG"


def app_from_env() -> ServeApp:
    """The app that ``$ASSAY_SERVE_CONFIG`` (JSON: ``repo``, ``spec`` and create_app's keywords) describes: how
    each uvicorn worker process builds its own app, with its own ONNX Runtime session."""
    import os

    try:
        config = json.loads(os.environ[CONFIG_ENV])
    except (KeyError, ValueError) as e:
        raise InputError(f"${CONFIG_ENV} must hold the server's configuration as JSON; start it with `assay "
                         "serve`") from e
    return create_app(config.pop("repo"), config.pop("spec"), **config)
