"""``/v1/history/…``: the auditors' read-only history (role ``auditor``; admins read too).

Lists are pages of at most ``limit`` rows, oldest first, with ``next_cursor`` (opaque, signed,
bound to the route and its filters: :mod:`supplychain.history.cursor`); ``format=csv`` answers
the same page as CSV (formula-safe cells) with the next cursor in the ``Next-Cursor`` header.
Every text parameter is checked for control characters before it reaches SQL.
"""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from registry_hooks.grammar import GrammarError, check_text, valid_digest
from supplychain.api.schemas import (
    AffectedPage,
    DecisionAnswer,
    ErrorAnswer,
    EventPage,
    Kind,
)
from supplychain.history.affected import AffectedImage, Question, affected
from supplychain.history.cursor import CursorError, CursorSigner, Position, query_digest
from supplychain.history.documents import (
    DSSE,
    SBOM_TYPES,
    Document,
    DocumentError,
    attestation_envelope,
    sbom,
)
from supplychain.history.events import KINDS, Event, Page, Scope, events
from supplychain.history.export import to_csv
from supplychain.history.timetravel import TimeTravelError, answer_at
from supplychain.service import Service

__all__ = ["history_router"]

log = logging.getLogger(__name__)

MAX_ROW_ID = 2**31 - 1
DIGEST = r"^sha256:[0-9a-f]{64}$"
Format = Literal["json", "csv"]
CSV_TYPE = "text/csv; charset=utf-8"
EVENT_COLUMNS = ("at", "kind", "id", "digest", "repository", "summary", "details")
AFFECTED_COLUMNS = (
    "digest", "repository", "scan", "scanned_at", "passed_gate", "gate", "packages", "findings",
)  # fmt: skip


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorAnswer, "description": "bad parameter or cursor"},
}
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
}
BINARY = {"schema": {"type": "string", "format": "binary"}}
JSON_DOCUMENT = {"schema": {"type": "object", "description": "the JSON document as stored"}}


def _download_responses(*media_types: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": "the document as stored; Digest, Repr-Digest and ETag name its SHA-256",
            "content": {
                media_type: JSON_DOCUMENT if "json" in media_type else BINARY
                for media_type in media_types
            },
        },
        404: {"model": ErrorAnswer, "description": "no such document"},
    }


SBOM_DOWNLOAD = _download_responses(*SBOM_TYPES.values(), "application/json")
ENVELOPE_DOWNLOAD = _download_responses(
    DSSE, *(f"application/vnd.dev.sigstore.bundle.v0.{n}+json" for n in (1, 2, 3)),
    "application/vnd.dev.sigstore.bundle+json;version=0.3", "application/json",
    "application/octet-stream",
)  # fmt: skip

Text = Annotated[str | None, Query(max_length=512)]
When = Annotated[datetime | None, Query(description="ISO 8601 with a time zone")]
Limit = Annotated[int, Query(ge=1, le=1000)]
CursorParam = Annotated[str | None, Query(max_length=512, description="next_cursor of a page")]


