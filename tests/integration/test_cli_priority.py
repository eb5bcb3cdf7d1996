"""`tracker priority SOURCE FILE`: CSV or JSON lines, checked whole before writing; a bad
line is named and nothing is written; priorities show in `tracker keys --format jsonl`."""

from __future__ import annotations

import json

import pytest

from tests.cli_support import run_cli
from tracker.records import ListedObject
from tracker.store import Store


@pytest.fixture
def listed(db_url):  # type: ignore[no-untyped-def]
    with Store.open(db_url) as store:
        source = store.source("bucket", "img", create=True)
        keys = [f"img/{i}.jpg" for i in range(3)]
        store.record_page(
            source,
            [ListedObject(k) for k in keys],
            next_token=None,
            last_key=keys[-1],
            exhausted=True,
        )
        store.dataset(source, "ds", create=True)
    return db_url


def priorities(db_url: str, capsys) -> dict[str, float | None]:  # type: ignore[no-untyped-def]
    done = run_cli(capsys, "--db", db_url, "keys", "s3://bucket/img/", "--format", "jsonl")
    assert done.code == 0, done.err
    return {row["key"]: row["priority"] for row in map(json.loads, done.out.splitlines())}


def test_a_csv_file_sets_priorities_for_listed_and_unlisted_keys(listed, tmp_path, capsys):
    path = tmp_path / "p.csv"
    path.write_text("key,priority,note\nimg/1.jpg,0.75,x\nimg/later.jpg,3,y\n")
    done = run_cli(capsys, "--db", listed, "priority", "s3://bucket/img/", str(path))
    assert done.code == 0, done.err
    assert "2 priorities set" in done.err and "1 of the keys listed" in done.err
    assert priorities(listed, capsys) == {"img/0.jpg": None, "img/1.jpg": 0.75, "img/2.jpg": None}


def test_a_jsonl_file_sets_priorities_and_a_second_file_replaces_them(listed, tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"key": "img/0.jpg", "priority": 1}\n\n{"key": "img/2.jpg", "priority": -2.5}\n'
    )
    assert run_cli(capsys, "--db", listed, "priority", "s3://bucket/img/", str(path)).code == 0
    path.write_text('{"key": "img/0.jpg", "priority": 0.5}\n')
    assert run_cli(capsys, "--db", listed, "priority", "s3://bucket/img/", str(path)).code == 0
    assert priorities(listed, capsys) == {"img/0.jpg": 0.5, "img/1.jpg": None, "img/2.jpg": -2.5}


@pytest.mark.parametrize(
    ("content", "name", "error"),
    [
        (
            "key,priority\nimg/0.jpg,1\nimg/1.jpg,high\n",
            "p.csv",
            "line 3: priority 'high' is not a number",
        ),
        ("key,priority\nimg/0.jpg,1\nimg/2.jpg,\n", "p.csv", "line 3: no priority"),
        (
            "key,score\nimg/0.jpg,1\n",
            "p.csv",
            'line 1: expected a CSV header with the columns "key"',
        ),
        (
            "key,priority\nimg/0.jpg,1\nimg/0.jpg,2\n",
            "p.csv",
            "line 3: key 'img/0.jpg' already given on line 2",
        ),
        (
            '{"key": "img/0.jpg", "priority": 1}\n{"key": "img/1.jpg", "priority": nan\n',
            "p.jsonl",
            "line 2: not a JSON object",
        ),
        (
            '{"key": "img/0.jpg", "priority": 1}\n{"key": "img/1.jpg", "priority": "Infinity"}\n',
            "p.jsonl",
            "line 2: priority 'Infinity' is not a finite number",
        ),
        ('{"key": "img/0.jpg", "priority": 1}\n{"priority": 1}\n', "p.jsonl", "line 2: no key"),
        ('{"key": "img/0.jpg", "priority": true}\n', "p.jsonl", "line 1: no priority"),
    ],
)
def test_a_bad_line_is_named_in_one_line_and_nothing_is_written(
    listed, tmp_path, capsys, content, name, error
):
    path = tmp_path / name
    path.write_text(content)
    done = run_cli(capsys, "--db", listed, "priority", "s3://bucket/img/", str(path))
    assert done.code == 2
    assert len(done.err_lines) == 1 and error in done.err, done.err
    assert set(priorities(listed, capsys).values()) == {None}
