"""Operator safety and terminal safety (issue 11 items 4-6, issue 10 items 9 and 11).

Each test reproduces a defect of the code before this change: a credential printed, a key
that drives the terminal, a read-only command that creates a DB, a repair that creates a
source or acts without confirmation, input that one database takes and the other refuses.
"""

from __future__ import annotations

import json
import os
import pty
import select
import stat
import subprocess
import sys
import time
import tomllib
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.cli_support import build_state, listed, run, run_process, states
from tracker.cli.commands.requeue import session_holds
from tracker.errors import StateDBError
from tracker.models import Answer
from tracker.records import AnswerRecord
from tracker.store import Store

ROOT = Path(__file__).resolve().parents[2]

#: Keys an uploader controls: OSC 52 clipboard write, screen clear, carriage return, CSI
#: as a C1 control, a right-to-left override, an isolate.
HOSTILE_KEYS = [
    "osc\x1b]52;c;SGVsbG8=\x07.jpg",
    "clear\x1b[2J.jpg",
    "cr\roverwrite.jpg",
    "c1\x9b31m.jpg",
    "bidi\u202egpj.exe",
    "iso\u2066x\u2069.jpg",
    "nel\x85line.jpg",
]
_UNSAFE = {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}
_UNSAFE |= {chr(c) for c in range(0x202A, 0x202F)} | {chr(c) for c in range(0x2066, 0x206A)}


def assert_terminal_safe(output: str) -> None:
    bad = {ch for ch in output if ch in _UNSAFE and ch != "\n"}
    assert not bad, f"raw control or bidi characters reached the terminal: {bad!r}"


def hostile_state(url: str) -> None:
    with Store.open(url) as store:
        source = store.source("photos", "", create=True)
        store.record_page(
            source, listed(HOSTILE_KEYS), next_token=None, last_key=None, exhausted=True
        )
        ref = store.dataset(source, "ds", create=True)
        store.claim(ref, "ds@host", len(HOSTILE_KEYS), timedelta(minutes=30))


# -- secrets in DB URLs -------------------------------------------------------------------


def secret_pg_url(pg_url: str) -> tuple[str, list[str]]:
    """The test schema's URL with a password holding an unencoded `@` and a second one in
    `?password=` (trust auth ignores both); returns it and the secret parts."""
    head, tail, query = "HEADSECRET42", "TAILSECRET42", "QUERYSECRET42"
    url = make_url(pg_url)
    raw = url.render_as_string(hide_password=False)
    scheme, _, rest = raw.partition("://")
    userinfo, _, hostpart = rest.partition("@")
    raw = f"{scheme}://{userinfo}:{head}@{tail}@{hostpart}&password={query}"
    return raw, [head, tail, query]


def test_db_url_passwords_in_the_query_or_with_an_unencoded_at_are_masked_everywhere(pg_url):
    """status, status --json, db current, keys and sources print the URL masked: neither a
    `?password=` value nor the tail of a password cut at its `@` appears."""
    url, secret_parts = secret_pg_url(pg_url)
    build_state(url, odd=False)
    outputs = []
    for args in (["status"], ["status", "--json"], ["db", "current"], ["sources"]):
        result = run(url, *args)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert "***" in outputs[0] and "***" in outputs[1] and "***" in outputs[2]
    for part in secret_parts:
        assert all(part not in out for out in outputs), part


def test_a_connection_error_line_masks_every_part_of_the_password():
    """An unreachable PostgreSQL: the error line names the URL masked, and the driver's
    reason does not name the password's tail as a host."""
    url = "postgresql://user:HEADSECRET42@TAILSECRET42@127.0.0.1:1/db?password=QUERYSECRET42"
    done = run_process(url, "status")
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith("error: state DB postgresql") and done.stderr.count("\n") == 1
    for part in ("HEADSECRET42", "TAILSECRET42", "QUERYSECRET42"):
        assert part not in done.stderr + done.stdout


def test_the_recipe_start_line_masks_the_db_password(pg_url):
    from tracker.recipe import startup_line

    url, secret_parts = secret_pg_url(pg_url)
    with Store.open(url) as store:
        source = store.source("photos", "", create=True)
        ref = store.dataset(source, "ds", create=True)
        stream = SimpleNamespace(store=store, source=source, dataset=ref, owner="ds@host")
        line = startup_line(stream)
    assert "***" in line
    for part in secret_parts:
        assert part not in line


