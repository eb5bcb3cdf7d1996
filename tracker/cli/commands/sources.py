"""`tracker sources`: the sources a state DB knows."""

from __future__ import annotations

import json

import click

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.output import write_lines
from tracker.display import printable


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON lines: uri, bucket, prefix.")
@click.pass_obj
def sources(app: AppContext, as_json: bool) -> None:
    """List the sources (s3://BUCKET[/PREFIX]) in the state DB, one per line.

    \b
    Example:
      tracker sources
      tracker --db postgresql://annotate@db/tracker sources --json
    """
    known = app.store.sources()
    if as_json:
        write_lines(
            json.dumps({"uri": s.uri, "bucket": s.bucket, "prefix": s.prefix}, ensure_ascii=True)
            + "\n"
            for s in known
        )
    else:
        write_lines(f"{printable(s.uri)}\n" for s in known)
