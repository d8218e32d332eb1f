"""The ``supplychain`` command line (:func:`main`; the program starts in :mod:`.entry`)."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supplychain.cli.main import main

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    """``main``, imported on first use: :mod:`.entry` runs before the command line loads."""
    if name == "main":
        from supplychain.cli.main import main

        return main
    raise AttributeError(f"module 'supplychain.cli' has no attribute {name!r}")
