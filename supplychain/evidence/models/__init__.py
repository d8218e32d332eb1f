"""SQLAlchemy 2 models: the durable record of everything the service saw, did and decided.

The same models run on SQLite (embedded default) and PostgreSQL. Times are stored in UTC and
read back timezone-aware. The audit log is append-only: the migration installs triggers that
refuse UPDATE and DELETE on it.

One module per group of tables (:mod:`.intake`, :mod:`.facts`, :mod:`.audit`), all importable
from here; importing this package defines every table on ``Base.metadata``.
"""

from supplychain.evidence.models.audit import ApiToken, AuditEntry, LogCheckpoint, LogLeaf, Waiver
from supplychain.evidence.models.base import NAMING, Base, Digest, UTCDateTime, utcnow
from supplychain.evidence.models.facts import (
    Attestation,
    Component,
    Finding,
    Payload,
    Scan,
    Signature,
    Verdict,
    VerdictChange,
    VexStatement,
    VulnDatabase,
)
from supplychain.evidence.models.intake import (
    Image,
    IndexEntry,
    Job,
    JobClaim,
    JobFailure,
    SeenEvent,
    TagEvent,
    WebhookDelivery,
)

__all__ = [
    "NAMING",
    "ApiToken",
    "Attestation",
    "AuditEntry",
    "Base",
    "Component",
    "Digest",
    "Finding",
    "Image",
    "IndexEntry",
    "Job",
    "JobClaim",
    "JobFailure",
    "LogCheckpoint",
    "LogLeaf",
    "Payload",
    "Scan",
    "SeenEvent",
    "Signature",
    "TagEvent",
    "UTCDateTime",
    "Verdict",
    "VerdictChange",
    "VexStatement",
    "VulnDatabase",
    "Waiver",
    "WebhookDelivery",
    "utcnow",
]
