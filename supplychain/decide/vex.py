"""VEX: OpenVEX and CycloneDX VEX statements that mark findings, never delete them.

A statement says a vulnerability (by id or alias) of a product (an image, named by its digest, as
``pkg:oci/…@sha256%3A…`` in OpenVEX, or by the ``--image`` the document was uploaded for),
optionally in one subcomponent (a package URL), is ``not_affected`` (``affected``, ``fixed``,
``under_investigation``). Statements are stored whole, once per document digest; findings are
never changed in the database: the decision (:mod:`supplychain.decide.decision`) matches the
statements to the findings (:func:`match_vex`) each time it decides, so uploaded and attested VEX
are matched the same way, by id or alias, everywhere. CycloneDX analysis
states map to OpenVEX statuses (``false_positive`` → ``not_affected``, ``exploitable`` →
``affected``, ``resolved`` → ``fixed``, ``in_triage`` → ``under_investigation``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

from sqlalchemy import select
from sqlalchemy.orm import Session

from supplychain.evidence import models
from supplychain.interface import Finding

__all__ = ["VexError", "VexStatement", "match_vex", "parse_vex", "record_vex", "same_package"]

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CDX_STATES = {
    "not_affected": "not_affected",
    "false_positive": "not_affected",
    "exploitable": "affected",
    "resolved": "fixed",
    "resolved_with_pedigree": "fixed",
    "in_triage": "under_investigation",
}
_OPENVEX_STATES = {"not_affected", "affected", "fixed", "under_investigation"}


class VexError(Exception):
    """A VEX document could not be read."""


@dataclass(frozen=True)
class VexStatement:
    """One (vulnerability, product, subcomponent) statement of a VEX document."""

    vuln_id: str
    """The vulnerability id the statement names (aliases become statements of their own)."""
    product: str
    """The image digest (``sha256:…``) when one could be read, else the product id as written."""
    subcomponent: str | None
    """Package URL of the package inside the product, or None for the whole product."""
    status: str
    """OpenVEX status: not_affected, affected, fixed or under_investigation."""
    justification: str | None
    """Justification and impact statement or detail, as written."""
    statement: dict[str, Any]
    """The source statement, stored whole."""


def _product(identifier: str, default: str | None) -> str:
    found = _DIGEST.search(unquote(identifier))
    return found.group(0) if found else (default or identifier)


def _ids(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        names = [value.get("name") or value.get("@id"), *(value.get("aliases") or [])]
        return [str(n) for n in names if n]
    raise VexError("a statement has no vulnerability")


def _openvex(doc: dict[str, Any], image: str | None) -> list[VexStatement]:
    out: list[VexStatement] = []
    for stmt in doc.get("statements") or []:
        status = str(stmt.get("status", ""))
        if status not in _OPENVEX_STATES:
            raise VexError(f"OpenVEX status {status!r} is not one of {sorted(_OPENVEX_STATES)}")
        note = " — ".join(
            str(stmt[k]) for k in ("justification", "impact_statement") if stmt.get(k)
        )
        products = stmt.get("products") or ([image] if image else [])
        for product in products:
            pid = product.get("@id", "") if isinstance(product, dict) else str(product)
            subs = product.get("subcomponents", []) if isinstance(product, dict) else []
            subs = subs or stmt.get("subcomponents") or [None]
            for sub in subs:
                sid = sub.get("@id") if isinstance(sub, dict) else sub
                for vuln in _ids(stmt.get("vulnerability")):
                    out.append(
                        VexStatement(vuln, _product(pid, image), sid, status, note or None, stmt)
                    )
    return out


def _cyclonedx(doc: dict[str, Any], image: str | None) -> list[VexStatement]:
    if image is None:
        raise VexError("a CycloneDX VEX names no image: upload it for one (--image)")
    out: list[VexStatement] = []
    for vuln in doc.get("vulnerabilities") or []:
        analysis = vuln.get("analysis") or {}
        state = str(analysis.get("state", ""))
        if state not in _CDX_STATES:
            raise VexError(f"CycloneDX analysis state {state!r} is not a VEX state")
        note = " — ".join(str(analysis[k]) for k in ("justification", "detail") if analysis.get(k))
        ids = [str(vuln.get("id", ""))] + [
            str(r.get("id")) for r in vuln.get("references") or [] if isinstance(r, dict)
        ]
        for affects in vuln.get("affects") or [{"ref": None}]:
            ref = affects.get("ref")
            sub = ref.split("#", 1)[-1] if isinstance(ref, str) else None
            for vid in filter(None, ids):
                out.append(VexStatement(vid, image, sub, _CDX_STATES[state], note or None, vuln))
    return out


def parse_vex(data: bytes, *, image: str | None = None) -> tuple[str, list[VexStatement]]:
    """``(format, statements)`` of an OpenVEX or CycloneDX VEX document."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise VexError("VEX document is not JSON") from None
    if not isinstance(doc, dict):
        raise VexError("VEX document is not a JSON object")
    try:
        if "openvex" in str(doc.get("@context", "")):
            return "openvex", _openvex(doc, image)
        if doc.get("bomFormat") == "CycloneDX":
            return "cyclonedx", _cyclonedx(doc, image)
    except (AttributeError, TypeError) as exc:
        raise VexError(f"malformed VEX statement: {exc}") from None
    raise VexError("neither OpenVEX (@context) nor CycloneDX (bomFormat)")


