"""`tracker db upgrade|current|check|copy`: the state DB's schema, its counters recounted,
and moving it to another DB."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.output import stderr, stdout, write_lines
from tracker.cli.tables import render_check
from tracker.copy import CopyMismatch, CopyReport, copy_database
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
from tracker.dbcheck import check as run_check
from tracker.errors import CountsDiffer


@cli.group()
def db() -> None:
    """Upgrade, check or copy the state DB.

    Its schema (upgrade, current), its counters recounted (check), and a copy into another
    DB (copy).

    \b
    Example:
      tracker db current
      tracker --db postgresql://annotate@db/tracker db upgrade
      tracker db copy --to postgresql://annotate@db/tracker
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


@db.command()
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="The DB to copy into: a PostgreSQL URL, or sqlite:///PATH (created if missing).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Empty the target's tables first (in the copy's transaction) when it holds state; "
    "without it a non-empty target is refused (exit 6).",
)
@click.pass_obj
def copy(app: AppContext, target: str, replace: bool) -> None:
    """Copy the whole state DB (--db) into another DB: SQLite <-> PostgreSQL.

    Every table (sources, cursors, keys, datasets, leases, answers, owners, shards,
    priorities, inventory ingests...) is copied with its ids, from one consistent snapshot
    of the source, in one transaction on the target, which is migrated to this version's
    schema first; row counts and highest ids are checked before it commits. The source is
    only read. Processes still running against the source keep writing there: stop the
    recipes, copy, and restart them with the new --db / TRACKER_DB_URL.

    Exit codes: 0 copied and verified; 1 the copy differs (rolled back); 2 the same DB
    twice; 4 a DB cannot be used (bad URL, unreachable, source not at this schema);
    6 the target holds state and --replace was not given. On failure the target is left
    as it was.

    \b
    Example:
      tracker db copy --to postgresql://annotate@db/tracker
      tracker --db postgresql://annotate@db/tracker db copy --to sqlite:///laptop.db
      tracker db copy --to postgresql://annotate@db/tracker --replace
    """
    with _copy_progress() as progress:
        try:
            report = copy_database(app.db_url, target, replace=replace, progress=progress)
        except CopyMismatch as mismatch:
            _print_copy_report(mismatch.report)
            raise
    _print_copy_report(report)
    seconds = max(report.seconds, 1e-9)
    stdout.print(
        f"copied {report.rows:,} rows from {report.source} to {report.target} "
        f"(schema {report.revision}{', target emptied first' if report.replaced else ''}) "
        f"in {report.seconds:.1f} s, {report.rows / seconds:,.0f} rows/s; verified"
    )


@contextmanager
def _copy_progress() -> Iterator[Callable[[str, int, int], None] | None]:
    """A bar per table on a terminal; nothing otherwise (the summary says it all)."""
    if not stderr.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description:<20}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def update(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=max(total, 1))
            bar.update(tasks[table], completed=done)

        yield update


def _print_copy_report(report: CopyReport) -> None:
    """Rows and highest id per table, in the source and the target."""

    def shown(value: int | None) -> str:
        return "" if value is None else f"{value:,}"

    header = ("table", "source rows", "target rows", "source max id", "target max id", "")
    rows = [
        (
            t.name,
            shown(t.source_rows),
            shown(t.target_rows),
            shown(t.source_max_id),
            shown(t.target_max_id),
            "ok" if t.ok else "DIFFERS",
        )
        for t in report.tables
    ]
    if not stdout.is_terminal:  # a pipe or a log: plain columns, never cut short
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            numbers = zip(row[1:], widths[1:], strict=True)
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in numbers]
            stdout.print("  ".join(cells).rstrip())
        return
    table = Table()
    table.add_column(header[0], no_wrap=True, min_width=max(len(r[0]) for r in rows))
    for name in header[1:]:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*row)
    stdout.print(table)


@db.command()
@click.option(
    "--repair",
    is_flag=True,
    help="Rewrite every counter from the recount (one transaction), and ANALYZE the "
    "tables with stale statistics (PostgreSQL). VACUUM is never run: its command is printed.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object (its fields: docs/cli.md)."
)
@click.pass_obj
def check(app: AppContext, repair: bool, as_json: bool) -> None:
    """Recount every source and dataset and compare with the counters behind `status`;
    on PostgreSQL, report tables with stale statistics or dead-tuple bloat and the
    command that fixes each.

    Exits 7 when a counter differs from the recount (after --repair: when one still does).
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
