"""The annotation stream over the state DB: plain Python, no Prodigy import.

`S3Stream` is what the `stream_from_s3` recipe (and `tracker demo`) runs, for one Prodigy
dataset over one source:

- iterating it yields Prodigy tasks (`tracker.tasks.build_task`), claimed from the state
  DB under leases held by `owner`;
- `update(answers)` records answers; `before_db(examples)` swaps images for S3 URIs;
- `on_exit(ctrl)` hands back the keys this process holds and did not get answers for.

One process usually serves a whole team: every named Prodigy session pulls from this one
generator, from request threads. So "this process" is not "this annotator", and the rules
below never rely on who asked or on counting what was yielded:

1. On start the owner is registered in the state DB with a heartbeat (a second live
   process under the same owner is refused), and keys this owner still holds (a restart
   after a crash or Ctrl-C) are re-leased and served first.
2. Claim up to `batch_size` keys: expired leases first (a key leased `max_attempts` times
   without an answer is set aside as failed instead), then keys handed back, then new keys
   in listing order; in a ranked order (`order`: random, priority, by-prefix; the
   dataset's, see `Store.set_order`) every pending key by its rank instead. Leases of
   owners whose heartbeat stopped end early.
3. Each task is handed over only if its lease is still this process's and live at that
   moment (`Store.confirm`, fenced by the lease token), and the lease restarts then. A
   key whose lease ran out while it waited in this generator is never shown.
4. Nothing claimable and the listing not exhausted: list ONE more page (from the cursor in
   the state DB, so no page is ever read twice), record it, and claim again.
5. Nothing to claim but keys out under live leases: wait for one to expire. While
   Prodigy may be assembling a batch that holds tasks already yielded
   (`tracker.batching.mid_batch`), wait at most `partial_wait` seconds (and at most a
   quarter of the lease) and then end the stream, so that those tasks reach the
   annotator while their leases hold.
6. Every key annotated or failed: the stream ends.

A live lease is never re-sent, not even to another session of this process: a key comes
back only once its lease has expired and it was claimed again, each serve with its own
`_task_hash` (see `tracker.tasks.task_hash`).

Memory does not grow with the number of keys already done: the stream holds only the keys
it has out right now.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tracker.batching import mid_batch
from tracker.durations import parse_duration
from tracker.errors import OwnerInUse, S3Error, TrackerError, UsageError
from tracker.filters import KeyFilter
from tracker.images import ImageLoader, ImageUnavailable
from tracker.lister import MAX_PAGE_SIZE, Lister
from tracker.ordering import Order
from tracker.records import AnswerRecord, DatasetRef, Lease
from tracker.store import OwnerRegistration, Store
from tracker.tasks import VIEW_IDS, AnswerError, answer_record, build_task, strip_image

log = logging.getLogger("tracker.stream")

#: Defaults shared by the recipe, `tracker demo` and the Python API.
DEFAULT_LEASE = timedelta(minutes=30)
DEFAULT_BATCH_SIZE = 10
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_POLL_INTERVAL = 2.0
#: Seconds to wait for work while Prodigy may hold part of a batch, before ending.
DEFAULT_PARTIAL_WAIT = 2.0
#: Prodigy pulls a batch in a tight loop: a resume this soon after a task may be mid-batch.
DEFAULT_BATCH_GAP = 1.0
#: How often a stream tells the state DB it is alive, and when silence means dead.
DEFAULT_HEARTBEAT = timedelta(seconds=10)
DEFAULT_STALE_AFTER = timedelta(seconds=60)


@dataclass
class StreamStats:
    """What one stream did; `tracker demo` and the benchmarks print these."""

    #: Tasks yielded.
    served: int = 0
    #: Keys this owner held at start and served again at once.
    reclaimed: int = 0
    #: Claimed keys not handed over: their lease ended (or was taken) before their turn.
    lost: int = 0
    #: Keys marked failed (vanished, not an image).
    failed: int = 0
    #: ListObjectsV2 calls made by this stream.
    list_calls: int = 0
    #: Times the stream slept waiting for other leases.
    waits: int = 0
    #: Answers passed to `update`, and keys they newly annotated.
    answers: int = 0
    annotated: int = 0


class S3Stream:
    """One recipe process's stream for one dataset over one source. Iterate it for tasks.

    Registers `owner` in the state DB at once (`OwnerInUse` if another live process has
    it) and keeps a heartbeat until `on_exit` or `close`. `store` and `client` may be
    shared; `close()` closes the store only when `owns_store` is true.
    """

    def __init__(
        self,
        store: Store,
        dataset: DatasetRef,
        client: Any,
        *,
        owner: str,
        lease: timedelta = DEFAULT_LEASE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        partial_wait: float = DEFAULT_PARTIAL_WAIT,
        batch_gap: float = DEFAULT_BATCH_GAP,
        heartbeat: timedelta = DEFAULT_HEARTBEAT,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        view_id: str = "image_manual",
        label: str | None = None,
        presign: timedelta | None = None,
        key_filter: KeyFilter | None = None,
        page_size: int = MAX_PAGE_SIZE,
        loader: ImageLoader | None = None,
        sleep: Callable[[float], None] = time.sleep,
        owns_store: bool = False,
        order: str | None = None,
        seed: int | None = None,
    ) -> None:
        if view_id not in VIEW_IDS:
            raise UsageError(f"unknown view id {view_id!r}; use one of {', '.join(VIEW_IDS)}")
        if batch_size < 1:
            raise UsageError("the batch size must be at least 1")
        if max_attempts < 1:
            raise UsageError("max attempts must be at least 1")
        if not owner:
            raise UsageError("the lease owner must not be empty")
        if heartbeat >= stale_after:
            raise UsageError("the heartbeat must be shorter than the time that makes it stale")
        self.store = store
        self.dataset = dataset
        self.source = dataset.source
        self.client = client
        self.owner = owner
        self.lease = lease
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        # A partial batch Prodigy holds must reach its annotator well inside its leases.
        self.partial_wait = min(partial_wait, lease.total_seconds() / 4)
        self.batch_gap = batch_gap
        self.stale_after = stale_after
        self.view_id = view_id
        self.label = label
        self.key_filter = key_filter or KeyFilter()
        self.page_size = page_size
        self.loader = loader or ImageLoader(client, self.source.bucket, presign=presign)
        self.stats = StreamStats()
        self._sleep = sleep
        self._owns_store = owns_store
        self._lock = threading.Lock()
        #: key -> its lease, for the keys this process has out right now.
        self._held: dict[str, Lease] = {}
        self._stopped = threading.Event()
        #: Prodigy may be holding tasks of ours for a batch it has not sent (`mid_batch`).
        self._mid_batch = False
        #: time.monotonic() of the last answers `update` recorded (None: none yet).
        self._answered_at: float | None = None
        # The order is the dataset's, shared by every process serving it: None keeps it.
        wanted = Order.parse(order, seed) if order is not None or seed is not None else None
        self._registration = register(store, owner, stale_after)
        try:
            if wanted is not None and store.set_order(dataset, wanted):
                log.info("%s: serving in %s order from now on", dataset.label, wanted)
            self.order = wanted or store.order(dataset)
        except BaseException:
            # No heartbeat will ever keep this registration: left behind, it would refuse
            # this owner's next start (in this process, or on this host) as "in use".
            with contextlib.suppress(Exception):
                store.unregister_owner(self._registration)
            raise
        self._beating = threading.Event()
        self._heart = threading.Thread(
            target=self._beat, args=(heartbeat.total_seconds(),), daemon=True
        )
        self._heart.start()

    # -- the stream -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.tasks()

    def tasks(self) -> Iterator[dict[str, Any]]:
        """Yield tasks until every key is annotated or failed, or `on_exit` was called."""
        leases = self.store.reclaim(self.dataset, self.owner, self.lease)
        self.stats.reclaimed += len(leases)
        yield from self._serve(leases)
        waiting_since: float | None = None
        while not self._stopped.is_set():
            leases = self.store.claim(
                self.dataset,
                self.owner,
                self.batch_size,
                self.lease,
                max_attempts=self.max_attempts,
                stale_after=self.stale_after,
            )
            if leases:
                if (yield from self._serve(leases)):
                    waiting_since = None
                continue
            if self._list_one_page():
                continue
            work = self.store.open_work(self.dataset, self.owner)
            if work.done:
                return
            if self._mid_batch:
                # Prodigy may hold tasks we yielded, waiting to fill a batch it cannot send
                # while we block: wait a little for more work, then end so they reach the
                # annotator. Keys still out come back through their leases.
                waiting_since = waiting_since or time.monotonic()
                left = self.partial_wait - (time.monotonic() - waiting_since)
                if left <= 0:
                    log.info(
                        "%s: ending the stream so that Prodigy can send its partial batch; "
                        "%d keys still out under leases",
                        self.dataset.label,
                        work.served,
                    )
                    return
                # Never sleep past the bound: a longer sleep lets the yielded tasks' own
                # leases run out, and they would be claimed again into the same batch.
                self._wait(work.pending, work.next_expiry_in, at_most=left)
                continue
            self._wait(work.pending, work.next_expiry_in)

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

    def _serve(self, leases: Sequence[Lease]) -> Generator[dict[str, Any], None, int]:
        """Yield tasks for leased keys, each confirmed at hand-over; returns how many."""
        with self._lock:
            self._held.update((lease.key, lease) for lease in leases)
        yielded = 0
        for index, lease in enumerate(leases):
            if self._stopped.is_set():
                self._release(leases[index:])
                break
            try:
                image = self.loader.load(lease.key, lease.size)
            except ImageUnavailable as error:
                self.store.mark_failed(self.dataset, lease.key, error.reason)
                self._forget([lease.key])
                self.stats.failed += 1
                log.warning("%s: %s", lease.key, error.reason)
                continue
            except S3Error:
                self._release(leases[index:])
                raise
            confirmed = self.store.confirm(lease, self.lease)
            if confirmed is None:
                # Expired while it waited here, or taken by someone else: never shown.
                self._forget([lease.key])
                self.stats.lost += 1
                continue
            with self._lock:
                if lease.key in self._held:
                    self._held[lease.key] = confirmed
            self.stats.served += 1
            yielded += 1
            task = build_task(
                self.source.bucket,
                lease.key,
                image,
                size=lease.size,
                view_id=self.view_id,
                label=self.label,
                serve=lease.serves,
            )
            handed = time.monotonic()
            yield task
            self._mid_batch = mid_batch(handed, time.monotonic(), self._answered_at, self.batch_gap)
        return yielded

    def _wait(
        self, pending: int, next_expiry_in: float | None, at_most: float | None = None
    ) -> None:
        """Sleep until something may be claimable: a poll, bounded by the next expiry
        (and by `at_most`)."""
        delay = self.poll_interval if at_most is None else min(self.poll_interval, at_most)
        if pending:
            delay = min(delay, 0.05)  # another claimer holds the rows for a moment
        if next_expiry_in is not None:
            delay = min(delay, max(next_expiry_in, 0.0) + 0.01)
        self.stats.waits += 1
        self._sleep(max(delay, 0.01))

    def _beat(self, interval: float) -> None:
        """The heartbeat thread: until stopped, tell the state DB this owner is alive."""
        while not self._beating.wait(interval):
            try:
                alive = self.store.heartbeat(self._registration)
            except TrackerError as error:  # the DB is away for a moment: try next time
                log.warning("heartbeat not recorded: %s", error)
                continue
            if not alive:
                log.error(
                    "lease owner %r was taken over by another process; this stream stops",
                    self.owner,
                )
                self._stopped.set()
                return

    # -- callbacks ------------------------------------------------------------------------

    def record(self, answers: Iterable[dict[str, Any]]) -> int:
        """Record answers in the state DB; returns keys newly annotated.

        Reads the key from `meta.key` (or from `image` once `before_db` has set it to the
        S3 URI), never from image bytes, so it works before or after `before_db`. An answer
        for a key outside this source, or one this dataset was never served (Prodigy's
        answer endpoint takes anything posted to it), is logged and not recorded.
        """
        records: list[AnswerRecord] = []
        for example in answers:
            try:
                record = answer_record(example, self.source.bucket)
            except AnswerError as error:
                log.warning("answer not recorded in the state DB: %s", error)
                continue
            if not record.key.startswith(self.source.prefix):
                log.warning("answer not recorded: its key is outside %s", self.source.uri)
                continue
            records.append(record)
        self._answered_at = time.monotonic()
        annotated = self.store.record_answers(self.dataset, records, served_only=True)
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
        without an answer (each only while its lease is still ours). Returns how many went
        back to pending."""
        self._stopped.set()
        with self._lock:
            held = list(self._held.values())
            self._held.clear()
        try:
            return self.store.release(self.dataset, self.owner, held) if held else 0
        finally:
            self._shut_down()

    def close(self) -> None:
        """Stop without releasing: the leases stay until they expire or a restart under
        the same owner takes them back."""
        self._stopped.set()
        self._shut_down()

    def _shut_down(self) -> None:
        if self._beating.is_set():
            return
        self._beating.set()
        self._heart.join()
        try:
            self.store.unregister_owner(self._registration)
        finally:
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

    def _release(self, leases: Sequence[Lease]) -> None:
        self._forget([lease.key for lease in leases])
        self.store.release(self.dataset, self.owner, leases)

    def _forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._held.pop(key, None)