def _resume(db_url: str | None, source: str) -> str:
    from click.core import ParameterSource

    from tracker.cli.commands.sync import resume_command

    parent = SimpleNamespace(
        params={"db_url": db_url},
        get_parameter_source=lambda name: (
            ParameterSource.COMMANDLINE if db_url else ParameterSource.DEFAULT
        ),
    )
    options = {
        "endpoint_url": None,
        "profile": None,
        "region": None,
        "page_size": 1000,
        "ext": (),
        "match": (),
        "all_objects": False,
        "inventory": None,
    }
    return resume_command(SimpleNamespace(parent=parent), source, options)


def test_the_resume_line_never_embeds_a_masked_password_and_can_be_pasted():
    """A URL with a password: the resume line reads it from $TRACKER_DB_URL (pasteable,
    no secret); a URL without one is repeated verbatim."""
    line = _resume("postgresql://u:SECRET42@db/t?password=Q42", "s3://b/p/")
    assert '--db "$TRACKER_DB_URL"' in line
    assert "SECRET42" not in line and "Q42" not in line and "***" not in line
    plain = _resume("sqlite:////tmp/state.db", "s3://b/p/")
    assert plain.startswith("tracker --db sqlite:////tmp/state.db sync s3://b/p/")


# -- keys on the terminal -----------------------------------------------------------------


def test_keys_text_and_both_dry_runs_escape_control_and_bidi_characters(sqlite_url):
    hostile_state(sqlite_url)
    for args in (["keys"], ["reset", "--all", "--dry-run"], ["requeue", "--all", "--dry-run"]):
        result = run(sqlite_url, *args)
        assert result.exit_code == 0, result.output
        assert_terminal_safe(result.output)
        assert "\\x1b]52" in result.stdout and "\\u202e" in result.stdout
        assert len(result.stdout.splitlines()) == len(HOSTILE_KEYS)  # one line per key
        assert "shown escaped" in result.stderr


def test_keys_jsonl_stays_exact_and_ascii(sqlite_url):
    hostile_state(sqlite_url)
    result = run(sqlite_url, "keys", "--format", "jsonl")
    assert result.stdout.isascii()
    assert sorted(json.loads(line)["key"] for line in result.stdout.splitlines()) == sorted(
        HOSTILE_KEYS
    )


def test_the_stream_log_filter_escapes_keys_in_log_lines(caplog):
    import logging

    from tracker.display import EscapeControls

    log = logging.getLogger("tracker.test_escape")
    log.addFilter(EscapeControls())
    with caplog.at_level(logging.WARNING, logger="tracker.test_escape"):
        log.warning("%s: %s", HOSTILE_KEYS[0], "not an image")
    assert_terminal_safe(caplog.records[0].getMessage())
    assert "\\x1b]52" in caplog.records[0].getMessage()


def test_the_recipe_makes_the_stream_and_lister_log_lines_terminal_safe(caplog):
    import logging

    import tracker.recipe  # noqa: F401  (attaches the filter, as Prodigy's import does)

    for name in ("tracker.stream", "tracker.lister"):
        with caplog.at_level(logging.WARNING, logger=name):
            logging.getLogger(name).warning("%s: %s", HOSTILE_KEYS[4], "not an image")
        assert_terminal_safe(caplog.records[-1].getMessage())
        assert "\\u202e" in caplog.records[-1].getMessage()


def test_a_new_sqlite_db_named_by_a_file_uri_is_private(tmp_path):
    path = tmp_path / "uri.db"
    old = os.umask(0o022)
    try:
        Store.open(f"sqlite:///file:{path}?uri=true").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- opening the DB ---------------------------------------------------------------------


@pytest.mark.parametrize("url", ["mysql://u@h/db", "mssql+pyodbc://u@h/db", "oracle://u@h/x"])
def test_databases_other_than_sqlite_and_postgresql_are_refused_at_open(url):
    done = run_process(url, "status")
    assert done.returncode == 4
    assert done.stderr.startswith("error: unsupported database URL")
    assert done.stderr.count("\n") == 1
    assert "SQLite" in done.stderr and "PostgreSQL" in done.stderr


def test_a_psycopg2_url_hint_does_not_offer_the_postgres_extra_as_the_fix():
    pytest.importorskip("sqlalchemy")
    try:
        import psycopg2  # noqa: F401

        pytest.skip("psycopg2 is installed here")
    except ImportError:
        pass
    done = run_process("postgresql+psycopg2://u@127.0.0.1:1/db", "status")
    assert done.returncode == 4
    assert "psycopg2 driver is not installed" in done.stderr
    assert "psycopg 3" in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["status", "--json"],
        ["keys"],
        ["sources"],
        ["db", "current"],
        ["requeue", "--all", "--dry-run"],
        ["reset", "--all", "--dry-run"],
    ],
)
def test_read_only_commands_on_a_missing_sqlite_file_fail_and_create_nothing(tmp_path, args):
    path = tmp_path / "no" / "such" / "dir" / "x.db"
    result = run(f"sqlite:///{path}", *args)
    assert result.exit_code == 4, result.output
    assert result.stderr == (
        f"error: the state DB {path} does not exist (check --db / TRACKER_DB_URL; "
        "`tracker sync` or `tracker db upgrade` creates it)\n"
    )
    assert not (tmp_path / "no").exists()


