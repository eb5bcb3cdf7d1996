"""S3 Inventory's pure rules (`tracker.manifest`): the manifest, key decoding, which rows
are taken. End to end, on SeaweedFS, in tests/integration/test_inventory.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import quote_plus

import pytest

from tracker.errors import InventoryError
from tracker.filters import KeyFilter
from tracker.manifest import decode_key, newest_snapshot, parse_manifest, take_rows

GOOD = {
    "sourceBucket": "src",
    "fileFormat": "CSV",
    "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag, IsLatest",
    "creationTimestamp": "1763596800000",
    "files": [{"key": "inv/data/1.csv.gz", "size": 10, "MD5checksum": "ab"}],
}


def manifest(**changes: object) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def test_a_manifest_gives_its_files_columns_and_date():
    parsed = parse_manifest(manifest(), "inv", "src/daily/2026-11-20T00-00Z/manifest.json")
    assert parsed.uri == "s3://inv/src/daily/2026-11-20T00-00Z/manifest.json"
    assert parsed.csv_columns == ("bucket", "key", "size", "lastmodifieddate", "etag", "islatest")
    assert [(f.key, f.size, f.md5) for f in parsed.files] == [("inv/data/1.csv.gz", 10, "ab")]
    assert parsed.snapshot_at == datetime(2025, 11, 20, tzinfo=UTC)
    # Without creationTimestamp, the dated folder's name says when.
    undated = parse_manifest(
        manifest(creationTimestamp=None), "inv", "src/daily/2026-11-19T06-30Z/manifest.json"
    )
    assert undated.snapshot_at == datetime(2026, 11, 19, 6, 30, tzinfo=UTC)
    assert parse_manifest(manifest(fileFormat="parquet"), "i", "m").file_format == "Parquet"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "is not valid JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"files": []}).encode(), "no sourceBucket, fileFormat"),
        (manifest(fileFormat="JSON"), "unsupported fileFormat 'JSON'"),
        (manifest(fileSchema=""), "needs its fileSchema"),
        (manifest(fileSchema="Bucket, Size"), "has no key column"),
        (manifest(files=[{"size": 1}]), "'files' is not a list"),
        # Without an MD5 a file's rows could not be checked: refused (mutation seen: the
        # old `f.get("MD5checksum") or None` read them unchecked).
        (manifest(files=[{"key": "d/1.csv.gz", "size": 1}]), "'d/1.csv.gz' has no MD5checksum"),
        (manifest(files=[{"key": "d/1", "MD5checksum": " "}]), "'d/1' has no MD5checksum"),
        (manifest(files=[{"key": "d/1", "MD5checksum": 7}]), "'d/1' has no MD5checksum"),
    ],
)
def test_a_bad_manifest_is_one_line(raw, message):
    with pytest.raises(InventoryError) as error:
        parse_manifest(raw, "inv", "m.json")
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "key", ["a b.jpg", "plus+sign.jpg", "100%.png", "%20 literal", "ünï/çødé.jpg", "日本/写真.jpeg"]
)
def test_csv_keys_decode_exactly(key):
    """AWS encodes CSV keys as forms do (space `+`, `+` `%2B`); decoding is exact, with or
    without `/` encoded."""
    assert decode_key(quote_plus(key, safe="/")) == key
    assert decode_key(quote_plus(key, safe="")) == key
    assert decode_key("plain/key.jpg") == "plain/key.jpg"


def test_the_newest_dated_folder_comes_first():
    folders = ["d/2026-11-19T00-00Z/", "d/data/", "d/hive/", "d/2026-11-20T00-00Z/"]
    assert newest_snapshot(folders) == ["d/2026-11-20T00-00Z/", "d/2026-11-19T00-00Z/"]


def test_rows_are_taken_as_a_listing_would_take_objects():
    when = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        # bucket, key, size, latest, delete marker
        ("b", "p/a.jpg", 5, True, False),
        ("b", "p/old.jpg", 5, False, False),  # a non-current version
        ("b", "p/gone.jpg", None, True, True),  # a delete marker
        ("b", "p/dir/", 0, True, False),  # a folder placeholder
        ("b", "p/zero.jpg", 0, True, False),  # zero bytes
        ("b", "p/notes.txt", 5, True, False),  # the default filter: not an image
        ("b", "q/out.jpg", 5, True, False),  # outside the prefix
        ("other", "p/x.jpg", 5, True, False),  # another bucket
        ("b", "p/ü.png", 5, None, None),  # unversioned: no IsLatest
    ]
    columns = {
        "bucket": [r[0] for r in rows],
        "key": [r[1] for r in rows],
        "size": [r[2] for r in rows],
        "islatest": [r[3] for r in rows],
        "isdeletemarker": [r[4] for r in rows],
        "etag": ['"e"'] * len(rows),
        "lastmodifieddate": [when.replace(tzinfo=None)] * len(rows),
    }
    taken = take_rows(columns, bucket="b", prefix="p/", key_filter=KeyFilter(), encoded=False)
    assert [o.key for o in taken.objects] == ["p/a.jpg", "p/ü.png"]
    assert taken.objects[0].etag == "e" and taken.objects[0].last_modified == when
    # The greatest current key under the prefix, taken or not, in UTF-8 order.
    assert taken.max_key == "p/ü.png"


def test_csv_rows_are_strings_decoded():
    columns = {
        "bucket": ["b", "b"],
        "key": ["p/a+b.jpg", "p/c%2Bd.jpg"],
        "size": ["3", ""],
        "islatest": ["true", ""],
        "isdeletemarker": ["false", "false"],
        "lastmodifieddate": ["2026-01-01T00:00:00.000Z", ""],
    }
    taken = take_rows(columns, bucket="b", prefix="p/", key_filter=KeyFilter(), encoded=True)
    assert [(o.key, o.size) for o in taken.objects] == [("p/a b.jpg", 3), ("p/c+d.jpg", None)]
    assert taken.objects[0].last_modified == datetime(2026, 1, 1, tzinfo=UTC)
    assert taken.objects[1].last_modified is None


def test_the_greatest_key_is_in_s3s_utf8_order():
    """A character outside the BMP (4 UTF-8 bytes) sorts after every BMP one, as in S3."""
    keys = ["p/😀.jpg", "p/\ufb01.jpg", "p/z.jpg"]
    columns = {"bucket": ["b"] * 3, "key": keys}
    taken = take_rows(columns, bucket="b", prefix="p/", key_filter=KeyFilter(), encoded=False)
    assert taken.max_key == max(keys, key=lambda k: k.encode("utf-8")) == "p/😀.jpg"


@pytest.mark.parametrize(
    ("column", "value", "encoded", "message"),
    [
        ("key", "p/%FF.jpg", True, "row 12: key 'p/%FF.jpg' is not percent-encoded UTF-8"),
        ("key", "p/%ED%A0%80.jpg", True, "row 12: key 'p/%ED%A0%80.jpg' is not percent-encoded"),
        ("key", "p/a%00b.jpg", True, "row 12: key contains a NUL character: 'p/a%00b.jpg'"),
        ("key", "p/" + "x" * 1100, False, "row 12: key is 1102 bytes of UTF-8, over S3's 1024"),
        ("size", "ten", True, "row 12: size 'ten' is not a number"),
        ("lastmodifieddate", "yesterday", True, "row 12: last modified 'yesterday' is not"),
    ],
)
def test_a_damaged_row_is_one_line_naming_the_file_and_row(column, value, encoded, message):
    """A row no listing could give fails the batch in one line (`InventoryError`, exit 2)
    naming the data file and the row in it. Seen to fail on the old code: UnicodeDecodeError
    and ValueError escaped as they were, naming neither."""
    columns: dict[str, list[object]] = {
        "bucket": ["b", "b"],
        "key": ["p/ok.jpg", "p/bad.jpg"],
        "size": ["3", "3"],
        "lastmodifieddate": ["2026-01-01T00:00:00.000Z"] * 2,
    }
    columns[column][1] = value
    with pytest.raises(InventoryError) as error:
        take_rows(columns, bucket="b", prefix="p/", key_filter=KeyFilter(), encoded=encoded,
                  where="s3://inv/d/1.csv.gz", first_row=11)  # fmt: skip
    text = str(error.value)
    assert text.startswith("s3://inv/d/1.csv.gz, row 12: ") and message in text
    assert "\n" not in text


def test_rows_of_another_bucket_or_prefix_are_left_out_before_they_are_checked():
    """A report read into one prefix fails only on a damaged row it would take: rows of
    other buckets are not read, nor the size or key rules of other prefixes. A key that
    cannot be decoded fails wherever it is: its prefix cannot be known."""
    columns = {
        "bucket": ["other", "b", "b"],
        "key": ["p/%FF.jpg", "q/a%00b.jpg", "q/ok.jpg"],
        "size": ["x", "3", "y"],
    }
    taken = take_rows(columns, bucket="b", prefix="p/", key_filter=KeyFilter(), encoded=True)
    assert taken.objects == [] and taken.max_key is None
    columns = {"bucket": ["b"], "key": ["q/%FF.jpg"]}
    with pytest.raises(InventoryError, match=r"row 1: key 'q/%FF\.jpg' is not percent-encoded"):
        take_rows(columns, bucket="b", prefix="p/", key_filter=KeyFilter(), encoded=True)
