"""Every cataloger module in this package, imported so that each registers itself.

Adding a cataloger is adding a module here that decorates its class with
:func:`sbom.interface.register`; modules whose name starts with ``_`` are helpers.
"""

from __future__ import annotations

import importlib
import pkgutil

from sbom.interface import CATALOGERS

__all__ = ["CATALOGERS"]

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
