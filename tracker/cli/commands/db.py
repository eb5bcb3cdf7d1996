"""`tracker db upgrade|current`: the state DB's schema."""

from __future__ import annotations

import click

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.output import stdout
from tracker.db import (
    create_db_engine,
    current_revision,
    ensure_schema,
    head_revision,
    masked,
    require_existing,
    translate_db_errors,
    vacuum_hint,
)


@cli.group()
def db() -> None:
    """Inspect and upgrade the state DB's schema.

    \b
    Example:
      tracker db current
      tracker --db postgresql://annotate@db/tracker db upgrade
    """


@db.command()
@click.option(
    "--dataset",
    metavar="NAME",
    help="The Prodigy dataset that existing annotation state belongs to, when upgrading "
    "a DB whose lease owners and sessions do not name exactly one.",
)
@click.pass_obj
def upgrade(app: AppContext, dataset: str | None) -> None:
    """Create the state DB, or upgrade it to this version's schema.

    Every command does this on first use; run it explicitly before a team starts. A DB
    from before datasets (schema 0001) keeps its state under the dataset its lease owners
    and sessions name; when they name none or several, the upgrade stops, changes nothing
    and asks for `--dataset NAME`, which then applies to every such source.

    \b
    Example:
      tracker db upgrade
      tracker db upgrade --dataset cats_v1
    """
    engine = create_db_engine(app.db_url)  # creates a new SQLite file: that is its job
    try:
        with translate_db_errors(engine.url), engine.connect() as conn:
            before = current_revision(conn)
        ensure_schema(engine, dataset=dataset)
        stdout.print(f"{masked(engine.url)} is at schema revision {head_revision()}")
        hint = vacuum_hint(engine.url, before)
        if hint:
            stdout.print(hint)
    finally:
        engine.dispose()


@db.command()
@click.pass_obj
def current(app: AppContext) -> None:
    """Print the DB's schema revision and the one this version of the code expects.

    \b
    Example:
      tracker db current
    """
    require_existing(app.db_url)  # reading a revision must not create a DB
    engine = create_db_engine(app.db_url)
    try:
        with translate_db_errors(engine.url), engine.connect() as conn:
            revision = current_revision(conn)
        stdout.print(f"database: {masked(engine.url)}")
        stdout.print(f"current:  {revision or '(empty: no schema yet)'}")
        stdout.print(f"head:     {head_revision()}")
    finally:
        engine.dispose()
