"""`reset --keys-from`: keys from a file or stdin, one per line or as JSON lines."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from tracker.errors import UsageError
from tracker.s3uri import key_problem


def read_keys_file(path: str) -> frozenset[str]:
    """Keys from a file (`-` for stdin): one key per line, or JSON lines with a "key" field.

    The format is decided by the first non-empty line: a JSON object with a string "key"
    means JSON lines (exact for any key, including keys with line breaks, e.g. the output of
    `tracker keys --format jsonl`); anything else means one key per line, taken verbatim
    except for the line ending. Empty lines are skipped. A UTF-8 byte-order mark (Windows
    editors write one) is not part of the first key. A key S3 cannot hold (NUL, over 1024
    bytes) is refused with its line number, before anything is changed.
    """
    try:
        if path == "-":
            return _parse_keys(sys.stdin, "<stdin>")
        with open(Path(path), encoding="utf-8-sig", newline="") as handle:
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
        if number == 1 and line.startswith("\ufeff"):  # stdin is not opened as utf-8-sig
            line = line[1:]
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
        else:
            key = line
        problem = key_problem(key)
        if problem is not None:
            raise UsageError(f"{name} line {number}: {problem}")
        keys.add(key)
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
