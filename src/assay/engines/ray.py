"""The Ray engine: ``Engine.map`` as Ray tasks on a cluster (``pip install 'assay[ray]'``).

Each item is one Ray task (one CPU each, by default); ``fn`` is pickled once per ``map`` (cloudpickle), put in
Ray's object store and unpickled once per worker process. The contract of :mod:`assay.engines.base` holds:

* results come back in the order of ``items``, at most ``window`` tasks in flight (default: twice the cluster's
  CPUs), and ``progress`` is called in the caller's thread as results are taken;
* an exception raised by ``fn`` on a worker is raised here as the same class (an ``ObjectNotFound`` stays an
  ``ObjectNotFound``), its message naming the task, the item and the node it ran on, the worker's traceback
  kept as a note; the tasks in flight are cancelled and no further item is sent. A task that dies without an
  exception (its worker killed) or an exception that cannot be sent back is an ``EngineError``;
* what workers read comes from the repository's store, which pickles as its URL (``file://``, ``s3://``): each
  worker opens the store itself, and no object travels through this process. A store without a URL (in
  memory) refuses to be pickled (``NotPortable``), so it is never copied silently. A ``file://`` store works on
  a cluster whose nodes share that folder (the nodes of one machine, a shared file system); a cluster of
  several machines needs a store on S3.

Every node must be able to import the same assay (install it on every node, or start them with the same
environment). ``engine.nodes`` counts the tasks each node ran, by node id.
"""

from __future__ import annotations

import os
import reprlib
import threading
import traceback
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any, TypeVar

from assay._types import Progress
from assay.engines.base import Engine, _reporting
from assay.errors import AssayError, EngineError, InputError, MissingExtra

T = TypeVar("T")
R = TypeVar("R")

INSTALL_HINT = "the Ray engine needs Ray: pip install 'assay[ray]'"
_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxlevel = 60, 60, 4, 4, 4, 2
_describe = _REPR.repr


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise MissingExtra(INSTALL_HINT) from e
    return ray


