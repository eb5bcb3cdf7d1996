"""`tracker priority`'s input, the pure part: (key, priority) pairs parsed from the text
of a CSV or JSON-lines file, checked whole before anything is written.

The CLI (tracker/cli/priorityfile.py) reads the file or stdin and hands its text here.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from tracker.errors import UsageError
from tracker.s3uri import key_problem


def parse_priorities(text: str, path: str) -> dict[str, float]:
    """Priorities by key from the text of the file `path` names (in messages only).

    JSON lines (`{"key": "...", "priority": 0.7}` per line) when the first non-empty line
    starts with `{`; otherwise CSV with a header naming the columns `key` and `priority`
    (others are ignored). Any bad line (not JSON, no key, a key S3 cannot hold, a priority
    that is not a finite number, a key given twice) raises `UsageError` naming its line.
    """
    text = text.removeprefix("\ufeff")
    # the first non-blank line starts with `{`: the first character that is not white space
    rows = _jsonl(text, path) if text.lstrip().startswith("{") else _csv(text, path)
    found: dict[str, float] = {}
    lines: dict[str, int] = {}
    for number, key, priority in rows:
        where = f"{path} line {number}"
        problem = key_problem(key) if isinstance(key, str) and key else "no key"
        if problem is not None:
            raise UsageError(f"{where}: {problem}")
        if key in lines:
            raise UsageError(f"{where}: key {key!r} already given on line {lines[key]}")
        found[key] = _number(priority, where)
        lines[key] = number
    if not found:
        raise UsageError(f"{path} holds no priorities")
    return found


def _jsonl(text: str, path: str) -> list[tuple[int, Any, Any]]:
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise UsageError(f"{path} line {number}: not a JSON object") from None
        if not isinstance(value, dict):
            raise UsageError(f"{path} line {number}: not a JSON object")
        rows.append((number, value.get("key"), value.get("priority")))
    return rows


def _csv(text: str, path: str) -> list[tuple[int, Any, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = set(reader.fieldnames or ())
    if not {"key", "priority"} <= columns:
        raise UsageError(
            f'{path} line 1: expected a CSV header with the columns "key" and "priority", '
            'or JSON lines ({"key": ..., "priority": ...})'
        )
    try:
        return [(reader.line_num, row.get("key"), row.get("priority")) for row in reader]
    except csv.Error as error:
        # line_num counts the lines read whole; the error is in the next one
        raise UsageError(f"{path} line {reader.line_num + 1}: {error}") from None


def _number(value: Any, where: str) -> float:
    """A finite priority: a JSON number, or a CSV field that reads as one."""
    if isinstance(value, bool) or value is None or value == "":
        raise UsageError(f"{where}: no priority (a number, e.g. 0.73)")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: priority {value!r} is not a number") from None
    if not math.isfinite(number):
        raise UsageError(f"{where}: priority {value!r} is not a finite number")
    return number
