"""Ctrl-C / SIGTERM for long-running commands (sync, watch): stop at the next safe point."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from tracker.cli.output import print_info


class StopRequest:
    """SIGINT/SIGTERM: the first asks to stop at the next safe point (`announce` says
    which); the second stops at once (every commit is atomic, so that loses nothing)."""

    def __init__(self, announce: str) -> None:
        self.announce = announce
        self.requested = False

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print_info(self.announce)

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        previous = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
