"""`tracker status --watch`: the status report redrawn in place on a terminal (a progress
bar per dataset with rate and time left, and the annotator tables), or one plain line per
dataset per period when stdout is a pipe or a file."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tracker.cli.output import escape_controls
from tracker.cli.tables import annotator_tables
from tracker.durations import format_duration

#: Builds a fresh report (`tracker.report.status_report`) each period.
Report = Callable[[], dict[str, Any]]


def watch(console: Console, report: Report, seconds: float, *, live: bool) -> None:
    """Show `report()` every `seconds` until Ctrl-C (KeyboardInterrupt goes to the caller,
    which exits 130). `live`: redraw in place; otherwise print plain lines each period."""
    if not live:
        while True:
            for line in progress_lines(report()):
                console.print(Text(line))
            console.file.flush()
            time.sleep(seconds)
    with Live(console=console, auto_refresh=False, transient=False) as view:
        while True:
            view.update(live_view(report()), refresh=True)
            time.sleep(seconds)


def _progress(source: dict[str, Any], entry: dict[str, Any]) -> tuple[int, int, str]:
    """(done, total, 'rate, time left') for one dataset: done is annotated plus failed."""
    states = entry["states"]
    done = states["annotated"] + states["failed"]
    total = done + entry["remaining"]
    eta = entry["eta_seconds"]
    if entry["remaining"] == 0:
        left = "done" if source["listing"]["exhausted"] else "nothing left (listing goes on)"
    elif eta is None:
        left = "time left unknown"
    else:
        bound = "at least " if entry["eta_is_lower_bound"] else "about "
        left = bound + format_duration(timedelta(seconds=eta)) + " left"
    return done, total, f"{entry['annotated_last_hour']:,}/h, {left}"


def _entries(report: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(source, entry) for source in report["sources"] for entry in source["datasets"]]


def progress_lines(report: dict[str, Any]) -> list[str]:
    """One plain line per dataset: `TIME SOURCE DATASET: done/total (pct), rate, left`."""
    stamp = report["generated_at"][:19].replace("T", " ")
    lines = []
    for source, entry in _entries(report):
        done, total, rate = _progress(source, entry)
        pct = f" ({100 * done / total:.1f}%)" if total else ""
        name = escape_controls(entry["name"])
        lines.append(f"{stamp} {source['source']} {name}: {done:,}/{total:,}{pct}, {rate}")
    if not lines:
        lines.append(f"{stamp} no dataset yet")
    return lines


def live_view(report: dict[str, Any]) -> RenderableType:
    """A progress bar per dataset, then each dataset's annotator table."""
    bars = Table.grid(padding=(0, 1))
    for _ in range(4):
        bars.add_column()
    for source, entry in _entries(report):
        done, total, rate = _progress(source, entry)
        bars.add_row(
            Text(f"{source['source']} {escape_controls(entry['name'])}", style="bold"),
            ProgressBar(total=max(total, 1), completed=done, width=30),
            Text(f"{done:,}/{total:,}"),
            Text(rate),
        )
    stamp = f"updated {report['generated_at'][:19].replace('T', ' ')} UTC; Ctrl-C to stop"
    return Group(bars, *annotator_tables(report), Text(stamp, style="dim"))