def test_db_upgrade_still_creates_a_missing_sqlite_file(tmp_path):
    path = tmp_path / "new" / "x.db"
    assert run(f"sqlite:///{path}", "db", "upgrade").exit_code == 0
    assert path.is_file()


def test_sqlite_older_than_3_35_is_refused_at_open_with_one_line(tmp_path, monkeypatch):
    import tracker.db

    monkeypatch.setattr(tracker.db, "sqlite_library_version", lambda: (3, 31, 1))
    with pytest.raises(StateDBError, match=r"SQLite 3\.31\.1 is too old.*>= 3\.35\.0"):
        Store.open(f"sqlite:///{tmp_path / 'x.db'}")


@pytest.mark.parametrize(("setting", "level"), [(None, 1), ("FULL", 2), ("extra", 3)])
def test_sqlite_synchronous_is_durable_when_asked(tmp_path, monkeypatch, setting, level):
    if setting is None:
        monkeypatch.delenv("TRACKER_SQLITE_SYNCHRONOUS", raising=False)
    else:
        monkeypatch.setenv("TRACKER_SQLITE_SYNCHRONOUS", setting)
    with Store.open(f"sqlite:///{tmp_path / 'x.db'}") as store, store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar() == level


def test_an_unknown_sqlite_synchronous_setting_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKER_SQLITE_SYNCHRONOUS", "OFF")
    with pytest.raises(StateDBError, match="TRACKER_SQLITE_SYNCHRONOUS='OFF' is not one of"):
        Store.open(f"sqlite:///{tmp_path / 'x.db'}")


# -- requeue --------------------------------------------------------------------------


def served(url: str) -> list[str]:
    return sorted(k for k, s in states(url).items() if s == "served")


def test_requeue_without_a_filter_or_all_is_refused_and_changes_nothing(db_url):
    build_state(db_url, odd=False)
    result = run(db_url, "requeue")
    assert result.exit_code == 2
    assert "or pass --all" in result.stderr
    assert len(served(db_url)) == 4


def test_requeue_without_yes_and_without_a_terminal_is_refused(db_url):
    build_state(db_url, odd=False)
    result = run(db_url, "requeue", "--all")
    assert result.exit_code == 2 and "pass --yes" in result.stderr
    assert len(served(db_url)) == 4


def test_requeue_older_than_0s_means_every_served_key(db_url):
    build_state(db_url, odd=False)
    result = run(db_url, "requeue", "--older-than", "0s", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout == "requeued 4 served keys of ds on s3://photos (now pending)\n"
    assert served(db_url) == []


def test_requeue_session_matches_its_dataset_exactly_never_by_prefix(db_url):
    assert not session_holds("cats-v2-alice", "cats@host:8080")
    assert session_holds("cats-v2-alice", "cats-v2@host:8080")
    assert session_holds("cats", "cats@host:8080")
    build_state(db_url, odd=False)  # live leases of other@host-b, expired of ds@host-a
    result = run(db_url, "requeue", "--session", "ds-v2-alice", "--yes")
    assert result.exit_code == 0 and "requeued 0 served keys" in result.stdout
    result = run(db_url, "requeue", "--session", "ds-alice", "--yes")
    assert "requeued 2 served keys" in result.stdout
    assert served(db_url) == ["img/0006.jpg", "img/0007.jpg"]


def _prompt_with_eof(db_url: str, *args: str) -> tuple[int, str]:
    """Run `tracker` with stdin and stderr on a pseudo-terminal, answer the prompt with
    Ctrl-D; returns the exit code and what the terminal showed."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "tracker", "--db", db_url, *args],
        stdin=slave,
        stderr=slave,
        stdout=subprocess.PIPE,
    )
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 60
    while b"[y/N]" not in shown and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            shown += os.read(master, 4096)
    os.write(master, b"\x04")
    code = process.wait(timeout=60)
    while select.select([master], [], [], 0.2)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    process.stdout.close()
    return code, shown.decode(errors="replace")


def test_ctrl_d_at_a_confirmation_prompt_declines_with_exit_1(sqlite_url):
    """The README's exit codes say a declined confirmation is 1; Ctrl-D used to be 130."""
    build_state(sqlite_url, odd=False)
    before = states(sqlite_url)
    code, shown = _prompt_with_eof(sqlite_url, "reset", "--all")
    assert code == 1, shown
    assert "nothing changed (not confirmed)" in shown
    assert states(sqlite_url) == before


# -- import-answers -----------------------------------------------------------------


def answers_file(path: Path, rows: list[dict], *, bom: bool = False) -> str:
    body = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body.encode())
    return str(path)


