"""`tracker db upgrade|current`: the state DB's schema."""

from __future__ import annotations

import click

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.output import stdout
from tracker.db import create_db_engine, ensure_schema, head_revision, masked, translate_db_errors


@cli.group()
def db() -> None:
    """Inspect and upgrade the state DB's schema.

    \b
    Example:
      tracker db current
      tracker --db postgresql://annotate@db/tracker db upgrade
    """


@db.command()
@click.pass_obj
def upgrade(app: AppContext) -> None:
    """Create the state DB, or upgrade it to this version's schema.

    Every command does this on first use; run it explicitly before a team starts.

    \b
    Example:
      tracker db upgrade
    """
    engine = create_db_engine(app.db_url)
    try:
        ensure_schema(engine)
        stdout.print(f"{masked(engine.url)} is at schema revision {head_revision()}")
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
    from alembic.runtime.migration import MigrationContext

    engine = create_db_engine(app.db_url)
    try:
        with translate_db_errors(engine.url), engine.connect() as conn:
            revision = MigrationContext.configure(conn).get_current_revision()
        stdout.print(f"database: {masked(engine.url)}")
        stdout.print(f"current:  {revision or '(empty: no schema yet)'}")
        stdout.print(f"head:     {head_revision()}")
    finally:
        engine.dispose()
