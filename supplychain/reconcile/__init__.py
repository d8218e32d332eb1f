"""Nothing missed: list the allowlisted registries and queue every digest never seen.

:class:`Reconciler` runs one pass (``supplychain reconcile``); :class:`ReconcileTimer` runs them
in ``serve`` every ``SUPPLYCHAIN_RECONCILE_SECONDS``. See :mod:`supplychain.reconcile.run`.
"""

from __future__ import annotations

from supplychain.reconcile.run import Reconciler, ReconcileReport, RegistryPass
from supplychain.reconcile.timer import ReconcileTimer, summary

__all__ = ["ReconcileReport", "ReconcileTimer", "Reconciler", "RegistryPass", "summary"]
