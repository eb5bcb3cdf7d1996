"""`tracker import-answers`: `prodigy db-out` JSONL into the state DB, all or nothing."""

from __future__ import annotations

import json

import pytest

from tracker.cli import main
from tracker.models import Answer, ItemState
from tracker.records import AnswerRecord, ListedObject
from tracker.store import Store


def run(db_url: str, *args: str) -> int:
    try:
        main(["--db", db_url, *args])
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def write_jsonl(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def rows_by_key(db_url: str, bucket: str, prefix: str = "") -> dict:
    with Store.open(db_url) as store:
        ref = store.dataset(store.source(bucket, prefix), "ds")
        return {r.key: r for r in store.iter_items(ref)}


def test_imports_seed_style_and_our_own_answers(db_url, tmp_path, capsys) -> None:
    with Store.open(db_url) as store:
        store.source("bkt", "img/", create=True)  # import-answers never creates a source
    path = write_jsonl(
        tmp_path / "answers.jsonl",
        [
            # What the seed's recipe saved: the key in image and in meta.key.
            {"image": "img/a.jpg", "meta": {"key": "img/a.jpg"}, "answer": "accept"},
            # Seed-style without meta: the bare key in image.
            {"image": "img/b.jpg", "answer": "reject", "_session_id": "ds-bob"},
            # What this recipe saves: the S3 URI in image, meta.key too.
            {"image": "s3://bkt/img/c [x].jpg", "answer": "ignore"},
            "",  # blank lines are skipped
            {"image": "s3://bkt/img/d.jpg", "meta": {"key": "img/d.jpg"}, "answer": "accept"},
        ],
    )
    assert run(db_url, "import-answers", "s3://bkt/img", path, "--dataset", "ds") == 0
    assert "4 keys newly annotated" in capsys.readouterr().out
    rows = rows_by_key(db_url, "bkt", "img/")
    assert {k: (r.state, r.answer) for k, r in rows.items()} == {
        "img/a.jpg": (ItemState.ANNOTATED, Answer.ACCEPT),
        "img/b.jpg": (ItemState.ANNOTATED, Answer.REJECT),
        "img/c [x].jpg": (ItemState.ANNOTATED, Answer.IGNORE),
        "img/d.jpg": (ItemState.ANNOTATED, Answer.ACCEPT),
    }
    assert rows["img/b.jpg"].session_id == "ds-bob"
    # Importing again changes nothing: the same answers from the same sessions.
    assert run(db_url, "import-answers", "s3://bkt/img", path, "--dataset", "ds") == 0
    assert "0 keys newly annotated" in capsys.readouterr().out


def test_listed_pending_keys_become_annotated(db_url, tmp_path) -> None:
    with Store.open(db_url) as store:
        source = store.source("bkt", create=True)
        store.record_page(
            source,
            [ListedObject("a.png"), ListedObject("b.png")],
            next_token=None,
            last_key="b.png",
            exhausted=True,
        )
    path = write_jsonl(tmp_path / "x.jsonl", [{"meta": {"key": "a.png"}, "answer": "accept"}])
    assert run(db_url, "import-answers", "s3://bkt", path, "--dataset", "ds") == 0
    rows = rows_by_key(db_url, "bkt")
    assert rows["a.png"].state is ItemState.ANNOTATED
    assert rows["b.png"].state is ItemState.PENDING


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "line 3: not JSON"),
        ('["a list"]', "line 3: expected a JSON object"),
        ('{"image": "data:image/png;base64,AAAA", "answer": "accept"}', "line 3: no meta.key"),
        ('{"meta": {"key": "img/z.png"}, "answer": "maybe"}', "line 3: answer is 'maybe'"),
        ('{"image": "s3://other/img/z.png", "answer": "accept"}', "line 3: image names bucket"),
        ('{"meta": {"key": "elsewhere/z.png"}, "answer": "accept"}', "line 3: key 'elsewhere"),
    ],
)
def test_a_bad_line_is_named_and_nothing_is_written(db_url, tmp_path, capsys, bad, message):
    """The source exists (import-answers never creates one, so its absence proves nothing)
    and the good lines name a listed key and a new one: neither, nor the new dataset named,
    is written. Mutation seen to fail: the dataset made before FILE is read."""
    with Store.open(db_url) as store:
        source = store.source("bkt", "img/", create=True)
        store.record_page(
            source, [ListedObject("img/ok.png")], next_token=None, last_key=None, exhausted=True
        )
    good = json.dumps({"meta": {"key": "img/ok.png"}, "answer": "accept"})
    path = write_jsonl(tmp_path / "bad.jsonl", [good, good.replace("ok", "ok2"), bad, good])
    assert run(db_url, "import-answers", "s3://bkt/img", path, "--dataset", "new") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    with Store.open(db_url) as store:
        source = store.source("bkt", "img/")
        assert store.datasets(source) == []
        assert store.object_count(source) == 1  # img/ok2.png was not inserted


def test_requeue_missing_puts_annotated_keys_absent_from_the_file_back(db_url, tmp_path, capsys):
    with Store.open(db_url) as store:
        source = store.source("bkt", create=True)
        store.record_answers(
            store.dataset(source, "ds", create=True),
            [AnswerRecord(k, Answer.ACCEPT, "ds-a") for k in ("a.png", "b.png", "lost.png")],
        )
    rows = [
        {"meta": {"key": "a.png"}, "answer": "accept", "_session_id": "ds-a"},
        {"meta": {"key": "b.png"}, "answer": "accept", "_session_id": "ds-a"},
        {"meta": {"key": "new.png"}, "answer": "reject"},
    ]
    path = write_jsonl(tmp_path / "db-out.jsonl", rows)
    assert run(db_url, "import-answers", "s3://bkt", path, "--requeue-missing", "--yes") == 0
    assert "1 annotated keys missing from the file put back to pending" in capsys.readouterr().out
    states = {k: r.state for k, r in rows_by_key(db_url, "bkt").items()}
    assert states == {
        "a.png": ItemState.ANNOTATED,
        "b.png": ItemState.ANNOTATED,
        "lost.png": ItemState.PENDING,
        "new.png": ItemState.ANNOTATED,
    }


def test_requeue_missing_refuses_an_empty_file(db_url, tmp_path, capsys) -> None:
    path = write_jsonl(tmp_path / "empty.jsonl", [])
    assert run(db_url, "import-answers", "s3://bkt", path, "--requeue-missing") == 2
    assert "refusing" in capsys.readouterr().err


def test_a_missing_file_is_one_line(db_url, tmp_path, capsys) -> None:
    assert run(db_url, "import-answers", "s3://bkt", str(tmp_path / "nope.jsonl")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read") and err.count("\n") == 1


def test_the_command_has_help_with_an_example(capsys) -> None:
    assert run("sqlite://", "import-answers", "--help") == 0
    out = capsys.readouterr().out
    assert "prodigy db-out" in out and "--requeue-missing" in out