def register(store: Store, owner: str, stale_after: timedelta) -> OwnerRegistration:
    """Register `owner`, taking over a registration left by a dead process on this host
    at once (its pid is gone), and one from elsewhere once its heartbeat is stale."""
    try:
        return store.register_owner(owner, stale_after=stale_after)
    except OwnerInUse as error:
        if error.host != socket.gethostname() or _pid_alive(error.pid):
            raise
        return store.register_owner(owner, stale_after=stale_after, dead=(error.host, error.pid))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def default_owner(dataset: str, host: str | None = None, port: int | str | None = None) -> str:
    """`dataset@host:port`: unique among live processes (two servers on one host cannot
    share a port) and stable across restarts, so a restart gets its keys back at once.
    Without a port, this process's id stands in (unique, but a restart is a new owner)."""
    where = port if port is not None else f"pid{os.getpid()}"
    return f"{dataset}@{host or socket.gethostname()}:{where}"


def open_stream(
    bucket: str,
    prefix: str = "",
    *,
    dataset: str,
    state_db: str | None = None,
    owner: str | None = None,
    port: int | str | None = None,
    lease: str | float | timedelta = DEFAULT_LEASE,
    presign: str | float | timedelta | None = None,
    endpoint_url: str | None = None,
    client: Any = None,
    store: Store | None = None,
    **options: Any,
) -> S3Stream:
    """Open the state DB (unless `store` is given), the source and dataset (created if
    new), an S3 client, and a stream over them. Durations take `90s`, `30m`, `2h` or
    seconds. `owner` defaults to `default_owner(dataset, port=port)`; other keywords go to
    `S3Stream`.
    """
    from tracker.s3 import make_client
    from tracker.s3uri import validate_bucket

    validate_bucket(bucket)
    if not dataset:
        raise UsageError("the dataset name must not be empty")
    lease_td = parse_duration(lease)
    presign_td = parse_duration(presign) if presign is not None else None
    for name in ("heartbeat", "stale_after"):
        if name in options and not isinstance(options[name], timedelta):
            options[name] = parse_duration(options[name])
    owner = owner or default_owner(dataset, port=port)
    client = client if client is not None else make_client(endpoint_url)
    owns_store = store is None
    opened = store if store is not None else Store.open(state_db)
    try:
        source = opened.source(bucket, prefix or "", create=True)
        return S3Stream(
            opened,
            opened.dataset(source, dataset, create=True),
            client,
            owner=owner,
            lease=lease_td,
            presign=presign_td,
            owns_store=owns_store,
            **options,
        )
    except BaseException:
        if owns_store:
            opened.close()
        raise
