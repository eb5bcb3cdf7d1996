"""`tracker demo`: the whole job on a throw-away local S3 server, in one command.

1. Start SeaweedFS on loopback (`tracker.locals3`), in a temporary folder.
2. Fill a bucket with a few hundred small generated PNGs; one is deleted after it was
   listed (the stream marks it `failed`: visible and requeue-able, never dropped).
3. Annotate as Prodigy would, through the recipe's own stream (`tracker.stream`): answer
   batches, let one batch drop (a browser reload), then kill the process and restart it.
4. Count the S3 requests the restart cost, and run the seed recipe's algorithm against the
   same bucket to count what it would have cost (botocore event hooks count every request
   sent).
5. Print the status table, and clean up: server stopped, temporary folder removed, even on
   Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import colorsys
import logging
import os
import random
import shutil
import signal
import socket
import struct
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Container, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from tracker.records import ItemFilter
from tracker.states import ItemState

#: The demo's Prodigy dataset; the stream's lease owner is `<dataset>@<host>`.
DATASET = "tracker_demo"
#: The prefix the images live under.
PREFIX = "images/"
#: Tasks per batch, as Prodigy's default `batch_size`.
BATCH = 10

# -- images -------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png(width: int, height: int, pixel: Callable[[int, int], tuple[int, int, int]]) -> bytes:
    """A valid 8-bit RGB PNG, written with zlib and struct (no imaging library)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            rows.extend(pixel(x, y))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _chunk(b"IEND", b"")
    )


def demo_image(index: int, width: int = 64, height: int = 48) -> bytes:
    """Image `index`: a coloured background with a lighter square that moves with the index."""
    hue = (index * 47 % 360) / 360
    back = tuple(int(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.55, 0.85))
    front = tuple(int(c * 255) for c in colorsys.hsv_to_rgb((hue + 0.5) % 1, 0.35, 1.0))
    side = 12 + index % 9
    left = (index * 7) % (width - side)
    top = (index * 5) % (height - side)

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        inside = left <= x < left + side and top <= y < top + side
        return front if inside else back  # type: ignore[return-value]

    return png(width, height, pixel)


# -- counting S3 requests -----------------------------------------------------------------


class RequestCounter:
    """Counts the requests a boto3 client sends, by operation (retries included)."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-send.s3", self._count)

    def _count(self, event_name: str = "", **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        self.counts["LIST" if operation.startswith("ListObjects") else operation] += 1
        # returning None lets the request go out

    def reset(self) -> None:
        self.counts.clear()

    def snapshot(self) -> dict[str, int]:
        return {"LIST": self.counts["LIST"], "GET": self.counts["GetObject"]}


def seed_first_image(
    client: Any, bucket: str, prefix: str, in_dataset: Container[str], page_size: int
) -> str | None:
    """The seed recipe's restart, up to its first image: list from the first page, skip keys
    already in the Prodigy dataset, read the first new object. Returns its key.

    (The seed pages with ListObjects v1; the same pages through v2 cost the same calls.)
    """
    paginator = client.get_paginator("list_objects_v2")
    params: dict[str, Any] = {"Bucket": bucket, "PaginationConfig": {"PageSize": page_size}}
    if prefix:
        params["Prefix"] = prefix
    for page in paginator.paginate(**params):
        for obj in page.get("Contents", []):
            key: str = obj["Key"]
            if key == f"{prefix.rstrip('/')}/" or key in in_dataset:
                continue
            client.get_object(Bucket=bucket, Key=key)["Body"].read()
            return key
    return None


# -- the demo -----------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What the demo measured; `tracker demo` prints it."""

    bucket: str
    source_uri: str
    db_url: str
    images: int
    page_size: int
    first_session: dict[str, int] = field(default_factory=dict)
    restart: dict[str, int] = field(default_factory=dict)
    seed_restart: dict[str, int] = field(default_factory=dict)
    seed_first_key: str | None = None
    our_first_key: str | None = None
    reclaimed: int = 0
    annotated_before_restart: int = 0
    report: dict[str, Any] = field(default_factory=dict)
    kept_db: str | None = None


