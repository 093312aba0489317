"""Public names loaded when first used (PEP 562): a package lists where each name lives, and importing the
package costs nothing until a name is read. ``assay``, ``assay.table`` and ``assay.models`` use it, so that a
command line that needs only the repository does not pay for Arrow, NumPy or the layers it does not run."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, homes: Mapping[str, tuple[str, str]], namespace: dict[str, Any]
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: ``homes`` maps a public name to (module, name there);
    a name read once is kept in ``namespace`` (the package's globals), so the module is imported once."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home[0]), home[1])
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(homes))

    return __getattr__, __dir__


def by_module(modules: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, str]]:
    """``{module: (names...)}`` as ``{name: (module, name)}``, for names that keep their names."""
    return {name: (module, name) for module, names in modules.items() for name in names}