def record_vex(
    session: Session,
    data: bytes,
    *,
    source: str,
    image: str | None = None,
    only_product: str | None = None,
) -> int:
    """Store a document's statements once per (document digest, product); statements added.

    Storing the same document again adds nothing, so the order of statements (the newest
    matching one wins) never changes behind the decision's back. ``only_product`` keeps just the
    statements about that image: an attestation speaks for the image it is attached to only.
    """
    fmt, statements = parse_vex(data, image=image)
    if only_product is not None:
        statements = [s for s in statements if s.product == only_product]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    known = set(
        session.scalars(
            select(models.VexStatement.product).where(models.VexStatement.document_digest == digest)
        ).all()
    )
    added = [s for s in statements if s.product not in known]
    session.add_all(
        models.VexStatement(
            document_digest=digest,
            format=fmt,
            source=source,
            vuln_id=s.vuln_id[:128],
            product=s.product,
            subcomponent=s.subcomponent,
            status=s.status,
            justification=s.justification,
            statement=s.statement,
        )
        for s in added
    )
    session.flush()
    return len(added)


def _purl_key(purl: str) -> tuple[str, str | None]:
    base = purl.split("#", 1)[0].split("?", 1)[0]  # a scope's "@" is encoded as %40
    name, _, version = base.rpartition("@") if "@" in base else (base, "", "")
    return unquote(name).lower(), unquote(version) or None


def same_package(subcomponent: str, purl: str | None) -> bool:
    """True when ``subcomponent`` names the package of ``purl`` (and its version, if it has one)."""
    if not purl:
        return False
    sub_name, sub_version = _purl_key(subcomponent)
    name, version = _purl_key(purl)
    return sub_name == name and (sub_version is None or sub_version == version)


def match_vex(
    findings: Sequence[Finding], statements: Sequence[VexStatement], image_digest: str
) -> tuple[Finding, ...]:
    """``findings`` marked with the newest statement matching each one (none deleted).

    A statement matches a finding when it names this image, the finding's id or any of its
    aliases, and (when it names one) the finding's package. ``statements`` come oldest first.
    """
    marked = []
    for finding in findings:
        names = {finding.vuln_id, *finding.aliases}
        status, justification = None, None
        for stmt in statements:
            if (
                stmt.product == image_digest
                and stmt.vuln_id in names
                and (stmt.subcomponent is None or same_package(stmt.subcomponent, finding.purl))
            ):
                status, justification = stmt.status, stmt.justification
        marked.append(replace(finding, vex_status=status, vex_justification=justification))
    return tuple(marked)
