"""`tracker status`'s numbers: gathered once, shown as JSON, a rich table, or plain text.

The JSON shape is part of the CLI's contract (documented in the README, checked by
`tests/test_cli_status.py`); new fields may be added, existing ones keep their meaning.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tracker.cli.params import escape_controls
from tracker.durations import format_duration
from tracker.models import Answer, ItemState, utcnow
from tracker.records import SourceRef
from tracker.store import Store

#: Version of `tracker status --json`'s shape.
STATUS_FORMAT = 1


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def source_status(store: Store, source: SourceRef, now: datetime) -> dict[str, Any]:
    """One source's numbers: a handful of indexed count queries and the cursor row."""
    counts = store.counts(source, now=now)
    cursor = store.cursor(source)
    states = {state.value: counts.state(state) for state in ItemState}
    answers = {answer.value: counts.by_answer.get(answer, 0) for answer in Answer}
    remaining = states["pending"] + states["served"]
    rate = counts.annotated_last_hour
    eta = remaining / rate * 3600 if rate and remaining else (0.0 if not remaining else None)
    return {
        "source": source.uri,
        "bucket": source.bucket,
        "prefix": source.prefix,
        "total": counts.total,
        "states": states,
        "answers": answers,
        "expired_leases": counts.expired_leases,
        "listing": {
            "pages_listed": cursor.pages_listed,
            "keys_listed": cursor.keys_listed,
            "token_saved": cursor.continuation_token is not None,
            "exhausted": cursor.exhausted,
            "exhausted_at": _iso(cursor.exhausted_at),
            "last_key": cursor.last_key,
            "updated_at": _iso(cursor.updated_at),
        },
        "annotated_last_hour": rate,
        "remaining": remaining,
        "eta_seconds": round(eta, 1) if eta is not None else None,
        # Until the listing is exhausted, more keys may come: the estimate is a lower bound.
        "eta_is_lower_bound": not cursor.exhausted,
    }


def status_report(store: Store, sources: list[SourceRef]) -> dict[str, Any]:
    now = utcnow()
    return {
        "format": STATUS_FORMAT,
        "database": store.url,
        "generated_at": now.isoformat(),
        "sources": [source_status(store, source, now) for source in sources],
    }


# -- rendering ----------------------------------------------------------------------------


def _n(value: int) -> str:
    return f"{value:,}"


def _pct(part: int, whole: int) -> str:
    return f" ({100 * part / whole:.1f}%)" if whole else ""


def _listing_text(listing: dict[str, Any]) -> str:
    parts = [
        f"{_n(listing['pages_listed'])} pages",
        f"{_n(listing['keys_listed'])} keys listed",
        "token saved" if listing["token_saved"] else "no token saved",
        "exhausted" if listing["exhausted"] else "not exhausted",
    ]
    return ", ".join(parts)


def _eta_text(status: dict[str, Any]) -> str:
    rate = status["annotated_last_hour"]
    if status["remaining"] == 0:
        eta = "nothing left" + ("" if status["listing"]["exhausted"] else " (listing goes on)")
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
    """(label, value) pairs; every value a `Text`, so no key is ever read as markup."""
    total = status["total"]
    states = status["states"]
    answers = status["answers"]
    served = f"{_n(states['served'])}{_pct(states['served'], total)}"
    if status["expired_leases"]:
        served += f", {_n(status['expired_leases'])} with an expired lease"
    last_key = status["listing"]["last_key"]
    rows = [
        ("keys", Text(_n(total))),
        ("pending", Text(f"{_n(states['pending'])}{_pct(states['pending'], total)}")),
        ("served", Text(served, style="yellow" if status["expired_leases"] else "")),
        (
            "annotated",
            Text(
                f"{_n(states['annotated'])}{_pct(states['annotated'], total)}: "
                + ", ".join(f"{_n(answers[a.value])} {a.value}" for a in Answer),
                style="green",
            ),
        ),
        ("failed", Text(_n(states["failed"]), style="red" if states["failed"] else "")),
        ("listing", Text(_listing_text(status["listing"]))),
        ("last key", Text(escape_controls(last_key) if last_key is not None else "-")),
        ("progress", Text(_eta_text(status))),
    ]
    return rows


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
        console.print(Group(*tables))
        console.print(Text(f"database: {database}", style="dim"))
        return
    console.print(Text(f"database: {database}"))
    for status in report["sources"]:
        console.print(Text(f"source: {status['source']}"))
        for label, value in status_rows(status):
            console.print(Text(f"  {label + ':':<11} {value.plain}"))
