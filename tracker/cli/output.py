"""Terminal output: rich on a terminal, plain text otherwise, and never markup from data.

Keys are data: a key such as `[red]x[/red]` must print as those characters. Consoles here
have markup and highlighting off; build styled output with `rich.text.Text`.
"""

from __future__ import annotations

from rich.console import Console

stdout = Console(highlight=False, markup=False, emoji=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)


def print_error(message: str) -> None:
    """One line on stderr, prefixed `error:`; newlines in the message are flattened."""
    stderr.print(
        f"error: {' '.join(message.split())}", style="bold red" if stderr.is_terminal else None
    )


def print_warning(message: str) -> None:
    stderr.print(
        f"warning: {' '.join(message.split())}", style="yellow" if stderr.is_terminal else None
    )


def print_info(message: str) -> None:
    stderr.print(message)
