"""`tracker status`'s report (`tracker.report`) shown as a rich table or plain text."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tracker.cli.output import escape_controls
from tracker.dbcheck import CheckReport
from tracker.durations import format_duration
from tracker.report import untouched_status
from tracker.states import Answer

# -- rendering ----------------------------------------------------------------------------


def _n(value: int) -> str:
    return f"{value:,}"


def _pct(part: int, whole: int) -> str:
    return f" ({100 * part / whole:.1f}%)" if whole else ""


def _listing_text(listing: dict[str, Any]) -> str:
    parts = [
        f"{_n(listing['pages_listed'])} pages",
        # Keys the listing added to the state DB, all runs together (after filters); "keys
        # listed" is what `sync` calls the objects S3 returned in one run.
        f"{_n(listing['keys_listed'])} keys added by listing",
        "token saved" if listing["token_saved"] else "no token saved",
        "exhausted" if listing["exhausted"] else "not exhausted",
    ]
    shards = listing.get("shards")
    if shards and not shards["finished"]:
        parts.append(
            f"parallel: {shards['done']}/{shards['total']} shards done, "
            f"{_n(shards['keys_listed'])} keys"
        )
    return ", ".join(parts)


def _changes_text(status: dict[str, Any]) -> str:
    event = status["last_event_at"]
    return (
        f"{_n(status['deleted'])} deleted, {_n(status['changed'])} changed since answered; "
        f"last event: {event if event is not None else 'none (not watched)'}"
    )


def _inventory_text(inventory: dict[str, Any]) -> str:
    snapshot = inventory["snapshot_at"]
    when = f"snapshot of {snapshot[:16].replace('T', ' ')} UTC" if snapshot else "undated"
    if inventory["finished"]:
        done = "read"
    else:
        done = f"{inventory['files_read']}/{inventory['files']} files read so far"
    return (
        f"{when}, {done}: {_n(inventory['keys_recorded'])} keys added "
        f"({escape_controls(inventory['manifest'])})"
    )


def _eta_text(status: dict[str, Any], exhausted: bool) -> str:
    rate = status["annotated_last_hour"]
    if status["remaining"] == 0:
        eta = "nothing left" + ("" if exhausted else " (listing goes on)")
    elif status["eta_seconds"] is None:
        eta = "unknown (no annotation in the last hour)"
    else:
        eta = format_duration(timedelta(seconds=status["eta_seconds"]))
        if status["eta_is_lower_bound"]:
            eta = f"at least {eta} (listing not exhausted)"
        else:
            eta = f"about {eta}"
    return f"{_n(rate)} annotated in the last hour; time left: {eta}"


def status_rows(status: dict[str, Any]) -> list[tuple[str, Text]]:
    """(label, value) pairs for a source and each of its datasets; every value a `Text`,
    so no key is ever read as markup."""
    last_key = status["listing"]["last_key"]
    rows = [
        ("keys", Text(_n(status["total"]))),
        ("listing", Text(_listing_text(status["listing"]))),
        ("last key", Text(escape_controls(last_key) if last_key is not None else "-")),
        ("bucket", Text(_changes_text(status))),
    ]
    inventory = status["listing"].get("inventory")
    if inventory is not None:
        rows.append(("inventory", Text(_inventory_text(inventory))))
    entries = status["datasets"] or [
        {
            "name": None,
            **untouched_status(status["total"] - status["deleted"], status["listing"]["exhausted"]),
        }
    ]
    for entry in entries:
        name = entry["name"]
        rows.append(
            ("dataset", Text(escape_controls(name) if name else "none yet (every key pending)"))
        )
        rows += _dataset_rows(entry, status["total"], status["listing"]["exhausted"])
    return rows


def _dataset_rows(entry: dict[str, Any], total: int, exhausted: bool) -> list[tuple[str, Text]]:
    states = entry["states"]
    answers = entry["answers"]
    served = f"{_n(states['served'])}{_pct(states['served'], total)}"
    if entry["expired_leases"]:
        served += f", {_n(entry['expired_leases'])} with an expired lease"
    return [
        ("  pending", Text(f"{_n(states['pending'])}{_pct(states['pending'], total)}")),
        ("  served", Text(served, style="yellow" if entry["expired_leases"] else "")),
        (
            "  annotated",
            Text(
                f"{_n(states['annotated'])}{_pct(states['annotated'], total)}: "
                + ", ".join(f"{_n(answers[a.value])} {a.value}" for a in Answer),
                style="green",
            ),
        ),
        ("  failed", Text(_n(states["failed"]), style="red" if states["failed"] else "")),
        (
            "  bucket",
            Text(
                f"{_n(entry.get('deleted_annotated', 0))} annotated keys deleted, "
                f"{_n(entry.get('changed', 0))} changed since answered",
                style="yellow" if entry.get("deleted_annotated") or entry.get("changed") else "",
            ),
        ),
        ("  progress", Text(_eta_text(entry, exhausted))),
    ]


#: The annotator table's columns, after the session.
ANNOTATOR_COLUMNS = (
    *(a.value for a in Answer),
    "last hour",
    "median s",
    "last answer",
    "owner",
    "leased",
)


def annotator_cells(entry: dict[str, Any]) -> list[str]:
    """One annotator's row: its session, then `ANNOTATOR_COLUMNS`; controls escaped."""
    median = entry["median_seconds_to_answer"]
    last = entry["last_answer_at"]
    return [
        escape_controls(entry["session"]),
        *(_n(entry["answers"][a.value]) for a in Answer),
        _n(entry["answered_last_hour"]),
        f"{median:.1f}" if median is not None else "-",
        last[:19].replace("T", " ") if last else "-",
        escape_controls(entry["owner"]) if entry["owner"] else "-",
        _n(entry["leased_to_owner"]),
    ]


