"""How a recorded listing page moves a cursor: the one home of the forward-only rule. No I/O.

Used for the source's cursor (`Store.record_page`, `Store.finish_shards`, an inventory's
end) and for a shard's (`Store.record_shard_page`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tracker.records import Cursor
from tracker.s3uri import utf8_after


def cursor_move(
    current: Cursor,
    next_token: str | None,
    last_key: str | None,
    exhausted: bool,
    now: datetime,
    page_token: str | None,
) -> dict[str, Any]:
    """The cursor's columns a recorded page changes (none: it stays): only forward in S3's
    order.

    A page that ends after the cursor's last key moves it (token, last key, exhausted). The
    final page of a pass marks the listing exhausted when it ends at the cursor's last key
    too (a lister that read the same page after the keys past it went away), or holds no
    key: nothing is left after it either way. A page that ends before the cursor's last key
    (a slower lister) changes nothing. An empty page S3 says is truncated (a run of delete
    markers) moves only the token, and only when the cursor still holds the token that
    page was asked with: an empty page read without a new token would otherwise repeat
    forever.
    """
    if utf8_after(last_key, current.last_key):
        return {
            "last_key": last_key,
            "continuation_token": None if exhausted else next_token,
            "exhausted_at": now if exhausted else None,
        }
    if exhausted and (last_key is None or last_key == current.last_key):
        return {"continuation_token": None, "exhausted_at": now}
    if (
        last_key is None
        and next_token is not None
        and current.exhausted_at is None
        and current.continuation_token == page_token
    ):
        return {"continuation_token": next_token}
    return {}