def source_with_annotated(url: str, keys: list[str]) -> None:
    with Store.open(url) as store:
        source = store.source("bkt", "img/", create=True)
        store.record_page(source, listed(keys), next_token=None, last_key=None, exhausted=True)
        ref = store.dataset(source, "ds", create=True)
        store.record_answers(ref, [AnswerRecord(k, Answer.ACCEPT, "ds-a") for k in keys])


def sources_of(url: str) -> list[str]:
    with Store.open(url) as store:
        return [s.uri for s in store.sources()]


def test_import_answers_never_creates_a_source(db_url, tmp_path):
    source_with_annotated(db_url, ["img/a.jpg"])
    path = answers_file(
        tmp_path / "a.jsonl", [{"meta": {"key": "other/x.jpg"}, "answer": "accept"}]
    )
    result = run(db_url, "import-answers", "s3://bkt/other", path)
    assert result.exit_code == 5
    assert result.stderr.count("\n") == 1
    assert sources_of(db_url) == ["s3://bkt/img/"]


def test_both_spellings_of_a_prefix_name_the_same_source(db_url, tmp_path):
    source_with_annotated(db_url, ["img/a.jpg"])
    rows = [{"meta": {"key": "img/b.jpg"}, "answer": "reject"}]
    path = answers_file(tmp_path / "a.jsonl", rows)
    result = run(db_url, "import-answers", "s3://bkt/img", path)
    assert result.exit_code == 0, result.output
    assert "1 keys newly annotated" in result.stdout
    assert sources_of(db_url) == ["s3://bkt/img/"]
    assert run(db_url, "keys", "s3://bkt/img").stdout == "img/a.jpg\nimg/b.jpg\n"


def test_requeue_missing_without_yes_and_without_a_terminal_changes_nothing(db_url, tmp_path):
    source_with_annotated(db_url, ["img/a.jpg", "img/b.jpg", "img/c.jpg"])
    path = answers_file(tmp_path / "a.jsonl", [{"meta": {"key": "img/a.jpg"}, "answer": "accept"}])
    result = run(db_url, "import-answers", "s3://bkt/img/", path, "--requeue-missing")
    assert result.exit_code == 2 and "pass --yes" in result.stderr
    assert set(states(db_url, "bkt", "img/").values()) == {"annotated"}