def _text(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return check_text(value, name, 512)
    except GrammarError as exc:
        raise HTTPException(400, str(exc)) from None


def _utc(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise HTTPException(400, f"{name} needs a time zone (…Z or +00:00)")
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise HTTPException(400, f"{name} is out of range") from None


def _digest(value: str | None, name: str) -> str | None:
    if value is not None and not valid_digest(value):
        raise HTTPException(400, f"{name} must be sha256:<64 lowercase hex>")
    return value


def _repository(value: str | None) -> tuple[str, str] | tuple[None, None]:
    text = _text(value, "repository")
    if text is None:
        return None, None
    host, _, path = text.partition("/")
    if not host or not path:
        raise HTTPException(400, "repository must be registry/repository (r.example/team/app)")
    return host, path


def _event_json(e: Event) -> dict[str, Any]:
    return {
        "at": e.at.isoformat(), "kind": e.kind, "id": e.id, "digest": e.digest,
        "repository": e.repository, "summary": e.summary, "details": e.details,
    }  # fmt: skip


def _affected_json(a: AffectedImage) -> dict[str, Any]:
    return {
        "digest": a.digest, "repository": a.repository, "scan": a.scan,
        "scanned_at": a.scanned_at.isoformat(), "packages": list(a.packages),
        "findings": list(a.findings), "gate": a.gate, "passed_gate": a.passed_gate,
    }  # fmt: skip


def _download(doc: Document) -> Response:
    raw = bytes.fromhex(doc.digest.removeprefix("sha256:"))
    b64 = base64.b64encode(raw).decode()
    headers = {
        "ETag": f'"{doc.digest}"',
        "Digest": f"sha-256={b64}",
        "Repr-Digest": f"sha-256=:{b64}:",
        "Content-Disposition": "attachment",
    }
    return Response(doc.data, media_type=doc.media_type, headers=headers)


def history_router(service: Service) -> APIRouter:
    """The history routes on ``service``'s database and decider."""
    router = APIRouter(prefix="/v1/history", tags=["history"])
    signer = CursorSigner(service.settings.token_pepper)

    def position(cursor: str | None, route: str, filters: dict[str, Any]) -> Position | None:
        if cursor is None:
            return None
        try:
            return signer.read(_text(cursor, "cursor") or "", query_digest(route, filters))
        except CursorError as exc:
            raise HTTPException(400, f"cursor: {exc}") from None

    def next_cursor(last: Position | None, route: str, filters: dict[str, Any]) -> str | None:
        return None if last is None else signer.make(last, query_digest(route, filters))

    def page(
        route: str, scope: Scope, filters: dict[str, Any], cursor: str | None, limit: int, fmt: str
    ) -> Any:
        after = position(cursor, route, filters)
        with service.db.session() as session:
            found: Page = events(session, scope, after, limit)
        token = next_cursor(found.last, route, filters)
        rows = [_event_json(e) for e in found.items]
        if fmt == "csv":
            headers = {"Next-Cursor": token} if token else {}
            return Response(to_csv(EVENT_COLUMNS, rows), media_type=CSV_TYPE, headers=headers)
        return {"items": rows, "next_cursor": token}

    @router.get("/images/{digest}", response_model=EventPage, responses={**ERRORS, **CSV})
    def image_history(
        digest: Annotated[str, Path(pattern=DIGEST, max_length=71)],
        kind: Annotated[list[Kind] | None, Query(description="only these kinds")] = None,
        since: When = None,
        until: When = None,
        cursor: CursorParam = None,
        limit: Limit = 100,
        format: Format = "json",
    ) -> Any:
        """Every scan, SBOM, signature, attestation, VEX statement, verdict, gate answer and
        waiver that touched the image ``digest``, oldest first."""
        kinds = frozenset(kind or KINDS)
        scope = Scope(
            digest=_digest(digest, "digest"), since=_utc(since, "since"),
            until=_utc(until, "until"), kinds=kinds,
        )  # fmt: skip
        filters = {"digest": digest, "kinds": sorted(kinds), "since": since, "until": until}
        return page("images", scope, filters, cursor, limit, format)

    @router.get("/repositories", response_model=EventPage, responses={**ERRORS, **CSV})
    def repository_history(
        repository: Annotated[str, Query(max_length=512, description="registry/repository")],
        since: When = None,
        until: When = None,
        kind: Annotated[list[Kind] | None, Query(description="only these kinds")] = None,
        cursor: CursorParam = None,
        limit: Limit = 100,
        format: Format = "json",
    ) -> Any:
        """The events of every image of one repository in a time range."""
        host, path = _repository(repository)
        kinds = frozenset(kind or KINDS)
        scope = Scope(
            host=host, repository=path, since=_utc(since, "since"), until=_utc(until, "until"),
            kinds=kinds,
        )  # fmt: skip
        filters = {"repository": repository, "kinds": sorted(kinds), "since": since, "until": until}
        return page("repositories", scope, filters, cursor, limit, format)

    @router.get("/attestations", response_model=EventPage, responses={**ERRORS, **CSV})
    def attestation_history(
        subject: Annotated[str | None, Query(max_length=71, description="image digest")] = None,
        predicate_type: Text = None,
        since: When = None,
        until: When = None,
        cursor: CursorParam = None,
        limit: Limit = 100,
        format: Format = "json",
    ) -> Any:
        """Attestations found for a subject (image digest) and/or of a predicate type."""
        scope = Scope(
            digest=_digest(subject, "subject"),
            predicate_type=_text(predicate_type, "predicate_type"),
            since=_utc(since, "since"), until=_utc(until, "until"),
            kinds=frozenset({"attestation"}),
        )  # fmt: skip
        filters = {"subject": subject, "predicate_type": predicate_type, "since": since,
                   "until": until}  # fmt: skip
        return page("attestations", scope, filters, cursor, limit, format)

    @router.get("/verdicts", response_model=EventPage, responses={**ERRORS, **CSV})
    def verdict_history(
        decision: Literal["allow", "deny", "pending"] | None = None,
        gate_only: Annotated[bool, Query(description="gate answers only")] = False,
        repository: Text = None,
        since: When = None,
        until: When = None,
        cursor: CursorParam = None,
        limit: Limit = 100,
        format: Format = "json",
    ) -> Any:
        """Verdicts and gate answers by decision (and repository, time range)."""
        host, path = _repository(repository)
        kinds = frozenset({"gate"} if gate_only else {"gate", "verdict"})
        scope = Scope(
            host=host, repository=path, since=_utc(since, "since"), until=_utc(until, "until"),
            kinds=kinds, decision=decision,
        )  # fmt: skip
        filters = {"decision": decision, "kinds": sorted(kinds), "repository": repository,
                   "since": since, "until": until}  # fmt: skip
        return page("verdicts", scope, filters, cursor, limit, format)

    @router.get("/affected", response_model=AffectedPage, responses={**ERRORS, **CSV})
    def affected_images(
        at: Annotated[datetime, Query(description="ISO 8601 with a time zone")],
        purl: Annotated[
            str | None, Query(max_length=512, description="pkg:type/ns/name glob")
        ] = None,
        versions: Annotated[str | None, Query(max_length=128, description="e.g. <2.20")] = None,
        cve: Annotated[
            str | None, Query(max_length=128, description="advisory id or alias")
        ] = None,
        cursor: CursorParam = None,
        limit: Limit = 100,
        format: Format = "json",
    ) -> Any:
        """Images that held package ``purl`` (``versions``) or advisory ``cve`` at ``at``, each
        with its last gate answer by then and whether any gate answer allowed it."""
        when = _utc(at, "at")
        assert when is not None  # noqa: S101 (required)
        if _text(purl, "purl") is None and _text(cve, "cve") is None:
            raise HTTPException(400, "name a package (purl) or an advisory (cve)")
        if versions is not None:
            if purl is None:
                raise HTTPException(400, "versions needs purl")
            try:
                SpecifierSet(_text(versions, "versions") or "")
            except InvalidSpecifier:
                raise HTTPException(
                    400, "versions must be PEP 440 specifiers (<2.20,>=2.0)"
                ) from None
        filters = {"at": when, "purl": purl, "versions": versions, "cve": cve}
        after = position(cursor, "affected", filters)
        with service.db.session() as session:
            found = affected(session, Question(when, purl, versions, cve), after, limit)
        token = next_cursor(found.last, "affected", filters)
        rows = [_affected_json(a) for a in found.items]
        if format == "csv":
            headers = {"Next-Cursor": token} if token else {}
            return Response(to_csv(AFFECTED_COLUMNS, rows), media_type=CSV_TYPE, headers=headers)
        return {"at": when.isoformat(), "items": rows, "next_cursor": token}

    @router.get(
        "/decision",
        response_model=DecisionAnswer,
        responses={**ERRORS, 404: {"model": ErrorAnswer, "description": "digest unknown then"}},
    )
    def decision_at(
        digest: Annotated[str, Query(max_length=71)],
        at: Annotated[datetime, Query(description="ISO 8601 with a time zone")],
        repository: Text = None,
        platform: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Any:
        """What the answer for ``digest`` was at ``at``, under which policy, DB and waivers, and
        why: the one decision on the facts known then."""
        when = _utc(at, "at")
        assert when is not None  # noqa: S101 (required)
        _digest(digest, "digest")
        _repository(repository)
        try:
            with service.db.session() as session:
                answer = answer_at(
                    session, service.decider, digest, when,
                    repository=repository, platform=_text(platform, "platform"),
                )  # fmt: skip
        except TimeTravelError as exc:
            raise HTTPException(404, str(exc)) from None
        return answer.to_json()

    def _document(fetch: Any, row_id: int) -> Response:
        try:
            with service.db.session() as session:
                return _download(fetch(session, row_id))
        except DocumentError as exc:
            if exc.missing:
                raise HTTPException(404, str(exc)) from None
            log.error("stored document refused: %s", exc)  # changed behind the service's back
            raise HTTPException(500, str(exc)) from None

    @router.get("/sboms/{scan_id}", response_class=Response, responses=SBOM_DOWNLOAD)
    def sbom_document(scan_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)]) -> Response:
        """The SBOM of scan ``scan_id`` exactly as recorded (CycloneDX JSON)."""
        return _document(sbom, scan_id)

    @router.get(
        "/attestations/{attestation_id}/envelope",
        response_class=Response,
        responses=ENVELOPE_DOWNLOAD,
    )
    def attestation_document(
        attestation_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)],
    ) -> Response:
        """The DSSE envelope or Sigstore bundle of attestation ``attestation_id`` as found."""
        return _document(attestation_envelope, attestation_id)

    return router
