"""Untrusted JSON: a document must be an object; any failure raises the caller's error type.

The implementation is :func:`registry_hooks.untrusted.json_object` (duplicate keys, NaN and deep
nesting are refused there), shared so that webhooks, manifests and tool output are read alike.
"""

from __future__ import annotations

from registry_hooks.untrusted import json_object

__all__ = ["json_object"]
