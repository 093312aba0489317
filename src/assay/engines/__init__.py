"""Engines: where work runs. One protocol, ``Engine.map(fn, items)``; in-process (threads) by default.

The lowest layer: it imports no other layer of assay (only ``assay._types``). Higher layers take an optional
``engine=`` keyword and pass it down; ``None`` means :func:`default_engine`.
"""

from assay.engines.base import Engine, InProcessEngine, default_engine

__all__ = ["Engine", "InProcessEngine", "default_engine"]