class RayEngine(Engine):
    """Runs ``fn`` as Ray tasks on the cluster at ``address``.

    ``address``: ``None`` connects to the cluster in ``RAY_ADDRESS`` if set, else starts a local Ray on this
    machine (stopped by :meth:`close` or at exit); ``"auto"`` the cluster started on this machine by
    ``ray start``; ``"HOST:PORT"`` a cluster's head (its GCS port); ``"ray://HOST:PORT"`` through the Ray client.
    If this process is connected to Ray already, that connection is used. ``num_cpus`` is what each task
    reserves; ``window`` how many tasks may be in flight (default: twice what the cluster's CPUs hold).
    """

    def __init__(self, address: str | None = None, *, num_cpus: float = 1, window: int | None = None) -> None:
        if num_cpus <= 0 or (window is not None and window < 1):
            raise InputError(f"a Ray engine needs tasks of more than 0 CPUs and a window of at least one item "
                             f"(got num_cpus={num_cpus}, window={window}); pass positive numbers")
        self.address = address
        self.num_cpus = num_cpus
        self.window = window
        self.nodes: Counter[str] = Counter()  # tasks run per node id, over this engine's life
        self._connected = False  # whether this engine connected this process to Ray (then close() disconnects)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RayEngine(address={self.address!r}, num_cpus={self.num_cpus}, window={self.window})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # a worker handed the engine connects on its own
        return _reopen, (self.address, self.num_cpus, self.window)

    def connect(self) -> RayEngine:
        """Connect to the cluster now (``map`` does it when first called); returns the engine."""
        ray = _ray()
        with self._lock:
            if not ray.is_initialized():
                _init(ray, self.address)
                self._connected = True
        return self

    def close(self) -> None:
        """Disconnect this process from Ray if this engine connected it (a local Ray it started stops); a
        connection made by someone else is left as it is."""
        with self._lock:
            if self._connected:
                ray = _ray()
                if ray.is_initialized():
                    ray.shutdown()
            self._connected = False

    def __enter__(self) -> RayEngine:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, progress: Progress | None = None,
            stage: str | None = None, total: int | None = None) -> Iterator[R]:
        known = len(items) if isinstance(items, Sized) else (total or 0)
        return _reporting(self._run(fn, items, stage or "working"), progress, stage or "working", known)

    def _run(self, fn: Callable[[T], R], items: Iterable[T], stage: str) -> Iterator[R]:
        self.connect()
        ray = _ray()
        fn_ref = ray.put(_pickled(fn))
        # SPREAD: the tasks of one map go to every node rather than filling the first (data-parallel work)
        task = _remote(ray).options(num_cpus=self.num_cpus, scheduling_strategy="SPREAD")
        window = self.window or max(1, 2 * int(ray.cluster_resources().get("CPU", 1) // self.num_cpus))
        key = uuid.uuid4().hex
        pending: deque[tuple[int, Any, Any]] = deque()
        try:
            for index, item in enumerate(items):
                pending.append((index, item, _submit(task, key, fn_ref, index, item)))
                while len(pending) >= window:
                    yield self._take(ray, pending.popleft(), stage)
            while pending:
                yield self._take(ray, pending.popleft(), stage)
        finally:  # an error, or the caller stopped early: cancel what is in flight
            _cancel(ray, [ref for _, _, ref in pending])

    def _take(self, ray: Any, entry: tuple[int, Any, Any], stage: str) -> Any:
        index, item, ref = entry
        try:
            ok, value, node, trace = ray.get(ref)
        except ray.exceptions.RayError as e:
            raise EngineError(f"task {index + 1} of {stage} ({_describe(item)}) failed on the Ray cluster: "
                              f"{type(e).__name__}: {_first_line(e)}; check that the nodes are alive (`ray status`) "
                              "and can import assay") from e
        self.nodes[node] += 1
        if ok:
            return value
        raise _named(value, f"task {index + 1} of {stage}, item {_describe(item)}, on node {node[:12]}", trace)


def _cancel(ray: Any, refs: list[Any], rounds: int = 3, wait_s: float = 1.0) -> None:
    """Cancel ``refs`` until they are done: a cancel that reaches a task while its arguments are still being
    fetched can be lost, so the ones still running after ``wait_s`` are cancelled again, the last time by
    killing their worker (the store's writes are atomic: a killed write leaves nothing behind)."""
    for attempt in range(rounds):
        if not refs:
            return
        for ref in refs:
            ray.cancel(ref, force=attempt == rounds - 1)
        _, refs = ray.wait(refs, num_returns=len(refs), timeout=wait_s)


def _reopen(address: str | None, num_cpus: float, window: int | None) -> RayEngine:
    return RayEngine(address, num_cpus=num_cpus, window=window)


def _init(ray: Any, address: str | None) -> None:
    kwargs: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False  # a local Ray of this process: no dashboard server
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise EngineError(f"cannot connect to the Ray cluster at {address!r}: {_first_line(e)}; start it with "
                          "`ray start --head`, or give the head's address (HOST:PORT, or ray://HOST:PORT for the "
                          "Ray client)") from e


def _pickled(fn: Callable[..., Any]) -> bytes:
    from ray import cloudpickle

    try:
        return bytes(cloudpickle.dumps(fn))  # type: ignore[no-untyped-call]
    except AssayError:
        raise  # a store that cannot travel says so itself (NotPortable)
    except Exception as e:
        raise EngineError(f"the function given to the Ray engine cannot be pickled ({type(e).__name__}: "
                          f"{_first_line(e)}); it and what it holds must be picklable: open files, locks and "
                          "connections are not, a store is (as its URL)") from e


def _submit(task: Any, key: str, fn_ref: Any, index: int, item: Any) -> Any:
    try:
        return task.remote(key, fn_ref, item)
    except AssayError:
        raise
    except Exception as e:
        cause = _assay_cause(e)
        if cause is not None:
            raise cause from e
        raise EngineError(f"item {index + 1} ({_describe(item)}) cannot be sent to the Ray cluster "
                          f"({type(e).__name__}: {_first_line(e)}); items must be picklable") from e


def _assay_cause(e: BaseException) -> AssayError | None:
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, AssayError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _named(e: BaseException, where: str, trace: str) -> BaseException:
    """``e`` again, of the same class, with ``where`` in its message and the worker's traceback as a note."""
    message = f"{e} ({where})" if not isinstance(e, KeyError) else f"{e.args[0] if e.args else e} ({where})"
    try:
        named = type(e)(message)
        named.__dict__.update({k: v for k, v in e.__dict__.items() if k not in named.__dict__})
        if where not in str(named):
            raise TypeError("the message did not take")
    except Exception:
        named = e
        named.add_note(f"raised in {where}")
    named.add_note(f"on the Ray worker:\n{trace}")
    named.__cause__ = e if named is not e else None
    return named


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# -- on the workers ------------------------------------------------------------------------------------------

_TASK: Any = None
_FUNCTIONS: OrderedDict[str, Callable[[Any], Any]] = OrderedDict()  # per worker process: fn of recent maps
_KEEP = 8


def _remote(ray: Any) -> Any:
    global _TASK
    if _TASK is None:
        _TASK = ray.remote(max_retries=0)(_task)
    return _TASK


def _task(key: str, fn_bytes: bytes, item: Any) -> tuple[bool, Any, str, str]:
    """One item on a worker: ``(True, result, node, "")`` or ``(False, exception, node, traceback)``."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    try:
        return True, _function(key, fn_bytes)(item), node, ""
    except Exception as e:
        return False, _portable(e), node, traceback.format_exc()


def _function(key: str, fn_bytes: bytes) -> Callable[[Any], Any]:
    fn = _FUNCTIONS.get(key)
    if fn is None:
        from ray import cloudpickle

        fn = _FUNCTIONS[key] = cloudpickle.loads(fn_bytes)
        while len(_FUNCTIONS) > _KEEP:
            _FUNCTIONS.popitem(last=False)
    return fn


def _portable(e: Exception) -> Exception:
    """``e`` if it survives a round trip through pickle, else an EngineError that says what it was."""
    from ray import cloudpickle

    try:
        back = cloudpickle.loads(cloudpickle.dumps(e))  # type: ignore[no-untyped-call]
        if type(back) is type(e):
            return e
    except Exception:
        pass
    return EngineError(f"{type(e).__module__}.{type(e).__qualname__}: {e}")
