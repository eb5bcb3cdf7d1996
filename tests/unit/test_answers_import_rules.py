"""`tracker import-answers`' parsing (tracker/answers_import.py) and the inventory
manifest's remaining rules (tracker/manifest.py), line by line: the file is refused whole,
naming its first bad line, before anything is written.

Seen to fail on `scripts/mutants`' mutants of `parse_db_out` (the first line's BOM rule,
the line numbers, each message) and of `newest_snapshot`, `parse_manifest`, `take_rows`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tracker.answers_import import ParsedAnswers, parse_db_out
from tracker.errors import InventoryError, UsageError
from tracker.filters import KeyFilter
from tracker.manifest import (
    Manifest,
    canonical,
    check_columns,
    newest_snapshot,
    parse_manifest,
    take_rows,
)
from tracker.records import AnswerRecord, ListedObject, SourceRef
from tracker.states import Answer

SOURCE = SourceRef(1, "my-bucket", "img/")


def _line(key: str, answer: str = "accept", **extra: object) -> str:
    return json.dumps({"meta": {"key": key}, "answer": answer, **extra})


def _refusal(lines: list[str | bytes], source: SourceRef = SOURCE) -> str:
    with pytest.raises(UsageError) as caught:
        parse_db_out(lines, source, name="out.jsonl")
    return str(caught.value)


def test_every_answer_of_the_file_is_read_with_its_line_count() -> None:
    lines: list[str | bytes] = [
        "\ufeff" + _line("img/a.jpg", _session_id="ds-alice"),
        "",
        b"  \n",
        _line("img/b.jpg", "reject").encode(),
        _line("img/a.jpg", "ignore"),
    ]
    parsed = parse_db_out(lines, SOURCE, name="out.jsonl")
    assert parsed == ParsedAnswers(
        [
            AnswerRecord("img/a.jpg", Answer.ACCEPT, "ds-alice"),
            AnswerRecord("img/b.jpg", Answer.REJECT, None),
            AnswerRecord("img/a.jpg", Answer.IGNORE, None),
        ],
        5,
    )
    assert parsed.keys == 2


def test_a_byte_order_mark_is_dropped_from_the_first_line_only() -> None:
    first = "\ufeff".encode() + _line("img/a.jpg").encode()
    assert parse_db_out([first], SOURCE, name="f").answers[0].key == "img/a.jpg"
    second = "\ufeff" + _line("img/b.jpg")
    bom = "out.jsonl line 2: not JSON (Unexpected UTF-8 BOM (decode using utf-8-sig))"
    assert _refusal([_line("img/a.jpg"), second]) == bom
    assert _refusal([_line("img/a.jpg"), second.encode()]) == bom


def test_an_empty_file_has_no_answers_and_no_lines() -> None:
    assert parse_db_out([], SOURCE, name="f") == ParsedAnswers([], 0)
    assert parse_db_out(["", " "], SOURCE, name="f") == ParsedAnswers([], 2)


@pytest.mark.parametrize(
    "bad,message",
    [
        (b"\xff\xfe", "out.jsonl line 2: not UTF-8"),
        ("{nope", "out.jsonl line 2: not JSON (Expecting property name enclosed in double quotes)"),
        ("[1, 2]", "out.jsonl line 2: expected a JSON object"),
        ('"text"', "out.jsonl line 2: expected a JSON object"),
        (_line("img/c.jpg", "maybe"), "out.jsonl line 2: answer is 'maybe', expected one of "
         "accept, reject, ignore"),
        ('{"image": "data:x", "answer": "accept"}',
         "out.jsonl line 2: no meta.key, and image is a data URI, not a key"),
        (_line("other/c.jpg"), "out.jsonl line 2: key 'other/c.jpg' is not under s3://my-bucket/img/"),
        (_line("x/\x1b[2Jc.jpg"),
         "out.jsonl line 2: key 'x/\\\\x1b[2Jc.jpg' is not under s3://my-bucket/img/"),
    ],
)  # fmt: skip
def test_the_first_bad_line_is_named_with_why(bad: str | bytes, message: str) -> None:
    assert _refusal([_line("img/a.jpg"), bad, "{also bad"]) == message


def test_a_source_of_the_whole_bucket_takes_every_key() -> None:
    whole = SourceRef(2, "my-bucket", "")
    assert parse_db_out([_line("any/key")], whole, name="f").answers[0].key == "any/key"


# --- manifest ---------------------------------------------------------------------------

_BASE = {
    "sourceBucket": "src",
    "fileFormat": "CSV",
    "fileSchema": "Bucket, Key, Size",
    "files": [
        {"key": "d/1.csv.gz", "size": "10", "MD5checksum": "0cc175b9c0f1b6a831c399e269772661"}
    ],
}


def _manifest(**changes: object) -> bytes:
    return json.dumps(_BASE | changes).encode()


def _inventory_error(raw: bytes) -> str:
    with pytest.raises(InventoryError) as caught:
        parse_manifest(raw, "inv", "p/2026-11-20T00-00Z/manifest.json")
    return str(caught.value)


URI = "s3://inv/p/2026-11-20T00-00Z/manifest.json"


def test_a_manifest_is_read_field_for_field() -> None:
    parsed = parse_manifest(_manifest(creationTimestamp="1767225600000"), "inv", "m.json")
    assert parsed.uri == "s3://inv/m.json" and parsed.bucket == "inv"
    assert parsed.source_bucket == "src" and parsed.file_format == "CSV"
    assert parsed.csv_columns == ("bucket", "key", "size")
    assert [(f.key, f.size, f.md5) for f in parsed.files] == [
        ("d/1.csv.gz", 10, "0cc175b9c0f1b6a831c399e269772661")
    ]
    assert parsed.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert parsed.snapshot == "2026-01-01 00:00 UTC"
    orc = parse_manifest(_manifest(fileFormat="orc", fileSchema=None), "inv", "m.json")
    assert orc.file_format == "ORC" and orc.csv_columns == ()
    assert orc.created_at is None and orc.snapshot == "undated"


def test_a_manifest_in_a_dated_folder_is_dated_by_it() -> None:
    parsed = parse_manifest(_manifest(), "inv", "p/2026-11-20T05-30Z/manifest.json")
    assert parsed.snapshot_at == datetime(2026, 11, 20, 5, 30, tzinfo=UTC)
    assert parsed.snapshot == "2026-11-20 05:30 UTC"


@pytest.mark.parametrize(
    "raw,message",
    [
        (b"\xff", f"{URI} is not valid JSON ('utf-8' codec can't decode byte 0xff in "
         "position 0: invalid start byte)"),
        (b"[]", f"{URI} is not an S3 Inventory manifest (not a JSON object)"),
        (b"{}", f"{URI} is not an S3 Inventory manifest (no sourceBucket, fileFormat, files)"),
        (b'{"files": []}', f"{URI} is not an S3 Inventory manifest (no sourceBucket, fileFormat)"),
        (_manifest(fileFormat="Avro"),
         f"{URI}: unsupported fileFormat 'Avro' (CSV, Parquet or ORC)"),
        (_manifest(fileSchema=" "), f"{URI}: a CSV inventory's manifest needs its fileSchema"),
        (_manifest(fileSchema=3), f"{URI}: a CSV inventory's manifest needs its fileSchema"),
        (_manifest(fileSchema="Bucket, Size"), f"{URI}: the inventory has no key column"),
        (_manifest(fileSchema="Size"), f"{URI}: the inventory has no bucket or key column"),
        (_manifest(files={}), f"{URI}: 'files' is not a list of {{key, size, MD5checksum}}"),
        (_manifest(files=[{"key": 1}]),
         f"{URI}: 'files' is not a list of {{key, size, MD5checksum}}"),
        (_manifest(files=["k"]), f"{URI}: 'files' is not a list of {{key, size, MD5checksum}}"),
    ],
)  # fmt: skip
def test_a_bad_manifest_says_what_is_wrong(raw: bytes, message: str) -> None:
    assert _inventory_error(raw) == message


def test_column_names_of_every_kind_meet_in_one_form() -> None:
    assert canonical("Last Modified_Date") == "lastmodifieddate"
    check_columns(["bucket", "key"], "x")
    with pytest.raises(InventoryError) as caught:
        check_columns(["key"], "s3://x")
    assert str(caught.value) == "s3://x: the inventory has no bucket column"


def test_only_dated_report_folders_count_newest_first() -> None:
    folders = [
        "d/2026-11-19T00-00Z/",
        "d/hive/",
        "d/2026-11-20T00-00Z",
        "d/2026-11-20T00-00Z-old/",
        "d/x2026-11-21T00-00Z/",
        "d/2026-11-18T23-59Z/",
    ]
    assert newest_snapshot(folders) == [
        "d/2026-11-20T00-00Z",
        "d/2026-11-19T00-00Z/",
        "d/2026-11-18T23-59Z/",
    ]


def test_a_manifest_outside_a_dated_folder_and_without_a_timestamp_is_undated() -> None:
    manifest = Manifest("s3://inv/p/latest/manifest.json", "inv", "s", "CSV", (), (), None)
    assert manifest.snapshot_at is None and manifest.snapshot == "undated"


def test_rows_left_out_still_move_the_greatest_key_only_when_current_and_under_the_prefix() -> None:
    columns: dict[str, list[object]] = {
        "bucket": ["b", "b", "other", "b", "b", "b"],
        "key": ["p/z.txt", "p/a.jpg", "p/zz.jpg", "q/zzz.jpg", "p/zy.jpg", "p/b.jpg"],
        "islatest": ["true", "", "true", "true", "false", None],
        "isdeletemarker": [False, False, False, False, False, "TRUE"],
        "etag": ['"e1"', '""', None, None, None, None],
        "size": ["5", "", None, None, None, None],
        "lastmodifieddate": ["2026-01-01T00:00:00+01:00", "", None, None, None, None],
    }
    taken = take_rows(columns, bucket="b", prefix="p/", key_filter=KeyFilter(), encoded=False)
    assert taken.objects == [ListedObject("p/a.jpg", None, None, None)]
    assert taken.max_key == "p/z.txt"
    every = take_rows(
        columns, bucket="b", prefix="p/", key_filter=KeyFilter(None, ()), encoded=False
    )
    assert every.objects[0] == ListedObject(
        "p/z.txt", 5, "e1", datetime.fromisoformat("2026-01-01T00:00:00+01:00")
    )
    none = take_rows(
        {"bucket": ["x"], "key": ["p/a"]}, bucket="b", prefix="p/", key_filter=KeyFilter(),
        encoded=True,
    )  # fmt: skip
    assert none.objects == [] and none.max_key is None


def test_an_answer_naming_the_sources_bucket_is_taken() -> None:
    line = json.dumps({"meta": {"key": "img/a.jpg", "bucket": "my-bucket"}, "answer": "accept"})
    assert parse_db_out([line], SOURCE, name="f").answers[0].key == "img/a.jpg"


def test_report_folders_sort_by_their_date_not_their_path() -> None:
    folders = ["z/x/2026-11-19T00-00Z/", "a/b/2026-11-20T00-00Z/", "2026-11-18T00-00Z", "my d/x/"]
    assert newest_snapshot(folders) == [
        "a/b/2026-11-20T00-00Z/",
        "z/x/2026-11-19T00-00Z/",
        "2026-11-18T00-00Z",
    ]
    assert newest_snapshot(["my dir/2026-11-18T00-00Z/", "a/2026-11-19T00-00Z/"]) == [
        "a/2026-11-19T00-00Z/",
        "my dir/2026-11-18T00-00Z/",
    ]


def test_a_csv_key_that_is_not_utf8_once_decoded_is_refused() -> None:
    from tracker.manifest import decode_key

    with pytest.raises(UnicodeDecodeError):
        decode_key("a%ff")


def test_keys_are_decoded_only_when_encoded_and_etags_lose_only_their_quotes() -> None:
    columns: dict[str, list[object]] = {
        "bucket": ["b", "b"],
        "key": ["p/%41.jpg", "p/b.jpg"],
        "etag": ['"XeX"', None],
    }
    taken = take_rows(columns, bucket="b", prefix="p/", key_filter=KeyFilter(), encoded=False)
    assert taken.objects == [
        ListedObject("p/%41.jpg", None, "XeX", None),
        ListedObject("p/b.jpg", None, None, None),
    ]
