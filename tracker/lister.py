"""Resumable S3 listing: one ListObjectsV2 page at a time, committed with its cursor.

Each page's keys, its continuation token and its last key are recorded in one transaction
(`Store.record_page`), so a crash at any instant costs at most that one page again. A saved
token that S3 no longer accepts is replaced by `StartAfter=<last key>`, which is exact
because S3 lists in UTF-8 binary order.

A page may be empty yet truncated (`IsTruncated` with a `NextContinuationToken` and no
`Contents`: versioned buckets with runs of delete markers, some S3-compatible servers). Its
token is committed like any other, so the listing moves on; `list_page` follows at most
`MAX_EMPTY_PAGES` such pages in a row before returning, so a caller is never stuck inside
one call while S3 walks a long run of nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tracker.errors import S3Error, SourceNotFound
from tracker.filters import KeyFilter
from tracker.records import ListedObject, SourceRef
from tracker.s3 import FATAL_CODES, describe, error_code, is_throttling
from tracker.store import Store

log = logging.getLogger("tracker.lister")

#: S3's maximum (and default) number of keys per ListObjectsV2 page.
MAX_PAGE_SIZE = 1000

#: Empty-but-truncated pages `list_page` follows in one call before it returns.
MAX_EMPTY_PAGES = 10


def listed_objects(contents: list[dict[str, Any]]) -> list[ListedObject]:
    """A LIST page's `Contents` as listed objects (ETag without its quotes)."""
    return [
        ListedObject(
            o["Key"], o.get("Size"), o.get("ETag", "").strip('"') or None, o.get("LastModified")
        )
        for o in contents
    ]


@dataclass(frozen=True)
class PageResult:
    """What one `list_page` call brought (one LIST, or a run of empty pages and the next)."""

    keys_seen: int
    new_keys: int
    exhausted: bool
    #: Keys the filter took (the rest were listed but are not items).
    keys_taken: int = 0
    #: LIST pages read and committed (more than 1 only after empty pages).
    pages: int = 1


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
        warn: Callable[[str], None] = log.warning,
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
        #: The cursor generation this lister started from: after a `reset --listing` its
        #: pages still record their keys but no longer move the cursor.
        self._generation: int | None = None
        if source is not None:
            cursor = store.cursor(source)
            self._generation = cursor.generation
        if from_start or source is None:
            self._token, self._start_after, self._exhausted = None, None, False
        else:
            self._token, self._start_after = cursor.continuation_token, cursor.last_key
            self._exhausted = cursor.exhausted
        #: A listing of a known source from its first page is a complete pass: if this
        #: lister reaches the end, keys it did not see are gone (`Store.finish_pass`).
        self._full_pass = source is not None and self._token is None and not self._start_after
        self._pass: int | None = None
        #: Keys the last complete pass of this lister marked deleted.
        self.deleted = 0

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

    def list_page(self, max_pages: int = MAX_EMPTY_PAGES) -> PageResult:
        """Fetch the next page, record it with the new cursor, and return what it held.

        An empty page that is truncated is committed (its token saved) and the next one
        fetched, up to `max_pages` LIST calls in all: then this returns an empty result,
        not exhausted, and the caller decides whether to wait, log or call again.
        """
        pages = 0
        if self._full_pass and self._pass is None and self.source is not None:
            self._pass = self.store.begin_pass(self.source)
        while True:
            sent_token = self._token
            response = self._fetch()
            pages += 1
            empty_and_more = not response.get("Contents") and response.get("IsTruncated", False)
            if empty_and_more and response.get("NextContinuationToken") in (None, sent_token):
                # Following it would send the same LIST again, forever.
                raise S3Error(
                    f"S3 returned an empty page of {self.uri} that says more follows but "
                    "gives no new continuation token; the listing cannot advance"
                )
            page = self._record(self._advance(response), sent_token)
            if not empty_and_more or pages >= max_pages:
                break
        if empty_and_more:
            log.info(
                "%s: %d empty pages in a row (delete markers?); the listing goes on",
                self.uri,
                pages,
            )
        return PageResult(
            keys_seen=page.keys_seen,
            new_keys=page.new_keys,
            exhausted=page.exhausted,
            keys_taken=page.keys_taken,
            pages=pages,
        )

    def _advance(self, response: dict[str, Any]) -> dict[str, Any]:
        """Move the in-memory position past a fetched page (the next fetch may start)."""
        contents = response.get("Contents", [])
        self._exhausted = not response.get("IsTruncated", False)
        self._token = None if self._exhausted else response.get("NextContinuationToken")
        if contents:
            self._start_after = contents[-1]["Key"]
        return response

    def _record(self, response: dict[str, Any], page_token: str | None) -> PageResult:
        """Commit a fetched page's keys with the cursor that follows them (`page_token`: the
        token the page was asked with, see `Store.record_page`)."""
        contents = response.get("Contents", [])
        seen = listed_objects(contents)
        objects = [o for o in seen if self.key_filter.accepts(o.key, o.size)]
        exhausted = not response.get("IsTruncated", False)
        if contents and not objects:
            self.warn(self.key_filter.nothing_taken(self.uri, len(contents)))
        if self.source is None:
            self.source = self.store.source(self.bucket, self.prefix, create=True)
        new_keys = self.store.record_page(
            self.source,
            objects,
            next_token=response.get("NextContinuationToken"),
            last_key=contents[-1]["Key"] if contents else None,
            exhausted=exhausted,
            generation=self._generation,
            page_token=page_token,
            seen=seen,
        )
        if exhausted and self._pass is not None:
            self.deleted = self.store.finish_pass(self.source, self._pass)
            self._pass = None
            self._full_pass = False
        return PageResult(
            keys_seen=len(contents),
            new_keys=new_keys,
            exhausted=exhausted,
            keys_taken=len(objects),
        )

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
            left = MAX_EMPTY_PAGES if max_pages is None else max_pages - pages
            page = self.list_page(min(left, MAX_EMPTY_PAGES))
            pages += page.pages
            on_page(page)
            if page.exhausted or should_stop():
                break
        return pages
