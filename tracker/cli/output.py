"""Terminal output: rich on a terminal, plain text otherwise, and never markup from data.

Keys are data: a key such as `[red]x[/red]` must print as those characters. Consoles here
have markup and highlighting off; build styled output with `rich.text.Text`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from rich.console import Console

from tracker.display import printable
from tracker.records import ItemRow
from tracker.redact import mask_urls_in

stdout = Console(highlight=False, markup=False, emoji=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)


def _one_line(message: str) -> str:
    """Newlines flattened; a URL's credentials masked and control or bidi characters
    escaped, whatever the message quotes (a driver's error, a key)."""
    return printable(mask_urls_in(" ".join(message.split())))


def print_error(message: str) -> None:
    """One line on stderr, prefixed `error:`; newlines in the message are flattened."""
    stderr.print(f"error: {_one_line(message)}", style="bold red" if stderr.is_terminal else None)


def print_warning(message: str) -> None:
    stderr.print(f"warning: {_one_line(message)}", style="yellow" if stderr.is_terminal else None)


def print_info(message: str) -> None:
    stderr.print(message)


#: A key fit for a terminal: `tracker.display.printable` (the one escaping function).
escape_controls = printable


def item_json(row: ItemRow) -> dict[str, Any]:
    """One item as a JSON object (`tracker keys --format jsonl`, dry runs with --json)."""
    return {
        "key": row.key,
        "state": row.state.value,
        "answer": row.answer.value if row.answer is not None else None,
        "session": row.session_id,
        "owner": row.lease_owner,
        "served_at": row.served_at.isoformat() if row.served_at else None,
        "failure_reason": row.failure_reason,
        "priority": row.priority,
    }


def write_lines(lines: Iterable[str]) -> None:
    """Write to stdout as-is (no markup, no wrapping), flushing as it goes."""
    out = sys.stdout
    for line in lines:
        out.write(line)
    out.flush()


def print_keys(keys: Iterable[str]) -> int:
    """Print keys one per line for a person, `printable()`: a key can hold terminal escape
    sequences, `\r` or bidi overrides, written by whoever uploaded the object. Warn once
    when a key was escaped (jsonl is exact). Returns how many were printed."""
    warned = False
    count = 0
    batch: list[str] = []
    for key in keys:
        shown = printable(key)
        if not warned and shown is not key:
            print_warning(
                "some keys contain control or bidi characters, shown escaped (e.g. \\n, "
                "\\x1b); `tracker keys --format jsonl` prints them exactly"
            )
            warned = True
        batch.append(shown + "\n")
        count += 1
        if len(batch) >= 1000:
            write_lines(batch)
            batch = []
    write_lines(batch)
    return count


def count_of(n: int, noun: str) -> str:
    """`1 key`, `2 keys`, `1,000 keys`."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