def annotator_tables(report: dict[str, Any]) -> list[Table]:
    """A rich table of annotators per dataset that has any."""
    tables = []
    for status in report["sources"]:
        for entry in status["datasets"]:
            if not entry["annotators"]:
                continue
            table = Table(
                title=Text(f"annotators of {status['source']} {entry['name']}", style="bold"),
                title_justify="left",
            )
            table.add_column("session", overflow="fold")
            for column in ANNOTATOR_COLUMNS:
                table.add_column(column, justify="right" if column != "owner" else "left")
            for annotator in entry["annotators"]:
                table.add_row(*(Text(cell) for cell in annotator_cells(annotator)))
            tables.append(table)
    return tables


def annotator_lines(entry: dict[str, Any]) -> list[str]:
    """Plain lines for a dataset's annotators (no terminal), one each:
    `  annotator:    DATASET SESSION: accept 2, reject 0, ...`."""
    lines = []
    for annotator in entry["annotators"]:
        session, *cells = annotator_cells(annotator)
        pairs = ", ".join(
            f"{name} {cell}" for name, cell in zip(ANNOTATOR_COLUMNS, cells, strict=True)
        )
        lines.append(f"  {'annotator:':<13} {escape_controls(entry['name'])} {session}: {pairs}")
    return lines


def render_status(console: Console, report: dict[str, Any], *, rich: bool) -> None:
    """Print the report: rich tables on a terminal, `label: value` lines otherwise."""
    database = report["database"]
    if not report["sources"]:
        console.print(Text(f"database: {database}"))
        console.print(Text("no source yet: run `tracker sync s3://BUCKET[/PREFIX]`"))
        return
    if rich:
        tables = []
        for status in report["sources"]:
            table = Table(
                title=Text(status["source"], style="bold"),
                show_header=False,
                title_justify="left",
                min_width=60,
            )
            table.add_column(style="bold", no_wrap=True)
            table.add_column(overflow="fold")
            for label, value in status_rows(status):
                table.add_row(Text(label), value)
            tables.append(table)
        console.print(Group(*tables, *annotator_tables(report)))
        console.print(Text(f"database: {database}", style="dim"))
        return
    console.print(Text(f"database: {database}"))
    for status in report["sources"]:
        console.print(Text(f"source: {status['source']}"))
        for label, value in status_rows(status):
            console.print(Text(f"  {label + ':':<13} {value.plain}"))
        for entry in status["datasets"]:
            for line in annotator_lines(entry):
                console.print(Text(line))


def render_check(console: Console, report: CheckReport) -> None:
    """`tracker db check`: the numbers that differ, then the tables that need a hand."""
    if report.differences:
        table = Table(title="counters that differ from the recount", title_justify="left")
        for column in ("source", "dataset", "number", "counters", "recount"):
            table.add_column(
                column, justify="right" if column in ("counters", "recount") else "left"
            )
        for d in report.differences:
            table.add_row(
                escape_controls(d.source),
                escape_controls(d.dataset or "(source)"),
                d.name,
                _n(d.kept),
                _n(d.recounted),
            )
        console.print(table)
    else:
        console.print("counters: every number equals its recount")
    if report.advice:
        table = Table(title="table statistics (PostgreSQL)", title_justify="left")
        for column in ("table", "problem", "fix"):
            table.add_column(column)
        for name, problem, command in report.advice:
            table.add_row(name, problem, command)
        console.print(table)
    elif report.tables:
        console.print("statistics: every tracker table is analyzed and without bloat")
