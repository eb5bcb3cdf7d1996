"""`tracker status`: where each source stands."""

from __future__ import annotations

import json

import click

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.options import dataset_option, source_argument
from tracker.cli.output import stdout, write_lines
from tracker.cli.tables import render_status
from tracker.report import status_report


@cli.command()
@source_argument
@dataset_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (see README).")
@click.pass_obj
def status(app: AppContext, source: str | None, dataset: str | None, as_json: bool) -> None:
    """Show keys by state, answers, expired leases, listing progress and time left, for
    each dataset of each source (--dataset: that one only).

    Without SOURCE, shows every source in the state DB. Counts come from indexes, so this
    stays fast at millions of keys.

    \b
    Example:
      tracker status
      tracker status s3://my-bucket/images/ --json | jq .sources[0].states
    """
    store = app.store
    sources = [app.source(source)] if source is not None else store.sources()
    report = status_report(store, sources, dataset)
    if as_json:
        write_lines([json.dumps(report, ensure_ascii=True, indent=2), "\n"])
        return
    render_status(stdout, report, rich=stdout.is_terminal)