class Reporter:
    """How the demo talks: a step line, a progress bar, a note. The CLI gives a rich one."""

    def step(self, text: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    @contextmanager
    def progress(self, text: str, total: int | None) -> Iterator[Callable[[int], None]]:
        yield lambda advance: None


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (and SIGHUP) raise KeyboardInterrupt, so the clean-up below still runs."""

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _NoteHandler(logging.Handler):
    def __init__(self, reporter: Reporter) -> None:
        super().__init__(logging.WARNING)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        self.reporter.note(f"stream: {record.getMessage()}")


@contextmanager
def _stream_log_to(reporter: Reporter) -> Iterator[None]:
    """The stream's warnings (e.g. a key marked failed) become notes in the demo's output."""
    logger = logging.getLogger("tracker.stream")
    handler = _NoteHandler(reporter)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _delete_a_listed_key(store: Any, client: Any, bucket: str, reporter: Reporter) -> None:
    """Delete the last key listed and not served yet: the stream will find it gone."""
    dataset = store.dataset(store.source(bucket, PREFIX), DATASET)
    where = ItemFilter(states=frozenset({ItemState.PENDING}))
    last = None
    for row in store.iter_items(dataset, where):
        last = row.key
    if last is not None:
        client.delete_object(Bucket=bucket, Key=last)
        reporter.note(f"deleted {last} from the bucket (listed, not served yet)")


def _answers(tasks: list[dict[str, Any]], rng: random.Random, session: str) -> list[dict[str, Any]]:
    answered = []
    for task in tasks:
        answer = rng.choices(["accept", "reject", "ignore"], weights=[7, 2, 1])[0]
        answered.append({**task, "answer": answer, "_session_id": session})
    return answered


def _answer(stream: Any, tasks: list[dict[str, Any]], rng: random.Random) -> None:
    """What Prodigy does with a batch the annotator answered: `update`, then `before_db`."""
    answers = _answers(tasks, rng, f"{DATASET}-newcomer")
    stream.update(answers)
    stream.before_db(answers)


def run_demo(
    reporter: Reporter,
    *,
    db_url: str | None = None,
    images: int = 300,
    page_size: int = 50,
    keep: bool = False,
    workdir: Path | None = None,
) -> DemoResult:
    """Run the whole demo; see the module docstring. `db_url=None`: a temporary SQLite DB."""
    from tracker.locals3 import SeaweedFS, weed_binary
    from tracker.report import status_report
    from tracker.store import Store
    from tracker.stream import open_stream

    if images < 3 * BATCH:
        from tracker.errors import UsageError

        raise UsageError(f"the demo needs at least {3 * BATCH} images")
    weed_binary()  # before anything is made: without SeaweedFS, one line saying what to install
    tmp = Path(tempfile.mkdtemp(prefix="tracker-demo-", dir=workdir))
    server = SeaweedFS(tmp / "s3")
    (tmp / "s3").mkdir()
    store = None
    streams: list[Any] = []
    kept = False
    try:
        with _terminate_as_interrupt(), _stream_log_to(reporter):
            reporter.step("Starting a local S3 server (SeaweedFS) on 127.0.0.1")
            with reporter.progress("starting SeaweedFS", None):
                server.start()
            client = server.client()
            counter = RequestCounter(client)

            bucket = "tracker-demo" if db_url is None else f"tracker-demo-{os.urandom(3).hex()}"
            client.create_bucket(Bucket=bucket)
            reporter.step(f"Filling s3://{bucket}/{PREFIX} with {images} generated PNG images")
            with reporter.progress("uploading", images) as advance:
                for index in range(images):
                    client.put_object(
                        Bucket=bucket,
                        Key=f"{PREFIX}{index:04d}.png",
                        Body=demo_image(index),
                        ContentType="image/png",
                    )
                    advance(1)

            url = db_url or f"sqlite:///{tmp / 'state.db'}"
            store = Store.open(url)
            result = DemoResult(
                bucket=bucket,
                source_uri=f"s3://{bucket}/{PREFIX}",
                db_url=store.url,
                images=images,
                page_size=page_size,
            )
            rng = random.Random(7)
            owner = f"{DATASET}@{socket.gethostname()}"

            def stream() -> Any:
                opened = open_stream(
                    bucket,
                    PREFIX,
                    dataset=DATASET,
                    owner=owner,
                    store=store,
                    client=client,
                    batch_size=BATCH,
                    page_size=page_size,
                    lease="30m",
                )
                streams.append(opened)
                return opened

            # -- first session: answer, drop a batch, answer, get killed ---------------------
            before_drop = max(1, (images * 2 // 5) // BATCH)
            reporter.step(
                f"Annotating as Prodigy would (owner {owner}, batches of {BATCH}, "
                f"S3 pages of {page_size} keys): {before_drop} batches answered, one "
                "dropped by a browser reload, 2 more answered, then the process is killed; "
                "meanwhile someone deletes an object from the bucket after it was listed"
            )
            counter.reset()
            first = stream()
            tasks = iter(first)
            with reporter.progress("first session", before_drop + 3) as advance:
                for number in range(before_drop):
                    _answer(first, list(islice(tasks, BATCH)), rng)
                    advance(1)
                    if number == 0:
                        _delete_a_listed_key(store, client, bucket, reporter)
                dropped = list(islice(tasks, BATCH))  # sent, never answered
                advance(1)
                for _ in range(2):
                    _answer(first, list(islice(tasks, BATCH)), rng)
                    advance(1)
            first.close()  # killed: no on_exit, the leases stay in the state DB
            result.first_session = counter.snapshot()
            source = store.source(bucket, PREFIX)
            dataset = store.dataset(source, DATASET)
            counts = store.counts(dataset)
            result.annotated_before_restart = counts.state(ItemState.ANNOTATED)
            held = counts.state(ItemState.SERVED)
            more = ", and keys claimed for the next one" if held > len(dropped) else ""
            reporter.note(
                f"killed with {held} keys served and unanswered (the dropped batch of "
                f"{len(dropped)}{more}), {result.annotated_before_restart} annotated"
            )

            # -- the restart: what it costs us, and what the seed's approach would cost -----
            reporter.step("Restarting the recipe on the same state DB")
            counter.reset()
            second = stream()
            tasks = iter(second)
            batch = [next(tasks)]
            result.restart = counter.snapshot()
            result.our_first_key = batch[0]["meta"]["key"]
            batch += list(islice(tasks, BATCH - 1))
            result.reclaimed = second.stats.reclaimed

            in_dataset = {
                row.key
                for row in store.iter_items(
                    dataset, ItemFilter(states=frozenset({ItemState.ANNOTATED}))
                )
            }
            counter.reset()
            result.seed_first_key = seed_first_image(client, bucket, PREFIX, in_dataset, page_size)
            result.seed_restart = counter.snapshot()

            # Only full batches that exist: the stream would otherwise (rightly) wait for
            # the leases still out.
            left = images - 1 - result.annotated_before_restart
            after = max(1, min(5, left // BATCH))
            with reporter.progress("second session", after) as advance:
                _answer(second, batch, rng)
                advance(1)
                for _ in range(after - 1):
                    _answer(second, list(islice(tasks, BATCH)), rng)
                    advance(1)
            released = second.on_exit(None)
            reporter.note(
                f"restarted session answered {after} batches and stopped cleanly "
                f"({released} keys handed back)"
            )
            result.report = status_report(store, [source])
            if keep:
                kept = True
                result.kept_db = url if db_url is None else store.url
            return result
    finally:
        for opened in streams:
            with suppress(Exception):
                opened.close()
        if store is not None:
            store.close()
        server.stop()
        if kept and db_url is None:
            shutil.rmtree(tmp / "s3", ignore_errors=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
