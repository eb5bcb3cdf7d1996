"""Asking before a change: confirmation on a terminal, refusal without one, Ctrl-C."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from tracker.errors import Interrupted, TrackerError, UsageError


@contextmanager
def one_transaction() -> Iterator[None]:
    """Ctrl-C during a change the store makes in one transaction: it was rolled back."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted("interrupted; nothing was changed") from None


def confirm_or_refuse(question: str, *, yes: bool) -> None:
    """Go on with `--yes`; ask on a terminal; refuse (exit 2) when nobody can answer.

    Anything but y/yes declines, and so does Ctrl-D (end of input): "nothing changed", exit
    1, as the documented exit codes say for a declined confirmation. Only Ctrl-C is an
    interruption (130). (`click.confirm` turns both into one `Abort`, so it is not used.)
    """
    if yes:
        return
    ensure_can_ask()
    click.echo(f"{question} [y/N]: ", nl=False, err=True)
    answer = sys.stdin.readline()
    if not answer:
        click.echo(err=True)  # Ctrl-D left the cursor after the question
    if answer.strip().lower() not in ("y", "yes"):
        raise TrackerError("nothing changed (not confirmed)")


def ensure_can_ask() -> None:
    """Refuse (exit 2) before any work when no one is there to confirm."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError(
            "refusing to change the state DB without confirmation: stdin is not a terminal; "
            "pass --yes (or --dry-run to see what would change)"
        )
