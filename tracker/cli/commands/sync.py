"""`tracker sync s3://BUCKET[/PREFIX]`: list a bucket into the state DB, resumably."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import click
from click.core import ParameterSource
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.options import aws_options, filter_options, key_filter_from
from tracker.cli.output import print_info, print_warning, stderr, stdout
from tracker.cli.stopping import StopRequest
from tracker.db import masked
from tracker.errors import Interrupted, SourceNotFound, UsageError
from tracker.filters import KeyFilter
from tracker.inventory import Ingestion, IngestResult, open_manifest, require_pyarrow
from tracker.lister import MAX_PAGE_SIZE, Lister, PageResult
from tracker.parallel import CLIENT_POOL, ParallelLister, open_plan, shards_done
from tracker.redact import url_secrets
from tracker.s3 import make_client
from tracker.s3uri import parse_source_uri

#: A sync that added at least this many keys refreshes PostgreSQL's statistics after it
#: (`Store.analyze`): plans chosen for an empty table would scan millions of rows.
ANALYZE_AFTER_KEYS = 100_000

#: Without a terminal, at most one progress line per this many seconds (plus the summary).
PLAIN_PROGRESS_EVERY_S = 2.0


@dataclass
class Tally:
    """What this run listed so far."""

    started: float = field(default_factory=time.monotonic)
    pages: int = 0
    keys: int = 0
    new: int = 0

    def add(self, page: PageResult) -> None:
        self.pages += page.pages
        self.keys += page.keys_seen
        self.new += page.new_keys

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.keys / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.pages:,} page{'' if self.pages == 1 else 's'}, "
            f"{self.keys:,} keys listed ({self.new:,} new), "
            f"{self.rate:,.0f} keys/s"
        )


PAGE_STOP = "stopping after the current page is committed (press Ctrl-C again to stop now)"
BATCH_STOP = "stopping after the current batch is committed (press Ctrl-C again to stop now)"

#: Stands for `"$TRACKER_DB_URL"` (quoted for the shell, unexpanded) in a resume line.
ENV_DB_PLACEHOLDER = "\0TRACKER_DB_URL\0"


def resume_command(ctx: click.Context, uri: str, options: dict[str, Any]) -> str:
    """The command line that continues this sync: same DB, endpoint and filters."""
    words = ["tracker"]
    parent = ctx.parent
    env_db = False
    if parent is not None and parent.get_parameter_source("db_url") is ParameterSource.COMMANDLINE:
        url = parent.params["db_url"]
        if url_secrets(url) or masked(url) != url:
            # A masked password cannot be pasted, and the clear one must not be printed:
            # the line reads the URL from the environment instead.
            words += ["--db", ENV_DB_PLACEHOLDER]
            env_db = True
        else:
            words += ["--db", url]
    # (A URL that came from $TRACKER_DB_URL is still there for the resumed command.)
    words += ["sync", uri]
    for name in ("endpoint_url", "profile", "region"):
        if options[name]:
            words += [f"--{name.replace('_', '-')}", options[name]]
    if options["page_size"] != MAX_PAGE_SIZE:
        words += ["--page-size", str(options["page_size"])]
    for value in options["ext"]:
        words += ["--ext", value]
    for value in options["match"]:
        words += ["--match", value]
    if options["all_objects"]:
        words.append("--all-objects")
    if options["inventory"]:
        words += ["--inventory", options["inventory"]]
    line = shlex.join(words).replace(shlex.quote(ENV_DB_PLACEHOLDER), '"$TRACKER_DB_URL"')
    if env_db:
        line += "  (with TRACKER_DB_URL set to the state DB's URL)"
    return line


@cli.command()
@click.argument("uri", metavar="s3://BUCKET[/PREFIX]")
@click.option(
    "--endpoint-url",
    metavar="URL",
    help="S3-compatible server (MinIO, SeaweedFS, ...) [boto3 also reads AWS_ENDPOINT_URL_S3].",
)
@aws_options
@click.option(
    "--page-size",
    type=click.IntRange(1, MAX_PAGE_SIZE),
    default=MAX_PAGE_SIZE,
    show_default=True,
    help="Keys per LIST call; each page is committed with its cursor.",
)
@click.option(
    "--max-pages",
    type=click.IntRange(min=1),
    metavar="N",
    help="Stop after N pages (run again to continue).",
)
@click.option(
    "--from-start",
    is_flag=True,
    help="List again from the first page, to find objects added before the cursor. "
    "Known keys keep their state.",
)
@filter_options
@click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    metavar="N",
    help="List with N concurrent LIST chains over disjoint key ranges found from the "
    "bucket; each range's cursor is saved with its pages. A parallel listing under way is "
    "resumed by any later sync.",
)
@click.option(
    "--inventory",
    metavar="s3://BUCKET/PATH",
    help="Read the keys from an S3 Inventory report instead of listing: its manifest.json, "
    "or the folder holding its dated report folders (the newest is read). Needs "
    "pip install 's3-annotation-tracker[inventory]'. Resumable. It adds keys and leaves "
    "the listing cursor as it was (a report may not cover the whole source): the next sync "
    "still lists what the report may have missed, once.",
)
@click.pass_context
def sync(ctx: click.Context, /, uri: str, **options: Any) -> None:
    """List s3://BUCKET[/PREFIX] into the state DB, continuing where the last sync stopped.

    Each page of keys is committed together with the listing cursor, so an interrupted or
    killed sync loses nothing and the next one reads no page twice (at most the one page
    that was in flight). A finished listing is continued after its last key: objects
    added since, that sort after it, cost one LIST call. Use --from-start to find objects
    added earlier in the listing order.

    With --parallel N, the key range is split into shards listed side by side, each
    resumable on its own; the source's cursor is exhausted once every shard is.

    Ctrl-C stops after the current page is committed (every chain's page, in parallel).

    \b
    Example:
      tracker sync s3://my-bucket/images/
      tracker sync s3://my-bucket/images/ --ext jpg,png --match 'images/raw/*.dng'
      tracker sync s3://my-bucket/images/ --endpoint-url http://127.0.0.1:8333 --max-pages 10
      tracker --db postgresql://annotate@db/tracker sync s3://my-bucket/images/ --from-start
      tracker sync s3://my-bucket/images/ --parallel 8
      tracker sync s3://my-bucket/images/ --inventory s3://inventories/daily/  # needs real AWS
    """
    app: AppContext = ctx.obj
    app.creates_db = True
    bucket, prefix = parse_source_uri(uri)
    key_filter = key_filter_from(options)
    if options["inventory"]:
        _sync_inventory(ctx, app, bucket, prefix, key_filter, options)
        return
    if _parallel_wanted(app, bucket, prefix, options):
        _sync_parallel(ctx, app, uri, bucket, prefix, key_filter, options)
        return
    client = make_client(
        options["endpoint_url"], profile=options["profile"], region=options["region"]
    )
    lister = Lister.open(
        app.store,
        bucket,
        prefix,
        client,
        key_filter,
        page_size=options["page_size"],
        from_start=options["from_start"],
        warn=print_warning,
    )
    tally = Tally()
    with StopRequest(PAGE_STOP).installed() as stop, _progress(lister.uri, tally) as show:

        def on_page(page: PageResult) -> None:
            tally.add(page)
            show()

        lister.run(
            max_pages=options["max_pages"], should_stop=lambda: stop.requested, on_page=on_page
        )
    if tally.new >= ANALYZE_AFTER_KEYS:
        app.store.analyze()
    if stop.requested and not lister.exhausted:
        again = resume_command(ctx, lister.uri, options)
        if options["from_start"]:
            again += "  (without --from-start it continues from the saved cursor)"
        raise Interrupted(
            f"interrupted after {tally.pages:,} pages ({tally.new:,} new keys), all "
            f"committed; resume with: {again}"
        )
    state = "listing complete" if lister.exhausted else "more to list: run again to continue"
    stdout.print(f"{lister.uri}: {tally.line()}; {state}")
    report_deleted(lister.uri, lister.deleted)


def _sync_inventory(
    ctx: click.Context,
    app: AppContext,
    bucket: str,
    prefix: str,
    key_filter: KeyFilter,
    options: dict[str, Any],
) -> None:
    """`sync --inventory`: a report's keys instead of a listing (see `tracker.inventory`)."""
    for name in ("from_start", "max_pages"):
        if options[name]:
            raise UsageError(f"--{name.replace('_', '-')} is for listing; drop it or --inventory")
    if options["parallel"] > 1:
        raise UsageError("--parallel is for listing; drop it or --inventory")
    require_pyarrow()
    client = make_client(
        options["endpoint_url"], profile=options["profile"], region=options["region"]
    )
    ingestion = Ingestion(
        app.store, client, open_manifest(client, options["inventory"]), bucket, prefix, key_filter
    )
    manifest = ingestion.manifest
    print_info(
        f"{ingestion.uri}: reading inventory {manifest.uri} ({manifest.file_format}, "
        f"{len(manifest.files)} files, snapshot {manifest.snapshot})"
    )
    started = time.monotonic()
    last = [started]

    def on_batch(result: IngestResult) -> None:
        now = time.monotonic()
        if now - last[0] >= PLAIN_PROGRESS_EVERY_S:
            last[0] = now
            print_info(f"{ingestion.uri}: {_inventory_line(result, now - started)}")

    with StopRequest(BATCH_STOP).installed() as stop:
        result = ingestion.run(should_stop=lambda: stop.requested, on_batch=on_batch)
    if result.already:
        stdout.print(f"{ingestion.uri}: inventory {manifest.uri} was already read; nothing to do")
        return
    line = _inventory_line(result, time.monotonic() - started)
    if not result.finished:
        again = resume_command(ctx, ingestion.uri, options)
        raise Interrupted(f"interrupted after {line}, all committed; resume with: {again}")
    stdout.print(
        f"{ingestion.uri}: inventory of {manifest.snapshot} read: {line}; "
        f"{_listing_after_inventory(app, bucket, prefix)}"
    )


def _listing_after_inventory(app: AppContext, bucket: str, prefix: str) -> str:
    """What the next sync lists: an inventory leaves the cursor where it was, since no
    report proves which range of the source it covers (see `tracker.inventory`)."""
    cursor = app.store.cursor(app.store.source(bucket, prefix))
    if cursor.exhausted:
        return "the listing was complete and stays so: the next sync lists only keys after its last"
    if cursor.last_key is None:
        return (
            "the listing cursor is unchanged: the next sync lists the source once, "
            "for keys the report may not hold"
        )
    return "the listing cursor is unchanged: the next sync continues the listing where it stopped"


def _inventory_line(result: IngestResult, elapsed: float) -> str:
    rate = result.rows / elapsed if elapsed > 0 else 0.0
    return (
        f"{result.files:,} files, {result.rows:,} rows read, {result.taken:,} keys taken "
        f"({result.new:,} new), {rate:,.0f} rows/s"
    )


def _parallel_wanted(app: AppContext, bucket: str, prefix: str, options: dict[str, Any]) -> bool:
    """--parallel N > 1, or a parallel listing under way (resumed even by a plain sync);
    but a finished listing continues after its last key with one chain (one LIST)."""
    if open_plan(app.store, bucket, prefix) is not None and not options["from_start"]:
        return True
    if options["parallel"] <= 1:
        return False
    if options["from_start"]:
        return True
    try:
        source = app.store.source(bucket, prefix)
    except SourceNotFound:
        return True
    return not app.store.cursor(source).exhausted


def _sync_parallel(
    ctx: click.Context,
    app: AppContext,
    uri: str,
    bucket: str,
    prefix: str,
    key_filter: KeyFilter,
    options: dict[str, Any],
) -> None:
    chains = options["parallel"]
    clients = [
        make_client(options["endpoint_url"], profile=options["profile"], region=options["region"])
        for _ in range(-(-chains // CLIENT_POOL))
    ]
    lister = ParallelLister(
        app.store,
        bucket,
        prefix,
        clients,
        key_filter,
        chains=chains,
        page_size=options["page_size"],
        from_start=options["from_start"],
        warn=print_warning,
    )
    plan = lister.plan()
    assert lister.source is not None
    deleted_before = app.store.deleted_count(lister.source)
    if lister.result.resumed:
        print_info(f"{lister.uri}: resuming a parallel listing ({shards_done(plan)})")
    tally = Tally()
    max_pages = options["max_pages"]
    with StopRequest(PAGE_STOP).installed() as stop, _progress(lister.uri, tally) as on_page:

        def counted(page: PageResult) -> None:
            tally.add(page)
            on_page()

        result = lister.run(
            plan=plan,
            should_stop=lambda: (
                stop.requested or (max_pages is not None and tally.pages >= max_pages)
            ),
            on_page=counted,
        )
    if tally.new >= ANALYZE_AFTER_KEYS:
        app.store.analyze()
    shards = f"{result.shards_done}/{result.shards} shards done"
    if stop.requested and not result.exhausted:
        again = resume_command(ctx, lister.uri, options)
        if chains > 1:
            again += f" --parallel {chains}"
        raise Interrupted(
            f"interrupted after {tally.pages:,} pages ({tally.new:,} new keys, {shards}), all "
            f"committed; resume with: {again}"
        )
    state = "listing complete" if result.exhausted else "more to list: run again to continue"
    stdout.print(f"{lister.uri}: {tally.line()}; {chains} chains, {shards}; {state}")
    report_deleted(lister.uri, app.store.deleted_count(lister.source) - deleted_before)


def report_deleted(uri: str, count: int) -> None:
    """What a complete pass found gone from the bucket."""
    if count > 0:
        stdout.print(
            f"{uri}: {count:,} keys no longer in the bucket, marked deleted (never served "
            "again; answers are kept: `tracker keys --deleted`)"
        )


@contextmanager
def _progress(uri: str, tally: Tally) -> Iterator[Any]:
    """A live rich display on a terminal; otherwise a plain line now and then on stderr."""
    if not stderr.is_terminal:
        last = [0.0]

        def plain() -> None:
            now = time.monotonic()
            if tally.pages == 1 or now - last[0] >= PLAIN_PROGRESS_EVERY_S:
                last[0] = now
                print_info(f"{uri}: {tally.line()}")

        yield plain
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        TextColumn("{task.fields[pages]:,} pages", markup=False),
        TextColumn("{task.completed:,.0f} keys ({task.fields[new]:,} new)", markup=False),
        TextColumn("{task.fields[rate]:,.0f} keys/s", markup=False),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task(uri, total=None, pages=0, new=0, rate=0.0)

        def live() -> None:
            progress.update(
                task, completed=tally.keys, pages=tally.pages, new=tally.new, rate=tally.rate
            )

        yield live
