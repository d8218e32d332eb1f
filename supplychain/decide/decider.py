"""Loads an image's recorded facts and decides on them with the one decision function."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from supplychain.decide.decision import ImageFacts, IndexFacts, decide, decide_index
from supplychain.evidence import models
from supplychain.evidence.load import load_facts, load_facts_many
from supplychain.interface import Policy, Verdict
from supplychain.registry.index import MAX_INDEX_DEPTH

__all__ = ["Decider"]


class Decider:
    """The policy in force and the index depth limit; every verdict is made here."""

    def __init__(self, policy: Policy, *, max_depth: int = MAX_INDEX_DEPTH) -> None:
        self.policy = policy
        self.max_depth = max_depth

    def verdict(
        self,
        session: Session,
        image: models.Image,
        *,
        platform: str | None = None,
        now: datetime | None = None,
    ) -> Verdict:
        """The verdict on ``image`` (a manifest or an index) at ``now`` (default: the clock)."""
        return self.decide(self.load(session, image), platform=platform, now=now)

    def load(
        self, session: Session, image: models.Image, *, as_of: datetime | None = None
    ) -> ImageFacts | IndexFacts:
        """The recorded facts about ``image``, as :meth:`verdict` reads them (as known at
        ``as_of``, default: now)."""
        return load_facts(session, image, max_depth=self.max_depth, as_of=as_of)

    def load_many(
        self, session: Session, images: Sequence[models.Image]
    ) -> dict[int, ImageFacts | IndexFacts]:
        """:meth:`load` for several images, by image id, in a few queries (rematching)."""
        return load_facts_many(session, images, max_depth=self.max_depth)

    def decide(
        self,
        facts: ImageFacts | IndexFacts,
        *,
        platform: str | None = None,
        now: datetime | None = None,
    ) -> Verdict:
        """The verdict on loaded ``facts`` at ``now`` (default: the clock)."""
        at = now or models.utcnow()
        if isinstance(facts, IndexFacts):
            return decide_index(facts, self.policy, at, platform=platform)
        return decide(facts, self.policy, at)
