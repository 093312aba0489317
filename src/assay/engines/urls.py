"""Engines from a short text, as users write them: ``--engine ray:HOST:PORT``, ``ASSAY_ENGINE=ray``.

========================  =====================================================================================
``inprocess``             two threads of this process (the default); ``inprocess:N`` for N threads
``ray``                   Ray: the cluster in ``RAY_ADDRESS`` if set, else a local Ray started for this process
``ray:auto``              the Ray cluster started on this machine with ``ray start``
``ray:HOST:PORT``         the Ray cluster whose head's GCS listens at HOST:PORT (``ray start --head --port``)
``ray://HOST:PORT``       the Ray cluster through the Ray client (its client server, port 10001 by default)
========================  =====================================================================================
"""

from __future__ import annotations

import os

from assay.engines.base import Engine, InProcessEngine
from assay.errors import InputError

ENV = "ASSAY_ENGINE"
FORMS = "inprocess, inprocess:THREADS, ray, ray:auto, ray:HOST:PORT or ray://HOST:PORT"


def open_engine(url: str | None) -> Engine:
    """The engine that ``url`` names (see the module docstring); ``None`` or ``""``: the in-process default."""
    text = (url or "").strip()
    scheme, _, rest = text.partition(":")
    scheme = scheme.lower()
    if scheme in ("", "inprocess", "threads"):
        return InProcessEngine(_threads(text, rest) if rest else 2)
    if scheme == "ray":
        from assay.engines.ray import RayEngine

        address = rest or None
        if address is not None and address.startswith("//"):
            address = "ray:" + address  # ray://HOST:PORT: the Ray client
        return RayEngine(address)
    raise InputError(f"unknown engine {text!r}; an engine is {FORMS}")


def engine_from_env() -> Engine:
    """The engine named by ``ASSAY_ENGINE`` (the in-process default when it is not set)."""
    return open_engine(os.environ.get(ENV))


def _threads(text: str, rest: str) -> int:
    try:
        return int(rest)
    except ValueError:
        raise InputError(f"engine {text!r}: the number of threads must be a whole number (e.g. inprocess:4)") from None
