"""Options and helpers shared by the operator commands: sources, filters, key files, prompts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import click

from tracker.durations import parse_duration
from tracker.errors import TrackerError, UsageError
from tracker.models import Answer, ItemState
from tracker.records import ItemRow

STATES = [s.value for s in ItemState]
ANSWERS = [a.value for a in Answer]


def source_argument(function: Callable[..., Any]) -> Callable[..., Any]:
    """`[SOURCE]`: s3://BUCKET[/PREFIX], optional when the state DB holds one source."""
    return click.argument("source", required=False, metavar="[SOURCE]")(function)


def dry_run_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--dry-run", "-n", is_flag=True, help="Print the keys that would move; change nothing."
    )(function)


def match_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--match",
        metavar="GLOB",
        help="Only keys matching this shell glob (over the whole key; * also matches /).",
    )(function)


def states_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--state",
        "states",
        multiple=True,
        type=click.Choice(STATES),
        help="Only keys in this state (repeatable).",
    )(function)


def answers_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--answer",
        "answers",
        multiple=True,
        type=click.Choice(ANSWERS),
        help="Only keys with this answer (repeatable).",
    )(function)


def key_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--key", "keys", multiple=True, metavar="KEY", help="Only this key (repeatable)."
    )(function)


class DurationType(click.ParamType):
    """`90s`, `30m`, `2h`, `1d` or seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(value)
        except UsageError as error:
            self.fail(str(error), param, ctx)


DURATION = DurationType()


def read_keys_file(path: str) -> frozenset[str]:
    """Keys from a file (`-` for stdin): one key per line, or JSON lines with a "key" field.

    The format is decided by the first non-empty line: a JSON object with a string "key"
    means JSON lines (exact for any key, including keys with line breaks, e.g. the output of
    `tracker keys --format jsonl`); anything else means one key per line, taken verbatim
    except for the line ending. Empty lines are skipped.
    """
    try:
        if path == "-":
            return _parse_keys(sys.stdin, "<stdin>")
        with open(Path(path), encoding="utf-8", newline="") as handle:
            return _parse_keys(handle, path)
    except OSError as error:
        raise UsageError(f"cannot read keys from {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{path} is not UTF-8 text: {error.reason}") from None


def _parse_keys(handle: TextIO, name: str) -> frozenset[str]:
    keys: set[str] = set()
    jsonl: bool | None = None
    for number, raw in enumerate(_lines(handle), start=1):
        line = raw[:-1] if raw.endswith("\n") else raw
        if line.endswith("\r"):  # a file written on Windows
            line = line[:-1]
        if not line or (jsonl and not line.strip()):
            continue
        if jsonl is None:
            jsonl = _json_key(line) is not None
        if jsonl:
            key = _json_key(line)
            if key is None:
                raise UsageError(
                    f'{name} line {number}: expected a JSON object with a string "key" '
                    "(the file's first line is JSON)"
                )
            keys.add(key)
        else:
            keys.add(line)
    return frozenset(keys)


def _lines(handle: TextIO) -> Iterator[str]:
    """Split on \\n only (keys may hold \\r or other line separators that str.splitlines
    would cut on)."""
    pending = ""
    while chunk := handle.read(1 << 16):
        pending += chunk
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line + "\n"
    if pending:
        yield pending


def _json_key(line: str) -> str | None:
    if not line.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    key = value.get("key") if isinstance(value, dict) else None
    return key if isinstance(key, str) else None


def escape_controls(text: str) -> str:
    """A key fit for one table cell: control characters (line breaks, tabs, ESC) escaped.

    Everything else, including `[brackets]` that rich would read as markup, stays literal.
    """
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


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
    }


def confirm_or_refuse(question: str, *, yes: bool) -> None:
    """Go on with `--yes`; ask on a terminal; refuse (exit 2) when nobody can answer."""
    if yes:
        return
    ensure_can_ask()
    if not click.confirm(question, default=False, err=True):
        raise TrackerError("nothing changed (not confirmed)")


def ensure_can_ask() -> None:
    """Refuse (exit 2) before any work when no one is there to confirm."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError(
            "refusing to change the state DB without confirmation: stdin is not a terminal; "
            "pass --yes (or --dry-run to see what would change)"
        )


def write_lines(lines: Iterable[str]) -> None:
    """Write to stdout as-is (no markup, no wrapping), flushing as it goes."""
    out = sys.stdout
    for line in lines:
        out.write(line)
    out.flush()


def print_keys(keys: Iterable[str]) -> int:
    """Print keys one per line, literally; warn once if one holds a line break. Returns
    how many were printed."""
    warned = False
    count = 0
    batch: list[str] = []
    for key in keys:
        if not warned and ("\n" in key or "\r" in key):
            from tracker.cli.output import print_warning

            print_warning(
                "some keys contain line breaks; `tracker keys --format jsonl` prints them exactly"
            )
            warned = True
        batch.append(key + "\n")
        count += 1
        if len(batch) >= 1000:
            write_lines(batch)
            batch = []
    write_lines(batch)
    return count


def count_of(n: int, noun: str) -> str:
    """`1 key`, `2 keys`, `1,000 keys`."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
