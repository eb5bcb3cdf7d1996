"""The annotation stream over the state DB: plain Python, no Prodigy import.

`S3Stream` is what the `stream_from_s3` recipe (and `tracker demo`) runs:

- iterating it yields Prodigy tasks (`tracker.tasks.build_task`), claimed from the state
  DB under a lease held by `owner`;
- `update(answers)` records answers; `before_db(examples)` swaps images for S3 URIs;
- `on_exit(ctrl)` hands back the keys this process holds and did not get answers for.

The order of work, each time the stream needs more tasks:

1. On start, keys this owner still holds (a restart after a crash or Ctrl-C) are re-leased
   and served first, without waiting for their leases to run out.
2. Claim up to `batch_size` keys: expired leases first, then pending keys in listing order.
3. Nothing claimable and the listing not exhausted: list ONE more page (from the cursor in
   the state DB, so no page is ever read twice), record it, and claim again.
4. Listing exhausted: re-send keys this process served at least `resend_after` ago and got
   no answer for (a batch a browser dropped on reload), never a key that is already in the
   batch being assembled.
5. Keys still out under other owners' live leases (or ours, not yet due for re-sending):
   wait, polling every `poll_interval` seconds but never past the next lease expiry, then
   try again from 2.
6. Every key annotated or failed: the stream ends.

Prodigy pulls `batch_size` tasks per request and cannot hand a partial batch to the browser
while the generator blocks. So step 5 waits freely only at a batch boundary. In the middle
of a batch the stream ends at once when only its own keys are out (nothing else could fill
the batch), and otherwise after `partial_wait` seconds without a new task. Keys it did not
get to are served by their owner, or by any recipe process after their lease expires; a
restart with the same owner gets its own keys back at once.

Memory does not grow with the number of keys already done: the stream holds only the keys
it has out right now.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tracker.durations import parse_duration
from tracker.errors import S3Error, UsageError
from tracker.filters import KeyFilter
from tracker.images import ImageLoader, ImageUnavailable
from tracker.lister import MAX_PAGE_SIZE, Lister
from tracker.models import utcnow
from tracker.records import AnswerRecord, Lease, SourceRef
from tracker.store import Store
from tracker.tasks import VIEW_IDS, AnswerError, answer_record, build_task, strip_image

log = logging.getLogger("tracker.stream")

#: Defaults shared by the recipe, `tracker demo` and the Python API.
DEFAULT_LEASE = timedelta(minutes=30)
DEFAULT_RESEND_AFTER = timedelta(minutes=5)
DEFAULT_BATCH_SIZE = 10
DEFAULT_POLL_INTERVAL = 2.0
#: Seconds to wait for other owners' keys to complete a partial batch before ending.
DEFAULT_PARTIAL_WAIT = 10.0


@dataclass
class StreamStats:
    """What one stream did; `tracker demo` and the benchmarks print these."""

    #: Tasks yielded (re-sent ones included).
    served: int = 0
    #: Keys this owner held at start and served again at once.
    reclaimed: int = 0
    #: Keys re-sent in this process after `resend_after` without an answer.
    resent: int = 0
    #: Keys marked failed (vanished, not an image, access denied).
    failed: int = 0
    #: ListObjectsV2 calls made by this stream.
    list_calls: int = 0
    #: Times the stream slept waiting for other leases.
    waits: int = 0
    #: Answers passed to `update`, and keys they newly annotated.
    answers: int = 0
    annotated: int = 0


class S3Stream:
    """One recipe process's stream over one source. Iterate it for tasks.

    `store` and `client` may be shared; `close()` closes the store only when
    `owns_store` is true (as `open_stream` sets it).
    """

    def __init__(
        self,
        store: Store,
        source: SourceRef,
        client: Any,
        *,
        owner: str,
        lease: timedelta = DEFAULT_LEASE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        resend_after: timedelta = DEFAULT_RESEND_AFTER,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        partial_wait: float = DEFAULT_PARTIAL_WAIT,
        view_id: str = "image_manual",
        label: str | None = None,
        presign: timedelta | None = None,
        key_filter: KeyFilter | None = None,
        page_size: int = MAX_PAGE_SIZE,
        loader: ImageLoader | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        owns_store: bool = False,
    ) -> None:
        if view_id not in VIEW_IDS:
            raise UsageError(f"unknown view id {view_id!r}; use one of {', '.join(VIEW_IDS)}")
        if batch_size < 1:
            raise UsageError("the batch size must be at least 1")
        if not owner:
            raise UsageError("the lease owner must not be empty")
        self.store = store
        self.source = source
        self.client = client
        self.owner = owner
        self.lease = lease
        self.batch_size = batch_size
        self.resend_after = resend_after
        self.poll_interval = poll_interval
        self.partial_wait = partial_wait
        self.view_id = view_id
        self.label = label
        self.key_filter = key_filter or KeyFilter()
        self.page_size = page_size
        self.loader = loader or ImageLoader(client, source.bucket, presign=presign)
        self.stats = StreamStats()
        self._clock = clock
        self._sleep = sleep
        self._owns_store = owns_store
        self._lock = threading.Lock()
        #: key -> when this process last leased it; only keys out right now.
        self._held: dict[str, datetime] = {}
        self._stopped = threading.Event()
        #: Tasks yielded so far: modulo `batch_size`, where Prodigy's current batch stands.
        self._yielded = 0

    # -- the stream -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.tasks()

    def tasks(self) -> Iterator[dict[str, Any]]:
        """Yield tasks until every key is annotated or failed, or `on_exit` was called."""
        recent: deque[str] = deque(maxlen=self.batch_size)
        idle_since: float | None = None
        leases = self.store.reclaim(self.source, self.owner, self.lease, now=self._clock())
        self.stats.reclaimed += len(leases)
        yield from self._serve(leases, recent)
        while not self._stopped.is_set():
            leases = self.store.claim(
                self.source, self.owner, self.batch_size, self.lease, now=self._clock()
            )
            if leases and (yield from self._serve(leases, recent)):
                idle_since = None
                continue
            if leases:
                continue  # all failed: claim again
            if self._list_one_page():
                continue
            now = self._clock()
            leases = self.store.reclaim(
                self.source,
                self.owner,
                self.lease,
                served_before=now - self.resend_after,
                limit=self.batch_size,
                now=now,
            )
            if leases and (yield from self._serve(leases, recent, resent=True)):
                idle_since = None
                continue
            work = self.store.open_work(self.source, self.owner)
            if work.done:
                return
            if self._yielded % self.batch_size:
                # Prodigy is waiting for the rest of a batch and cannot deliver the tasks
                # already yielded until it is full. Only other owners' keys could fill it:
                # wait for them a little (`partial_wait`), then end the stream so that the
                # partial batch reaches the annotator.
                if idle_since is None:
                    idle_since = time.monotonic()
                if not work.others_out or time.monotonic() - idle_since >= self.partial_wait:
                    log.info("ending with a partial batch; %d keys still out", work.served)
                    return
            self._wait(work.pending, work.next_expiry)

    def _list_one_page(self) -> bool:
        """List the next page if the listing is not exhausted; True when a page was read.

        The position comes from the state DB each time, so pages another process (a
        `tracker sync`, another recipe) listed meanwhile are not read again.
        """
        lister = Lister(
            self.store, self.source, self.client, self.key_filter, page_size=self.page_size
        )
        if lister.exhausted:
            return False
        try:
            page = lister.list_page()
        finally:
            self.stats.list_calls += lister.list_calls
        log.debug(
            "listed a page of %s: %d keys, %d new", self.source.uri, page.keys_seen, page.new_keys
        )
        return True

    def _serve(
        self, leases: Sequence[Lease], recent: deque[str], *, resent: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Yield tasks for leased keys; returns how many were yielded."""
        now = self._clock()
        with self._lock:
            for lease in leases:
                self._held[lease.key] = now
        yielded = 0
        for index, lease in enumerate(leases):
            if lease.key in recent:
                continue  # already in the batch being assembled: it comes round again later
            try:
                image = self.loader.load(lease.key, lease.size)
            except ImageUnavailable as error:
                self.store.mark_failed(self.source, lease.key, error.reason)
                self._forget([lease.key])
                self.stats.failed += 1
                log.warning("%s: %s", lease.key, error.reason)
                continue
            except S3Error:
                rest = [lease.key for lease in leases[index:]]
                self.store.release(self.source, self.owner, rest)
                self._forget(rest)
                raise
            recent.append(lease.key)
            self.stats.served += 1
            if resent:
                self.stats.resent += 1
            yielded += 1
            self._yielded += 1
            yield build_task(
                self.source.bucket,
                lease.key,
                image,
                size=lease.size,
                view_id=self.view_id,
                label=self.label,
            )
        return yielded

    def _wait(self, pending: int, next_expiry: datetime | None) -> None:
        """Sleep until something may be claimable: a poll, bounded by the next expiry or
        the next re-send of our own keys."""
        now = self._clock()
        delay = self.poll_interval
        if pending:
            delay = min(delay, 0.05)  # another claimer holds the rows for a moment
        if next_expiry is not None:
            delay = min(delay, max((next_expiry - now).total_seconds(), 0.0) + 0.01)
        with self._lock:
            oldest = min(self._held.values(), default=None)
        if oldest is not None:
            due = oldest + self.resend_after - now
            delay = min(delay, max(due.total_seconds(), 0.0) + 0.01)
        self.stats.waits += 1
        self._sleep(max(delay, 0.01))

    # -- callbacks ------------------------------------------------------------------------

    def record(self, answers: Iterable[dict[str, Any]]) -> int:
        """Record answers in the state DB; returns keys newly annotated.

        Reads the key from `meta.key` (or from `image` once `before_db` has set it to the
        S3 URI), never from image bytes, so it works before or after `before_db`. An
        answer that names no key of this bucket is logged and skipped.
        """
        records: list[AnswerRecord] = []
        for example in answers:
            try:
                records.append(answer_record(example, self.source.bucket))
            except AnswerError as error:
                log.warning("answer not recorded in the state DB: %s", error)
        annotated = self.store.record_answers(self.source, records, now=self._clock())
        self._forget([r.key for r in records])
        self.stats.answers += len(records)
        self.stats.annotated += annotated
        return annotated

    def update(self, answers: list[dict[str, Any]]) -> None:
        """Prodigy's `update` callback."""
        self.record(answers)

    def before_db(self, examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Prodigy's `before_db` callback: `image` becomes `s3://bucket/key`, no base64."""
        return [strip_image(example, self.source.bucket) for example in examples]

    def on_exit(self, ctrl: Any = None) -> int:
        """Prodigy's `on_exit` callback: stop, and release the keys this process holds
        without an answer. Returns how many went back to pending."""
        self._stopped.set()
        with self._lock:
            keys = list(self._held)
            self._held.clear()
        released = self.store.release(self.source, self.owner, keys) if keys else 0
        if self._owns_store:
            self.store.close()
        return released

    def close(self) -> None:
        """Stop without releasing (a crash, as far as the state DB can tell)."""
        self._stopped.set()
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> S3Stream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def held(self) -> frozenset[str]:
        """Keys this process has out right now (claimed, not answered, not released)."""
        with self._lock:
            return frozenset(self._held)

    def _forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._held.pop(key, None)


def default_owner(dataset: str, host: str | None = None) -> str:
    """`dataset@host`: stable across restarts on one machine, so a restart gets its keys back.

    Give each process its own `owner` when several serve one dataset from one host.
    """
    import socket

    return f"{dataset}@{host or socket.gethostname()}"


def open_stream(
    bucket: str,
    prefix: str = "",
    *,
    dataset: str | None = None,
    state_db: str | None = None,
    owner: str | None = None,
    lease: str | float | timedelta = DEFAULT_LEASE,
    resend_after: str | float | timedelta | None = None,
    presign: str | float | timedelta | None = None,
    endpoint_url: str | None = None,
    client: Any = None,
    store: Store | None = None,
    **options: Any,
) -> S3Stream:
    """Open the state DB (unless `store` is given), the source (created if new), an S3
    client, and a stream over them. Durations take `90s`, `30m`, `2h` or seconds.

    `owner` defaults to `default_owner(dataset)`; other keywords go to `S3Stream`.
    """
    from tracker.s3 import make_client
    from tracker.s3uri import validate_bucket

    validate_bucket(bucket)
    lease_td = parse_duration(lease)
    resend_td = parse_duration(resend_after) if resend_after is not None else None
    if resend_td is None:
        resend_td = min(DEFAULT_RESEND_AFTER, lease_td)
    presign_td = parse_duration(presign) if presign is not None else None
    if owner is None:
        if not dataset:
            raise UsageError("give a dataset or an owner for the stream's leases")
        owner = default_owner(dataset)
    client = client if client is not None else make_client(endpoint_url)
    owns_store = store is None
    opened = store if store is not None else Store.open(state_db)
    try:
        source = opened.source(bucket, prefix or "", create=True)
        return S3Stream(
            opened,
            source,
            client,
            owner=owner,
            lease=lease_td,
            resend_after=resend_td,
            presign=presign_td,
            owns_store=owns_store,
            **options,
        )
    except BaseException:
        if owns_store:
            opened.close()
        raise
