"""The HTTP API: webhook intake, the gate, audit queries, health and metrics."""

from supplychain.api.app import create_app

__all__ = ["create_app"]
