"""Engines: where work runs. One protocol, ``Engine.map(fn, items)``; in-process (threads) by default, Ray for a
cluster (``RayEngine``, the ``ray`` extra); ``open_engine("ray:HOST:PORT")`` from the text users write.

The lowest layer: it imports no other layer of assay (only ``assay._types`` and ``assay.errors``; Ray itself when
a Ray engine first runs). Higher layers take an optional ``engine=`` keyword and pass it down; ``None`` means
:func:`default_engine`.
"""

from assay.engines.base import Engine, InProcessEngine, default_engine
from assay.engines.ray import RayEngine
from assay.engines.urls import engine_from_env, open_engine

__all__ = ["Engine", "InProcessEngine", "RayEngine", "default_engine", "engine_from_env", "open_engine"]
