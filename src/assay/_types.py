"""Types shared by every layer (this module imports nothing from assay).

``Progress`` is how the library reports progress: ``progress(stage, done, total)``, called from the thread
that does the work (or that gathers the results); the CLI turns it into progress bars. ``total`` is 0 when it
is not known yet.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]

__all__ = ["Progress"]
