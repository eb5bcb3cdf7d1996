"""Helpers for the CLI tests: run `tracker` in-process (click's runner) or as a real process,
and build a state DB through the Store API."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from datetime import timedelta

from click.testing import CliRunner, Result

from tracker.cli import _register_commands, cli
from tracker.models import Answer
from tracker.records import AnswerRecord, ListedObject, SourceRef
from tracker.store import Store

_register_commands()

#: Keys that break naive tools: markup, spaces, a newline, a tab, non-ASCII, a glob char.
ODD_KEYS = [
    "[red]x[/red].jpg",
    "with space/a b.png",
    "line\nbreak.jpg",
    "tab\there.jpg",
    "ünï/çødé.jpg",
    "star*glob?.jpg",
]


def run(db_url: str, *args: str, input: str | None = None) -> Result:
    """`tracker --db URL ARGS...` through click's runner (no terminal: plain output)."""
    return CliRunner().invoke(cli, ["--db", db_url, *args], input=input, catch_exceptions=False)


def run_process(
    db_url: str | None, *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m tracker ...` as a real process, stdin not a terminal."""
    command = [sys.executable, "-m", "tracker", *(["--db", db_url] if db_url else []), *args]
    return subprocess.run(
        command,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def listed(keys: Sequence[str]) -> list[ListedObject]:
    return [ListedObject(k, 100 + i, f"etag{i}") for i, k in enumerate(keys)]


def build_state(
    url: str,
    *,
    bucket: str = "photos",
    prefix: str = "",
    regular: int = 20,
    odd: bool = True,
) -> SourceRef:
    """A source with `regular` keys `img/0000.jpg`... (+ the odd keys), in this state:

    - img/0000-0005 annotated (accept, accept, reject, reject, ignore, ignore; session
      `ds-alice`, then `ds-bob`);
    - img/0006-0007 served to `other@host-b` just now (lease live);
    - img/0008-0009 served to `ds@host-a` two hours ago (lease expired);
    - img/0010 failed; the rest pending. The cursor has a token and is not exhausted.
    """
    from tracker.models import utcnow

    keys = [f"img/{i:04d}.jpg" for i in range(regular)] + (ODD_KEYS if odd else [])
    with Store.open(url) as store:
        source = store.source(bucket, prefix, create=True)
        store.record_page(
            source, listed(keys), next_token="token-1", last_key=keys[-1], exhausted=False
        )
        now = utcnow()
        store.claim(source, "ds@host-a", 6, timedelta(minutes=30), now=now - timedelta(hours=3))
        answers = [Answer.ACCEPT, Answer.ACCEPT, Answer.REJECT, Answer.REJECT]
        answers += [Answer.IGNORE, Answer.IGNORE]
        store.record_answers(
            source,
            [
                AnswerRecord(keys[i], a, "ds-alice" if i < 3 else "ds-bob")
                for i, a in enumerate(answers)
            ],
        )
        store.claim(source, "other@host-b", 2, timedelta(minutes=30), now=now)
        store.claim(source, "ds@host-a", 2, timedelta(minutes=30), now=now - timedelta(hours=2))
        store.mark_failed(source, keys[10], "not an image")
    return source


def states(url: str, bucket: str = "photos", prefix: str = "") -> dict[str, str]:
    """key -> state, read straight from the DB."""
    with Store.open(url) as store:
        source = store.source(bucket, prefix)
        return {row.key: row.state.value for row in store.iter_items(source)}
