"""One module per command (or group); importing this package registers them all on `cli`."""

from tracker.cli.commands import (  # noqa: F401
    answers,
    db,
    demo,
    keys,
    priority,
    requeue,
    reset,
    sources,
    status,
    sync,
    watch,
)
