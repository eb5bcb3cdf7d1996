"""Durations as people write them: `90s`, `30m`, `2h`, `1d`, or plain seconds."""

from __future__ import annotations

import re
from datetime import timedelta

from tracker.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)


def parse_duration(text: str | int | float | timedelta, *, allow_zero: bool = False) -> timedelta:
    """Parse `90s`, `30m`, `2h`, `1d` or a number of seconds; must be positive (or zero
    with `allow_zero`: a filter such as "served at least 0s ago" means every one)."""
    if isinstance(text, timedelta):
        seconds = text.total_seconds()
    elif isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(text)
        if not match:
            raise UsageError(f"not a duration (use e.g. 90s, 30m, 2h or seconds): {text!r}")
        seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise UsageError(f"a duration must be positive: {text!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """`3725s` -> `1h 2m 5s`: short and exact enough for status lines."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return " ".join(parts)
