"""Helpers for the CLI tests: run `tracker` in-process (click's runner) or as a real process,
and build a state DB through the Store API."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from click.testing import CliRunner, Result

from tracker.cli import cli
from tracker.models import Answer, ItemState
from tracker.records import AnswerRecord, DatasetRef, ListedObject
from tracker.store import Store

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


class MainResult(NamedTuple):
    """`tracker.cli.main` run in this process: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def run_cli(capsys: Any, *args: str) -> MainResult:
    """Run `tracker ARGS` through `main` in this process, as the console script does
    (exit code from SystemExit; output from pytest's `capsys`)."""
    import pytest

    from tracker.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    return MainResult(int(done.value.code or 0), captured.out, captured.err)


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


def shift_leases(db: str | Store, owner: str, by: timedelta) -> int:
    """Move `owner`'s live leases (expiry and serve time) by `by`: a lease that ran out
    hours ago, without waiting hours. `db` is a URL or an open store. Tests only: the store
    never rewrites time."""
    from sqlalchemy import select, update

    from tracker.models import ItemState, items

    with contextlib.ExitStack() as stack:
        store = db if isinstance(db, Store) else stack.enter_context(Store.open(db))
        # Computed here, row by row: `column + timedelta` binds the timedelta with the
        # column's UTC-datetime type, which fails on both databases.
        with store.engine.begin() as conn:
            rows = conn.execute(
                select(items.c.id, items.c.lease_expires_at, items.c.served_at).where(
                    items.c.lease_owner == owner, items.c.state == ItemState.SERVED
                )
            ).all()
            for row in rows:
                conn.execute(
                    update(items)
                    .where(items.c.id == row.id)
                    .values(
                        lease_expires_at=row.lease_expires_at + by, served_at=row.served_at + by
                    )
                )
        return len(rows)


def item_states(store: Store, dataset: DatasetRef) -> dict[str, ItemState]:
    """key -> state for one dataset, through an open store."""
    return {row.key: row.state for row in store.iter_items(dataset)}


def build_state(
    url: str,
    *,
    bucket: str = "photos",
    prefix: str = "",
    regular: int = 20,
    odd: bool = True,
    dataset: str = "ds",
) -> DatasetRef:
    """A source with `regular` keys `img/0000.jpg`... (+ the odd keys) and one dataset
    (`ds`) in this state:

    - img/0000-0005 annotated (accept, accept, reject, reject, ignore, ignore; session
      `ds-alice`, then `ds-bob`);
    - img/0006-0007 served to `other@host-b` just now (lease live);
    - img/0008-0009 served to `ds@host-a` two hours ago (lease expired);
    - img/0010 failed; the rest pending. The cursor has a token and is not exhausted.
    """
    keys = [f"img/{i:04d}.jpg" for i in range(regular)] + (ODD_KEYS if odd else [])
    with Store.open(url) as store:
        source = store.source(bucket, prefix, create=True)
        store.record_page(
            source, listed(keys), next_token="token-1", last_key=keys[-1], exhausted=False
        )
        ref = store.dataset(source, dataset, create=True)
        store.claim(ref, "ds@host-a", 6, timedelta(minutes=30))
        answers = [Answer.ACCEPT, Answer.ACCEPT, Answer.REJECT, Answer.REJECT]
        answers += [Answer.IGNORE, Answer.IGNORE]
        store.record_answers(
            ref,
            [
                AnswerRecord(keys[i], a, "ds-alice" if i < 3 else "ds-bob")
                for i, a in enumerate(answers)
            ],
        )
        store.claim(ref, "other@host-b", 2, timedelta(minutes=30))
        store.claim(ref, "ds@host-a", 2, timedelta(minutes=30))
        store.mark_failed(ref, keys[10], "not an image")
    shift_leases(url, "ds@host-a", -timedelta(hours=2))
    return ref


def states(
    url: str, bucket: str = "photos", prefix: str = "", dataset: str = "ds"
) -> dict[str, str]:
    """key -> state for one dataset, read straight from the DB."""
    with Store.open(url) as store:
        ref = store.dataset(store.source(bucket, prefix), dataset)
        return {row.key: row.state.value for row in store.iter_items(ref)}


def served_times(
    url: str, bucket: str = "photos", prefix: str = "", dataset: str = "ds"
) -> dict[str, datetime | None]:
    """key -> when it was last leased (`served_at`), by the state DB's clock: what lease
    timings are measured from (a test's own clock would start before the serve)."""
    with Store.open(url) as store:
        ref = store.dataset(store.source(bucket, prefix), dataset)
        return {row.key: row.served_at for row in store.iter_items(ref)}


def key_rows(db_url: str, source: str) -> dict[str, dict]:
    """key -> its `tracker keys --format jsonl` object (key, state, answer, owner, served_at,
    failure_reason...): the one place tests read a key's state through the CLI."""
    result = run(db_url, "keys", source, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    return {row["key"]: row for row in map(json.loads, result.output.splitlines())}
