"""`tracker demo`: the newcomer's first command."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from click.core import ParameterSource
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table
from rich.text import Text

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.output import stderr, stdout
from tracker.cli.tables import render_status
from tracker.demo import DemoResult, Reporter, run_demo


class ConsoleReporter(Reporter):
    """Steps on stdout; progress bars on stderr, only when it is a terminal."""

    def __init__(self, out: Console, err: Console) -> None:
        self.out = out
        self.err = err

    def step(self, text: str) -> None:
        self.out.print(Text("• ", style="bold cyan") + Text(text))

    def note(self, text: str) -> None:
        self.out.print(Text(f"  {text}", style="dim"))

    @contextmanager
    def progress(self, text: str, total: int | None) -> Iterator[Callable[[int], None]]:
        if not self.err.is_terminal:
            yield lambda advance: None
            return
        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        with Progress(*columns, console=self.err, transient=True) as bar:
            task = bar.add_task(text, total=total)
            yield lambda advance: bar.advance(task, advance)


def _cost_table(result: DemoResult, rich: bool) -> None:
    ours, seed = result.restart, result.seed_restart
    title = "S3 requests from the restart to the first image on screen"
    rows = [
        ("this tracker (state DB: leases, saved cursor)", ours, result.our_first_key),
        ("the seed's recipe (re-list from page 1, skip annotated)", seed, result.seed_first_key),
    ]
    if rich:
        table = Table(title=Text(title, style="bold"), title_justify="left")
        table.add_column("restart")
        table.add_column("LIST", justify="right")
        table.add_column("GET", justify="right")
        table.add_column("first image")
        for label, counts, key in rows:
            table.add_row(
                Text(label), Text(str(counts["LIST"])), Text(str(counts["GET"])), Text(key or "-")
            )
        stdout.print(table)
    else:
        stdout.print(Text(title + ":"))
        for label, counts, key in rows:
            stdout.print(
                Text(f"  {label}: {counts['LIST']} LIST, {counts['GET']} GET (first image {key})")
            )
    annotated = result.annotated_before_restart
    stdout.print(
        Text(
            f"With {annotated} keys annotated and pages of {result.page_size}, the seed re-lists "
            f"every page before its first new image: at 100,000 annotations and S3's "
            f"1,000-key pages that is ~100 LIST calls per restart. The tracker needs at most "
            f"one, whatever was done before ({result.reclaimed} keys it held were served "
            "again at once, without waiting for their leases)."
        )
    )


@cli.command()
@click.option(
    "--images",
    type=click.IntRange(30, 100_000),
    default=300,
    show_default=True,
    help="How many generated images to put in the demo bucket.",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="Keys per LIST page (S3's default is 1000; smaller makes a few hundred images span "
    "several pages, as a big bucket would).",
)
@click.option(
    "--keep", is_flag=True, help="Keep the demo's state DB for inspection (the S3 data goes)."
)
@click.pass_context
def demo(ctx: click.Context, images: int, page_size: int, keep: bool) -> None:
    """Run the whole job on a throw-away local S3 server, in one command.

    Starts SeaweedFS on 127.0.0.1, fills a bucket with generated images, annotates through
    the recipe's stream as Prodigy would (answers, a dropped batch, a killed process, a
    restart), then prints the status table and the S3 requests the restart cost next to
    what the seed recipe's approach costs. Everything is removed afterwards, also on
    Ctrl-C. The state DB is a temporary SQLite file unless --db is given on the command
    line (TRACKER_DB_URL is ignored, so the demo never writes into a project's DB).

    \b
    Example:
      tracker demo
      tracker demo --images 1000 --keep
    """
    app: AppContext = ctx.obj
    root = ctx.find_root()
    explicit = root.get_parameter_source("db_url") == ParameterSource.COMMANDLINE
    rich = stdout.is_terminal
    result = run_demo(
        ConsoleReporter(stdout, stderr),
        db_url=app.db_url if explicit else None,
        images=images,
        page_size=page_size,
        keep=keep,
    )
    stdout.print()
    render_status(stdout, result.report, rich=rich)
    stdout.print()
    _cost_table(result, rich)
    if result.kept_db:
        stdout.print()
        stdout.print(Text(f"State DB kept: {result.kept_db}"))
        stdout.print(Text(f"  tracker --db {result.kept_db} keys --state failed --format jsonl"))
    stdout.print(Text("Local S3 server stopped and its data removed."))
