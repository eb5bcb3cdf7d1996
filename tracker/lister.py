"""Resumable S3 listing: one ListObjectsV2 page at a time, committed with its cursor.

Each page's keys, its continuation token and its last key are recorded in one transaction
(`Store.record_page`), so a crash at any instant costs at most that one page again. A saved
token that S3 no longer accepts is replaced by `StartAfter=<last key>`, which is exact
because S3 lists in UTF-8 binary order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tracker.errors import S3Error
from tracker.filters import KeyFilter
from tracker.records import ListedObject, SourceRef
from tracker.s3 import FATAL_CODES, describe, error_code
from tracker.store import Store

#: S3's maximum (and default) number of keys per ListObjectsV2 page.
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class PageResult:
    """What one LIST call brought."""

    keys_seen: int
    new_keys: int
    exhausted: bool


class Lister:
    """Lists one source page by page, from where the state DB says it stopped.

    The position is read from the store once, then carried in memory: during a
    `from_start` pass the stored cursor (which only moves forward) stays where it was.
    """

    def __init__(
        self,
        store: Store,
        source: SourceRef,
        client: Any,
        key_filter: KeyFilter | None = None,
        *,
        page_size: int = MAX_PAGE_SIZE,
        from_start: bool = False,
        warn: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.store = store
        self.source = source
        self.client = client
        self.key_filter = key_filter or KeyFilter()
        self.page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        self.warn = warn
        self.list_calls = 0
        if from_start:
            self._token, self._start_after, self._exhausted = None, None, False
        else:
            cursor = store.cursor(source)
            self._token, self._start_after = cursor.continuation_token, cursor.last_key
            self._exhausted = cursor.exhausted

    @property
    def exhausted(self) -> bool:
        """True once a LIST call found no more pages (until the next call)."""
        return self._exhausted

    def list_page(self) -> PageResult:
        """Fetch the next page, record it with the new cursor, and return what it held."""
        response = self._fetch()
        contents = response.get("Contents", [])
        objects = [
            ListedObject(
                o["Key"], o.get("Size"), o.get("ETag", "").strip('"') or None, o.get("LastModified")
            )
            for o in contents
            if self.key_filter.accepts(o["Key"], o.get("Size"))
        ]
        exhausted = not response.get("IsTruncated", False)
        next_token = response.get("NextContinuationToken")
        last_key = contents[-1]["Key"] if contents else None
        new_keys = self.store.record_page(
            self.source, objects, next_token=next_token, last_key=last_key, exhausted=exhausted
        )
        self._token = None if exhausted else next_token
        if last_key is not None:
            self._start_after = last_key
        self._exhausted = exhausted
        return PageResult(keys_seen=len(contents), new_keys=new_keys, exhausted=exhausted)

    def _fetch(self) -> dict[str, Any]:
        params: dict[str, Any] = {"Bucket": self.source.bucket, "MaxKeys": self.page_size}
        if self.source.prefix:
            params["Prefix"] = self.source.prefix
        if self._token:
            try:
                return self._call(dict(params, ContinuationToken=self._token))
            except ClientError as error:
                if error_code(error) in FATAL_CODES:
                    raise S3Error(describe(error, self.source.bucket)) from None
                reason = describe(error, self.source.bucket)
                self.warn(
                    f"S3 rejected the saved continuation token ({reason}); "
                    "resuming after the last key listed instead"
                )
                self._token = None
                self.store.forget_token(self.source)
        if self._start_after:
            params["StartAfter"] = self._start_after
        try:
            return self._call(params)
        except (ClientError, BotoCoreError) as error:
            raise S3Error(describe(error, self.source.bucket)) from None

    def _call(self, params: dict[str, Any]) -> dict[str, Any]:
        self.list_calls += 1
        return self.client.list_objects_v2(**params)  # type: ignore[no-any-return]

    def run(
        self,
        *,
        max_pages: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_page: Callable[[PageResult], None] = lambda page: None,
    ) -> int:
        """List until exhausted, `max_pages` pages, or `should_stop()`; returns pages read.

        `should_stop` is checked between pages, after each page is committed.
        """
        pages = 0
        while max_pages is None or pages < max_pages:
            page = self.list_page()
            pages += 1
            on_page(page)
            if page.exhausted or should_stop():
                break
        return pages
