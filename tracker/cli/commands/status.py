"""`tracker status`: where each source stands."""

from __future__ import annotations

import json

import click

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.live import watch as follow
from tracker.cli.options import dataset_option, source_argument
from tracker.cli.output import stdout, write_lines
from tracker.cli.tables import render_status
from tracker.errors import UsageError
from tracker.report import status_report


@cli.command()
@source_argument
@dataset_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object (its fields: docs/cli.md)."
)
@click.option(
    "--watch",
    type=click.FloatRange(min=0.1),
    is_flag=False,
    flag_value=2.0,
    default=None,
    metavar="[SECONDS]",
    help="Redraw every SECONDS (default 2) until Ctrl-C; plain lines when not a terminal. "
    "SECONDS is optional: name SOURCE before --watch.",
)
@click.pass_obj
def status(
    app: AppContext, source: str | None, dataset: str | None, as_json: bool, watch: float | None
) -> None:
    """Show keys by state, answers, expired leases, listing progress and time left, for
    each dataset of each source (--dataset: that one only).

    Without SOURCE, shows every source in the state DB. Counts come from counters the
    database keeps (`tracker db check` recounts them), so this stays fast at millions of keys.

    \b
    Example:
      tracker status
      tracker status s3://my-bucket/images/ --json | jq .sources[0].states
      tracker status --watch 5                        # until Ctrl-C
      tracker status s3://my-bucket/images/ --watch   # until Ctrl-C
    """
    store = app.store
    sources = [app.source(source)] if source is not None else store.sources()
    if watch is not None:
        if as_json:
            raise UsageError("--watch and --json do not go together; poll --json instead")
        follow(
            stdout, lambda: status_report(store, sources, dataset), watch, live=stdout.is_terminal
        )
        return
    report = status_report(store, sources, dataset)
    if as_json:
        write_lines([json.dumps(report, ensure_ascii=True, indent=2), "\n"])
        return
    render_status(stdout, report, rich=stdout.is_terminal)
