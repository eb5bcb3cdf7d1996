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

from tracker.errors import S3Error, SourceNotFound
from tracker.filters import KeyFilter
from tracker.records import ListedObject, SourceRef
from tracker.s3 import FATAL_CODES, describe, error_code, is_throttling
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

    `source` may be None for a bucket + prefix the store does not know yet (see
    `Lister.open`): the source is then created only once S3 has answered the first LIST,
    so an unknown bucket, a denied prefix or bad credentials leave the state DB unchanged.
    """

    def __init__(
        self,
        store: Store,
        source: SourceRef | None,
        client: Any,
        key_filter: KeyFilter | None = None,
        *,
        page_size: int = MAX_PAGE_SIZE,
        from_start: bool = False,
        warn: Callable[[str], None] = lambda message: None,
        bucket: str | None = None,
        prefix: str = "",
    ) -> None:
        if source is None and bucket is None:
            raise ValueError("Lister needs a source, or the bucket of a source to create")
        self.store = store
        self.source = source
        self.bucket = source.bucket if source is not None else str(bucket)
        self.prefix = source.prefix if source is not None else prefix
        self.client = client
        self.key_filter = key_filter or KeyFilter()
        self.page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        self.warn = warn
        self.list_calls = 0
        if from_start or source is None:
            self._token, self._start_after, self._exhausted = None, None, False
        else:
            cursor = store.cursor(source)
            self._token, self._start_after = cursor.continuation_token, cursor.last_key
            self._exhausted = cursor.exhausted

    @classmethod
    def open(
        cls,
        store: Store,
        bucket: str,
        prefix: str,
        client: Any,
        key_filter: KeyFilter | None = None,
        **options: Any,
    ) -> Lister:
        """A lister for bucket + prefix, whose source is created by its first good page."""
        try:
            source: SourceRef | None = store.source(bucket, prefix)
        except SourceNotFound:
            source = None
        return cls(store, source, client, key_filter, bucket=bucket, prefix=prefix, **options)

    @property
    def uri(self) -> str:
        return SourceRef(0, self.bucket, self.prefix).uri

    @property
    def exhausted(self) -> bool:
        """True once a LIST call found no more pages (until the next call)."""
        return self._exhausted

    def list_page(self) -> PageResult:
        """Fetch the next page, record it with the new cursor, and return what it held."""
        return self._record(self._advance(self._fetch()))

    def _advance(self, response: dict[str, Any]) -> dict[str, Any]:
        """Move the in-memory position past a fetched page (the next fetch may start)."""
        contents = response.get("Contents", [])
        self._exhausted = not response.get("IsTruncated", False)
        self._token = None if self._exhausted else response.get("NextContinuationToken")
        if contents:
            self._start_after = contents[-1]["Key"]
        return response

    def _record(self, response: dict[str, Any]) -> PageResult:
        """Commit a fetched page's keys with the cursor that follows them."""
        contents = response.get("Contents", [])
        objects = [
            ListedObject(
                o["Key"], o.get("Size"), o.get("ETag", "").strip('"') or None, o.get("LastModified")
            )
            for o in contents
            if self.key_filter.accepts(o["Key"], o.get("Size"))
        ]
        exhausted = not response.get("IsTruncated", False)
        if self.source is None:
            self.source = self.store.source(self.bucket, self.prefix, create=True)
        new_keys = self.store.record_page(
            self.source,
            objects,
            next_token=response.get("NextContinuationToken"),
            last_key=contents[-1]["Key"] if contents else None,
            exhausted=exhausted,
        )
        return PageResult(keys_seen=len(contents), new_keys=new_keys, exhausted=exhausted)

    def _fetch(self) -> dict[str, Any]:
        params: dict[str, Any] = {"Bucket": self.bucket, "MaxKeys": self.page_size}
        if self.prefix:
            params["Prefix"] = self.prefix
        rejected: str | None = None
        if self._token:
            try:
                return self._call(dict(params, ContinuationToken=self._token))
            except ClientError as error:
                if error_code(error) in FATAL_CODES or is_throttling(error):
                    raise S3Error(describe(error, self.bucket)) from None
                # Anything else about a token we sent (AWS: 400 InvalidArgument; moto after a
                # restart: 500) means S3 will not continue from it. StartAfter is exact.
                rejected = describe(error, self.bucket)
            except BotoCoreError as error:  # unreachable, dropped after every retry
                raise S3Error(describe(error, self.bucket)) from None
        if self._start_after:
            params["StartAfter"] = self._start_after
        try:
            response = self._call(params)
        except (ClientError, BotoCoreError) as error:
            raise S3Error(describe(error, self.bucket)) from None
        if rejected is not None:
            # Said only once the fallback worked. The stored token is replaced when this
            # page is recorded (or cleared if the listing ends), in the same transaction.
            self._token = None
            self.warn(
                f"S3 rejected the saved continuation token ({rejected}); "
                "resumed after the last key listed instead"
            )
        return response

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

        `should_stop` is checked between pages, after each page is committed. Pages are
        strictly one after the other: sending the next LIST while a page is being committed
        would hide the state DB's cost, but a kill could then cost two pages, not one.
        """
        pages = 0
        while max_pages is None or pages < max_pages:
            page = self.list_page()
            pages += 1
            on_page(page)
            if page.exhausted or should_stop():
                break
        return pages
