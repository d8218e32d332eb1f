"""The ``supplychain`` command line."""

from supplychain.cli.main import main

__all__ = ["main"]