def test_requeue_missing_dry_run_prints_the_keys_and_changes_nothing(db_url, tmp_path):
    source_with_annotated(db_url, ["img/a.jpg", "img/b.jpg", "img/c.jpg"])
    path = answers_file(tmp_path / "a.jsonl", [{"meta": {"key": "img/a.jpg"}, "answer": "accept"}])
    result = run(db_url, "import-answers", "s3://bkt/img/", path, "--requeue-missing", "-n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "img/b.jpg\nimg/c.jpg\n"
    assert "put 2 annotated keys missing from the file back to pending (dry run)" in result.stderr
    assert set(states(db_url, "bkt", "img/").values()) == {"annotated"}
    result = run(db_url, "import-answers", "s3://bkt/img/", path, "--requeue-missing", "--yes")
    assert result.exit_code == 0 and "2 annotated keys missing" in result.stdout


def test_an_answers_file_with_a_byte_order_mark_is_read(db_url, tmp_path):
    source_with_annotated(db_url, ["img/a.jpg"])
    rows = [{"meta": {"key": "img/b.jpg"}, "answer": "reject"}]
    path = answers_file(tmp_path / "a.jsonl", rows, bom=True)
    result = run(db_url, "import-answers", "s3://bkt/img/", path)
    assert result.exit_code == 0, result.output
    assert "1 keys newly annotated" in result.stdout


@pytest.mark.parametrize(
    ("bad", "reason"),
    [("img/" + "é" * 511, "1026 bytes of UTF-8, over S3's 1024"), ("img/nul\x00.jpg", "NUL")],
)
def test_import_answers_refuses_keys_s3_cannot_hold_on_both_databases(
    db_url, tmp_path, bad, reason
):
    source_with_annotated(db_url, ["img/a.jpg"])
    rows = [
        {"meta": {"key": "img/b.jpg"}, "answer": "reject"},
        {"meta": {"key": bad}, "answer": "accept"},
    ]
    path = answers_file(tmp_path / "a.jsonl", rows)
    result = run(db_url, "import-answers", "s3://bkt/img/", path)
    assert result.exit_code == 2, result.output
    assert "line 2:" in result.stderr and reason in result.stderr
    assert states(db_url, "bkt", "img/") == {"img/a.jpg": "annotated"}


def test_a_long_session_id_is_shortened_the_same_way_every_time(db_url):
    from tracker.tasks import answer_record

    long_a, long_b = "ds-" + "a" * 300, "ds-" + "a" * 299 + "b"
    first = answer_record(
        {"meta": {"key": "img/a.jpg"}, "answer": "accept", "_session_id": long_a}, "bkt"
    )
    again = answer_record(
        {"meta": {"key": "img/a.jpg"}, "answer": "accept", "_session_id": long_a}, "bkt"
    )
    other = answer_record(
        {"meta": {"key": "img/a.jpg"}, "answer": "accept", "_session_id": long_b}, "bkt"
    )
    assert first.session_id == again.session_id != other.session_id
    assert len(first.session_id) == 255 and first.session_id.startswith("ds-aaa")
    with Store.open(db_url) as store:  # PostgreSQL refused the whole batch before
        ref = store.dataset(store.source("bkt", "", create=True), "ds", create=True)
        records = [first, AnswerRecord("img/b.jpg", Answer.REJECT, "ds-b")]
        assert store.record_answers(ref, records) == 2


# -- key files --------------------------------------------------------------------------


@pytest.mark.parametrize("jsonl", [False, True])
def test_keys_from_a_file_with_a_byte_order_mark_keeps_its_first_key(sqlite_url, tmp_path, jsonl):
    build_state(sqlite_url, odd=False)
    keys = ["img/0000.jpg", "img/0001.jpg"]
    body = "".join((json.dumps({"key": k}) if jsonl else k) + "\n" for k in keys)
    path = tmp_path / "keys.txt"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    result = run(sqlite_url, "reset", "--keys-from", str(path), "--dry-run")
    assert result.stdout == "img/0000.jpg\nimg/0001.jpg\n"
    result = run(
        sqlite_url,
        "reset",
        "--keys-from",
        "-",
        "--dry-run",
        input="\ufeff" + body,
    )
    assert result.stdout == "img/0000.jpg\nimg/0001.jpg\n"


@pytest.mark.parametrize(
    "bad", ["img/" + "x" * 1021, "img/a\x00b.jpg", json.dumps({"key": "img/" + "x" * 1021})]
)
def test_key_files_refuse_keys_s3_cannot_hold_with_the_line_number(sqlite_url, tmp_path, bad):
    build_state(sqlite_url, odd=False)
    first = json.dumps({"key": "img/0000.jpg"}) if bad.startswith("{") else "img/0000.jpg"
    path = tmp_path / "keys.txt"
    path.write_text(f"{first}\n{bad}\n")
    before = states(sqlite_url)
    result = run(sqlite_url, "reset", "--keys-from", str(path), "--yes")
    assert result.exit_code == 2
    assert f"{path} line 2: " in result.stderr
    assert states(sqlite_url) == before


# -- pipes, entry points ----------------------------------------------------------------


def test_keys_piped_into_head_exits_0(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with Store.open(url) as store:
        source = store.source("photos", "", create=True)
        keys = [f"img/{i:06d}.jpg" for i in range(30000)]
        store.record_page(source, listed(keys), next_token=None, last_key=None, exhausted=True)
        store.dataset(source, "ds", create=True)
    tracker = subprocess.Popen(
        [sys.executable, "-m", "tracker", "--db", url, "keys"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    head = subprocess.run(["head", "-1"], stdin=tracker.stdout, capture_output=True, timeout=60)
    tracker.stdout.close()
    assert tracker.wait(timeout=60) == 0, tracker.stderr.read()
    assert tracker.stderr.read() == b""
    assert head.stdout == b"img/000000.jpg\n"


def test_both_recipe_names_are_prodigy_entry_points():
    """`prodigy stream-from-s3 ...` without -F needs its own `prodigy_recipes` entry."""
    from tests.prodigy_harness import use_fake_prodigy

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entries = project["project"]["entry-points"]["prodigy_recipes"]
    assert set(entries) == {"stream_from_s3", "stream-from-s3"}
    use_fake_prodigy()
    import importlib

    for target in entries.values():
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute))
