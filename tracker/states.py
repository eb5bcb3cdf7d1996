"""Where a key stands and what an annotator answered: plain enums, no SQLAlchemy.

`tracker.models` stores them and re-exports them; code that only passes states around
(`tracker.records`, `tracker.tasks`, the CLI) imports them from here.
"""

from __future__ import annotations

import enum


class ItemState(enum.StrEnum):
    """Where one S3 key stands."""

    #: Listed, never served, or handed back (released, requeued, reset).
    PENDING = "pending"
    #: Handed to an annotator under a lease; claimable again once the lease expires.
    SERVED = "served"
    #: At least one answer was recorded.
    ANNOTATED = "annotated"
    #: Could not be served (vanished, not an image); `failure_reason` says why.
    FAILED = "failed"


class Answer(enum.StrEnum):
    """Prodigy's answer values."""

    ACCEPT = "accept"
    REJECT = "reject"
    IGNORE = "ignore"
