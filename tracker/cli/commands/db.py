"""`tracker db upgrade|current|check`: the state DB's schema, and its counters recounted."""

from __future__ import annotations

import json

import click

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.output import stdout, write_lines
from tracker.cli.tables import render_check
from tracker.db import (
    create_db_engine,
    current_revision,
    ensure_schema,
    head_revision,
    masked,
    require_existing,
    translate_db_errors,
)
from tracker.dbcheck import check as run_check
from tracker.errors import CountsDiffer


@cli.group()
def db() -> None:
    """Inspect and upgrade the state DB's schema; check its counters.

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
        ensure_schema(engine, dataset=dataset)
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


@db.command()
@click.option(
    "--repair",
    is_flag=True,
    help="Rewrite every counter from the recount (one transaction), and ANALYZE the "
    "tables with stale statistics (PostgreSQL). VACUUM is never run: its command is printed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (see README).")
@click.pass_obj
def check(app: AppContext, repair: bool, as_json: bool) -> None:
    """Recount every source and dataset and compare with the counters behind `status`;
    on PostgreSQL, report tables with stale statistics or dead-tuple bloat and the
    command that fixes each.

    Exits 6 when a counter differs from the recount (after --repair: when one still does).
    The recount reads every row: seconds per million keys.

    \b
    Example:
      tracker db check
      tracker db check --repair
      tracker --db postgresql://annotate@db/tracker db check --json
    """
    store = app.store
    report = run_check(store)
    repaired: list[str] = []
    if repair and report.differences:
        store.repair_counts()
        repaired.append("counters rewritten from the recount")
    if repair:
        stale = sorted({t for t, _, c in report.advice if c == f"ANALYZE {t}"})
        if stale:
            store.analyze_tables(stale)
            repaired.append("ran " + "; ".join(f"ANALYZE {t}" for t in stale))
    if repaired:
        report = run_check(store)
    if as_json:
        payload = report.to_json()
        payload["repaired"] = repaired
        write_lines([json.dumps(payload, ensure_ascii=True, indent=2), "\n"])
    else:
        render_check(stdout, report)
        for line in repaired:
            stdout.print(f"repaired: {line}")
    if report.differences:
        raise CountsDiffer(
            f"{len(report.differences)} counted numbers differ from the recount; "
            "`tracker db check --repair` rewrites the counters"
        )
