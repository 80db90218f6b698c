"""Lazy exports for a package's `__init__.py` (PEP 562).

A package such as `returnbridge.connectors.centra` exports both pure data modules (models,
inputs, errors) and I/O parts (the HTTP client, the transport). Importing a pure module runs the
package's `__init__.py` first, so an eager re-export of the client would load httpx into anything
that only wanted a model: `core/` included, which must stay free of I/O
(docs/architecture.md#rooms-and-imports). `lazy_exports` gives the package a module
`__getattr__` that imports such a name from its module on first use, then keeps it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `names` maps an exported name to the module that
    defines it; any other name is an AttributeError, as for a plain module."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
