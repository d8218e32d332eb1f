"""The auditors' history: what was recorded about an image, and what the answer was at a time.

Read-only queries over the recorded facts, each page after an opaque signed cursor
(:mod:`~supplychain.history.cursor`): the events that touched an image or a repository
(:mod:`~supplychain.history.events`), the images holding a package or an advisory at a time
(:mod:`~supplychain.history.affected`), the answer at a past time by the one decision
(:mod:`~supplychain.history.timetravel`), stored documents checked against their digests
(:mod:`~supplychain.history.documents`) and CSV export (:mod:`~supplychain.history.export`).
"""
