"""`tracker priority`'s input: (key, priority) pairs from a CSV or JSON-lines file, read
and checked whole before anything is written."""

from __future__ import annotations

import sys
from pathlib import Path

from tracker.errors import UsageError
from tracker.priorities import parse_priorities


def read_priority_file(path: str) -> dict[str, float]:
    """Priorities by key from `path` (`-`: stdin), as `parse_priorities` reads them (the
    rules live there, apart from the file, so the unit tests pin them)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8-sig")
    except OSError as error:
        raise UsageError(f"cannot read priorities from {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{path} is not UTF-8 text: {error.reason}") from None
    return parse_priorities(text, path)
