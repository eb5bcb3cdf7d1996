"""`tracker priority`: set keys' priorities for `--order priority`."""

from __future__ import annotations

import click

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.output import print_info
from tracker.cli.priorityfile import read_priority_file


@cli.command()
@click.argument("source", metavar="SOURCE")
@click.argument("file", metavar="FILE")
@click.pass_obj
def priority(app: AppContext, source: str, file: str) -> None:
    """Set a priority per key from FILE (CSV with columns key,priority, or JSON lines with
    "key" and "priority"; - for stdin): the recipe's `--order priority` serves the highest
    first, ties and keys without one in listing order.

    The whole file is checked before anything is written: a bad line is named and nothing
    changes. Keys not listed yet keep their priority until they are. Setting a key again
    replaces its priority; datasets already serving in priority order pick it up at once.

    \b
    Example:
      tracker priority s3://my-bucket/images/ uncertainty.csv
      jq -c '{key, priority: .score}' scores.jsonl | tracker priority s3://my-bucket/images/ -
    """
    priorities = read_priority_file(file)
    # Priorities may come before the first listing, as `sync` may: the DB is made if new.
    app.creates_db = True
    ref = app.source(source, create=True)
    known = app.store.set_priorities(ref, priorities)
    print_info(
        f"{len(priorities)} priorities set for {ref.uri}: {known} of the keys listed, "
        f"{len(priorities) - known} applied when they are"
    )
