"""Parallel, resumable listing: N LIST chains over the disjoint shards of one source.

A ListObjectsV2 chain is sequential (each page needs the previous page's token), so one
chain lists at most 1,000 keys per round trip. `ParallelLister` splits the source's key
range (`tracker.shards.Splitter`) and lists the shards side by side, each with its own
cursor committed with each of its pages (`Store.record_shard_page`):

- a killed run resumes every shard where it stopped (at most its page in flight again); a
  token S3 no longer accepts falls back to `StartAfter=<shard's last key>`;
- the source's own cursor moves only once every shard is exhausted (`Store.finish_shards`):
  it then stands after the last key, so the recipe continues with one LIST;
- chains are threads sharing thread-safe botocore clients (one per `CLIENT_POOL` chains,
  each from its own session); they overlap their LIST round trips, and the state DB
  serialises their commits on SQLite (`BEGIN IMMEDIATE`) and takes them side by side on
  PostgreSQL;
- `should_stop()` is checked by every chain after each committed page; a throttled shard
  (503 SlowDown after botocore's own retries) backs off and asks again, alone, and never
  skips a page.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tracker.errors import S3Error, SourceNotFound
from tracker.filters import KeyFilter
from tracker.lister import MAX_PAGE_SIZE, PageResult, listed_objects
from tracker.records import SourceRef
from tracker.s3 import FATAL_CODES, describe, error_code, is_throttling
from tracker.shards import ShardCursor, Splitter, ranges
from tracker.store import Store

log = logging.getLogger("tracker.parallel")

#: Chains per botocore client: its default connection pool holds 10 connections.
CLIENT_POOL = 10

#: After botocore's retries, a throttled shard waits and asks again this many times.
THROTTLE_ROUNDS = 6
#: First wait of a throttled shard (doubled each round, capped at `THROTTLE_MAX_S`).
THROTTLE_BASE_S = 0.5
THROTTLE_MAX_S = 20.0


@dataclass
class ParallelResult:
    """What a parallel run did."""

    shards: int = 0
    shards_done: int = 0
    pages: int = 0
    keys: int = 0
    new: int = 0
    split_calls: int = 0
    list_calls: int = 0
    throttled: int = 0
    exhausted: bool = False
    resumed: bool = False


def fast_timestamps(client: Any) -> None:
    """Parse `LastModified` with `datetime.fromisoformat` instead of dateutil.

    botocore parses every timestamp with dateutil, which is most of the CPU a 1,000-key page
    costs this process (profiled: about 3/4 of botocore's parsing): CPU that threads cannot
    overlap, and that bounds what N chains gain. S3 sends ISO 8601 (`...T14:39:02.453Z`),
    which `fromisoformat` reads exactly; anything else goes to botocore's own parser. It is
    set with the parser factory's public `set_parser_defaults`, reached through the client's
    endpoint (a private attribute: if botocore moves it, nothing changes). The factory
    belongs to the client's session (`make_client` makes one per client).
    """
    from botocore.utils import parse_timestamp

    factory = getattr(getattr(client, "_endpoint", None), "_response_parser_factory", None)
    if factory is None or not hasattr(factory, "set_parser_defaults"):
        return

    def parse(value: Any) -> datetime:
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return parse_timestamp(value)
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        return parse_timestamp(value)

    factory.set_parser_defaults(timestamp_parser=parse)


class ParallelLister:
    """Lists one source with `chains` concurrent LIST chains over its shards.

    `clients`: botocore S3 clients (thread-safe); chain i uses `clients[i % len(clients)]`.
    `shards`: how many shards a new plan has (default: one per chain). A plan that is not
    finished is resumed as it is, whatever `chains` (a plain `tracker sync` resumes it with
    one chain); `from_start` makes a new plan.
    """

    def __init__(
        self,
        store: Store,
        bucket: str,
        prefix: str,
        clients: Sequence[Any],
        key_filter: KeyFilter | None = None,
        *,
        chains: int = 1,
        shards: int | None = None,
        page_size: int = MAX_PAGE_SIZE,
        from_start: bool = False,
        warn: Callable[[str], None] = log.warning,
    ) -> None:
        if not clients:
            raise ValueError("ParallelLister needs at least one S3 client")
        self.store = store
        self.bucket = bucket
        self.prefix = prefix
        self.clients = list(clients)
        for client in self.clients:
            fast_timestamps(client)
        self.key_filter = key_filter or KeyFilter()
        self.chains = max(1, chains)
        self.shard_count = max(1, shards or self.chains)
        self.page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        self.from_start = from_start
        self.warn = warn
        self.result = ParallelResult()
        self.source: SourceRef | None = None
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []
        self._failed = threading.Event()

    @property
    def uri(self) -> str:
        return SourceRef(0, self.bucket, self.prefix).uri

    # -- the plan -------------------------------------------------------------------------

    def plan(self) -> list[ShardCursor]:
        """The shards to list: an open plan resumed, or a new split. The first LIST is sent
        before the source is created, so a bad bucket leaves the state DB unchanged."""
        try:
            source: SourceRef | None = self.store.source(self.bucket, self.prefix)
        except SourceNotFound:
            source = None
        if source is not None and not self.from_start:
            current = open_plan(self.store, self.bucket, self.prefix)
            if current is not None:
                self.source = source
                self.result.resumed = True
                return current
        splitter = Splitter(
            self.clients[0],
            self.bucket,
            self.prefix if source is None else source.prefix,
            workers=CLIENT_POOL * len(self.clients),
            page_size=self.page_size,
        )
        try:
            points = splitter.split(self.shard_count)
        except ClientError as error:
            raise S3Error(describe(error, self.bucket)) from None
        except BotoCoreError as error:
            raise S3Error(describe(error, self.bucket)) from None
        finally:
            self.result.split_calls += splitter.calls
        # A new plan covers the whole key range: for a known source, a complete pass whose
        # closing marks the keys it did not see deleted.
        pass_id = None if source is None else self.store.begin_pass(source)
        if source is None:
            source = self.store.source(self.bucket, self.prefix, create=True)
        self.source = source
        generation = self.store.cursor(source).generation
        return self.store.plan_shards(
            source, ranges(points), generation=generation, pass_id=pass_id
        )

    # -- running --------------------------------------------------------------------------

    def run(
        self,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_page: Callable[[PageResult], None] = lambda page: None,
        plan: list[ShardCursor] | None = None,
    ) -> ParallelResult:
        """List every shard not yet exhausted with up to `chains` threads; then, when all
        are, move the source's cursor. Raises the first chain's error after every chain
        has stopped (each after the page it had in flight)."""
        shards = plan if plan is not None else self.plan()
        if self.source is None:  # a plan made elsewhere (another process)
            self.source = self.store.source(self.bucket, self.prefix)
        self.result.shards = len(shards)
        todo: queue.SimpleQueue[ShardCursor] = queue.SimpleQueue()
        for shard in shards:
            if shard.exhausted:
                self.result.shards_done += 1
            else:
                todo.put(shard)
        stop = lambda: should_stop() or self._failed.is_set()  # noqa: E731
        threads = [
            threading.Thread(
                target=self._chain,
                args=(self.clients[i % len(self.clients)], todo, stop, on_page),
                name=f"list-chain-{i}",
                daemon=True,  # a second Ctrl-C ends the process; every commit is atomic
            )
            for i in range(min(self.chains, len(shards) - self.result.shards_done))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():  # a timed join lets the main thread take signals
                thread.join(0.2)
        if self._errors:
            raise self._errors[0]
        if self.result.shards_done == len(shards):
            self.result.exhausted = self.store.finish_shards(self.source, shards[0].plan)
        return self.result

    def _chain(
        self,
        client: Any,
        todo: queue.SimpleQueue[ShardCursor],
        stop: Callable[[], bool],
        on_page: Callable[[PageResult], None],
    ) -> None:
        try:
            while not stop():
                try:
                    shard = todo.get_nowait()
                except queue.Empty:
                    return
                if _ShardLister(self, client, shard).run(stop, on_page):
                    with self._lock:
                        self.result.shards_done += 1
        except BaseException as error:  # handed to the main thread, which re-raises it
            with self._lock:
                self._errors.append(error)
            self._failed.set()

    def _count(self, page: PageResult, calls: int, throttled: int) -> None:
        with self._lock:
            self.result.pages += page.pages
            self.result.keys += page.keys_seen
            self.result.new += page.new_keys
            self.result.list_calls += calls
            self.result.throttled += throttled


class _ShardLister:
    """One chain's listing of one shard, page by page, each committed with its cursor."""

    def __init__(self, owner: ParallelLister, client: Any, shard: ShardCursor) -> None:
        self.owner = owner
        self.client = client
        self.shard = shard
        self.token = shard.continuation_token
        self.start_after = shard.last_key or shard.start_after
        self.calls = 0
        self.throttled = 0

    def run(self, stop: Callable[[], bool], on_page: Callable[[PageResult], None]) -> bool:
        """List until the shard is exhausted (True) or `stop()` (False)."""
        while True:
            page, done = self._page()
            self.owner._count(page, self.calls, self.throttled)
            self.calls = self.throttled = 0
            with self.owner._lock:
                on_page(page)
            if done:
                return True
            if stop():
                return False

    def _page(self) -> tuple[PageResult, bool]:
        owner = self.owner
        sent_token = self.token
        response = self._fetch()
        contents = response.get("Contents") or []
        truncated = bool(response.get("IsTruncated", False))
        next_token = response.get("NextContinuationToken") if truncated else None
        if not contents and truncated and next_token in (None, sent_token):
            raise S3Error(
                f"S3 returned an empty page of {owner.uri} that says more follows but gives "
                "no new continuation token; the listing cannot advance"
            )
        inside = [o for o in contents if self.shard.contains(o["Key"])]
        # The shard ends at its end key: a page that reaches past it is its last.
        done = not truncated or len(inside) < len(contents)
        if inside and self.shard.end_key is not None and inside[-1]["Key"] == self.shard.end_key:
            done = True
        seen = listed_objects(inside)
        objects = [o for o in seen if owner.key_filter.accepts(o.key, o.size)]
        assert owner.source is not None
        new = owner.store.record_shard_page(
            owner.source,
            self.shard,
            objects,
            next_token=None if done else next_token,
            last_key=inside[-1]["Key"] if inside else None,
            exhausted=done,
            page_token=sent_token,
            seen=seen,
        )
        self.token = None if done else next_token
        if inside:
            self.start_after = inside[-1]["Key"]
        return PageResult(len(inside), new, done, len(objects)), done

    def _fetch(self) -> dict[str, Any]:
        """One page: by token, or (first page, or the token was rejected) by StartAfter;
        a throttled request waits and is sent again (the page is never skipped)."""
        params: dict[str, Any] = {"Bucket": self.owner.bucket, "MaxKeys": self.owner.page_size}
        if self.owner.prefix:
            params["Prefix"] = self.owner.prefix
        if self.token:
            try:
                return self._call(dict(params, ContinuationToken=self.token))
            except ClientError as error:
                if error_code(error) in FATAL_CODES or is_throttling(error):
                    raise S3Error(describe(error, self.owner.bucket)) from None
                # S3 will not continue from this token (expired, server restarted): the
                # shard's last key is exact, since S3 lists in UTF-8 binary order.
                self.owner.warn(
                    f"shard {self.shard.shard}: S3 rejected the saved continuation token "
                    f"({describe(error, self.owner.bucket)}); resumed after its last key"
                )
                self.token = None
        if self.start_after is not None:
            params["StartAfter"] = self.start_after
        return self._call(params)

    def _call(self, params: dict[str, Any]) -> dict[str, Any]:
        wait = THROTTLE_BASE_S
        for round_ in range(THROTTLE_ROUNDS + 1):
            self.calls += 1
            try:
                return self.client.list_objects_v2(**params)  # type: ignore[no-any-return]
            except ClientError as error:
                if not is_throttling(error) or round_ == THROTTLE_ROUNDS:
                    if "ContinuationToken" in params and not is_throttling(error):
                        raise
                    raise S3Error(describe(error, self.owner.bucket)) from None
                self.throttled += 1
                log.info("shard %d throttled; waiting %.1f s", self.shard.shard, wait)
                time.sleep(wait)
                wait = min(wait * 2, THROTTLE_MAX_S)
            except BotoCoreError as error:
                raise S3Error(describe(error, self.owner.bucket)) from None
        raise AssertionError("unreachable")


def open_plan(store: Store, bucket: str, prefix: str) -> list[ShardCursor] | None:
    """The source's shard plan when one is under way (made under the cursor's current
    generation, not finished): a plain `tracker sync` then resumes it."""
    try:
        source = store.source(bucket, prefix)
    except SourceNotFound:
        return None
    shards = store.shards(source)
    if not shards or shards[0].closed_at is not None:
        return None
    if shards[0].generation != store.cursor(source).generation:
        return None
    return shards


def shards_done(shards: Sequence[ShardCursor]) -> str:
    done = sum(1 for s in shards if s.exhausted)
    return f"{done}/{len(shards)} shards done"
