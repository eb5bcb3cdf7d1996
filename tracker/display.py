"""Showing untrusted text (S3 keys, owners, reasons) to a person on a terminal.

Anyone who can upload an object names its key, and a key is written to the operator's
terminal by `tracker keys`, the dry runs, `status` and the stream's log lines. Control
characters there are instructions to the terminal (ESC/OSC sequences change the title,
write the clipboard with OSC 52, clear the screen; `\\r` overwrites the line) and bidi
overrides reorder what is read. `printable()` is the one place that makes such text inert;
machine formats (`--format jsonl`, `--json`) stay exact and use `json.dumps(ensure_ascii=True)`.
"""

from __future__ import annotations

import logging


def printable(text: str) -> str:
    """`text` with every non-printable character written as a Python escape (`\\x1b`,
    `\\r`, `\\u202e`).

    `str.isprintable()` is false for the C0 and C1 controls and DEL (category Cc), for
    format characters (Cf: the bidi embeddings, overrides and isolates U+202A-202E and
    U+2066-2069, U+200E/U+200F, U+061C, zero-width characters), line and paragraph
    separators, surrogates, private-use and unassigned code points. Everything else,
    including `[brackets]` that rich would read as markup, stays literal. A space is kept.
    """
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


class EscapeControls(logging.Filter):
    """A logger or handler filter: the formatted message made `printable()`.

    Attach it where untrusted keys are logged (the stream's logger), so that a log line
    about a key cannot drive the terminal it is shown on, whatever handler Prodigy set up.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.isprintable():
            record.msg = printable(message)
            record.args = None
        return True


#: Loggers whose lines name S3 keys: the recipe's stream and the lister it runs.
KEY_LOGGERS = ("tracker.stream", "tracker.lister", "tracker.recipe")


def escape_key_logs(names: tuple[str, ...] = KEY_LOGGERS) -> None:
    """Attach `EscapeControls` to the loggers that name keys (once each).

    Logger-level, not handler-level: inside Prodigy the handlers are Prodigy's (or the
    root logger's), which this package does not configure.
    """
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, EscapeControls) for f in logger.filters):
            logger.addFilter(EscapeControls())
