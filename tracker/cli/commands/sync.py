"""`tracker sync s3://BUCKET[/PREFIX]`: list a bucket into the state DB, resumably."""

from __future__ import annotations

import shlex
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import click
from click.core import ParameterSource
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.output import print_info, print_warning, stderr, stdout
from tracker.db import masked
from tracker.errors import Interrupted, UsageError
from tracker.filters import KeyFilter
from tracker.lister import MAX_PAGE_SIZE, Lister, PageResult
from tracker.s3 import make_client
from tracker.s3uri import parse_s3_uri

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
        self.pages += 1
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


class StopRequest:
    """SIGINT/SIGTERM: the first asks to stop after the page being committed; the second
    stops at once (a page's transaction is atomic, so that loses nothing either)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print_info("stopping after the current page is committed (press Ctrl-C again to stop now)")

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        previous = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def parse_extensions(values: tuple[str, ...]) -> list[str] | None:
    """`--ext jpg,png --ext .TIF` -> ["jpg", "png", ".TIF"]; None when not given."""
    if not values:
        return None
    extensions = [part.strip() for value in values for part in value.split(",")]
    if not all(e.strip(".") for e in extensions):
        raise UsageError(f"empty extension in --ext {','.join(values)!r}")
    return extensions


def resume_command(ctx: click.Context, uri: str, options: dict[str, Any]) -> str:
    """The command line that continues this sync: same DB, endpoint and filters."""
    words = ["tracker"]
    parent = ctx.parent
    if parent is not None and parent.get_parameter_source("db_url") is ParameterSource.COMMANDLINE:
        words += ["--db", masked(parent.params["db_url"])]
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
    return shlex.join(words)


@cli.command()
@click.argument("uri", metavar="s3://BUCKET[/PREFIX]")
@click.option(
    "--endpoint-url",
    metavar="URL",
    help="S3-compatible server (MinIO, SeaweedFS, ...) [boto3 also reads AWS_ENDPOINT_URL_S3].",
)
@click.option("--profile", metavar="NAME", help="AWS profile [default: boto3's chain].")
@click.option("--region", metavar="NAME", help="AWS region [default: boto3's chain].")
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
@click.option(
    "--ext",
    multiple=True,
    metavar="EXT[,EXT...]",
    help="Take objects with these extensions, any case (repeatable) "
    "[default: jpg jpeg png gif webp bmp tif tiff].",
)
@click.option(
    "--match",
    multiple=True,
    metavar="GLOB",
    help="Take objects whose whole key matches GLOB (`*` also matches `/`; repeatable). "
    "Without --ext, only the globs decide.",
)
@click.option(
    "--all-objects",
    is_flag=True,
    help="Take every object (still never `folder/` placeholders or zero-byte objects).",
)
@click.pass_context
def sync(ctx: click.Context, uri: str, **options: Any) -> None:
    """List s3://BUCKET[/PREFIX] into the state DB, continuing where the last sync stopped.

    Each page of keys is committed together with the listing cursor, so an interrupted or
    killed sync loses nothing and the next one reads no page twice (at most the one page
    that was in flight). A finished listing is continued after its last key: objects
    added since, that sort after it, cost one LIST call. Use --from-start to find objects
    added earlier in the listing order.

    Ctrl-C stops after the current page is committed.

    \b
    Example:
      tracker sync s3://my-bucket/images/
      tracker sync s3://my-bucket --ext jpg,png --match 'raw/*.dng'
      tracker sync s3://my-bucket --endpoint-url http://127.0.0.1:8333 --max-pages 10
      tracker --db postgresql://annotate@db/tracker sync s3://my-bucket --from-start
    """
    app: AppContext = ctx.obj
    bucket, prefix = parse_s3_uri(uri)
    if options["all_objects"] and (options["ext"] or options["match"]):
        raise UsageError("--all-objects takes every object: drop --ext / --match, or it")
    key_filter = KeyFilter.build(
        parse_extensions(options["ext"]), options["match"], all_objects=options["all_objects"]
    )
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
    with StopRequest().installed() as stop, _progress(lister.uri, tally) as on_page:
        lister.run(
            max_pages=options["max_pages"],
            should_stop=lambda: stop.requested,
            on_page=lambda page: (tally.add(page), on_page()),
        )
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
