"""S3 Inventory reports, the pure parts: the manifest, the columns, the keys and the rows.

AWS writes a report under its destination as `.../<source bucket>/<config id>/
YYYY-MM-DDTHH-MMZ/manifest.json`, which names the data files (`files`: key, size,
MD5checksum), their `fileFormat` (CSV, Parquet or ORC) and `fileSchema` (for CSV, the
comma-separated column names: the files have no header). Parquet and ORC files name their
own columns (`key`, `last_modified_date`, ...); CSV ones are named in the manifest
(`Key`, `LastModifiedDate`, ...): both are compared in one canonical form.

In CSV reports keys are URL-encoded the way HTML forms are (a space is `+`, a `+` is
`%2B`, other bytes `%XX` of UTF-8): `urllib.parse.unquote_plus` is their exact inverse.
Parquet and ORC keys are stored as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from tracker.errors import InventoryError
from tracker.filters import KeyFilter
from tracker.records import ListedObject
from tracker.s3uri import format_s3_uri

FORMATS = ("CSV", "Parquet", "ORC")

#: The dated folder of one report under an inventory's destination.
SNAPSHOT_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z$")

#: Columns read (canonical names); `bucket` and `key` are required, the rest optional.
COLUMNS = ("bucket", "key", "size", "lastmodifieddate", "etag", "islatest", "isdeletemarker")


def canonical(column: str) -> str:
    """`LastModifiedDate` and `last_modified_date` -> `lastmodifieddate`."""
    return column.replace("_", "").replace(" ", "").lower()


@dataclass(frozen=True)
class DataFile:
    key: str
    size: int | None
    md5: str | None


@dataclass(frozen=True)
class Manifest:
    """What a report's manifest.json says."""

    uri: str
    bucket: str  # the bucket holding the manifest and its data files
    source_bucket: str
    file_format: str
    #: The CSV files' columns in order (empty for Parquet and ORC: the files say).
    csv_columns: tuple[str, ...]
    files: tuple[DataFile, ...]
    created_at: datetime | None

    @property
    def snapshot_at(self) -> datetime | None:
        """The report's date: its `creationTimestamp`, else its folder's name."""
        if self.created_at is not None:
            return self.created_at
        folder = self.uri.rsplit("/", 2)[-2]
        if not SNAPSHOT_FOLDER.match(folder):
            return None
        return datetime.strptime(folder, "%Y-%m-%dT%H-%MZ").replace(tzinfo=UTC)

    @property
    def snapshot(self) -> str:
        """The report's date for people."""
        when = self.snapshot_at
        return when.strftime("%Y-%m-%d %H:%M UTC") if when is not None else "undated"


def parse_manifest(raw: bytes, bucket: str, key: str) -> Manifest:
    """A manifest.json's content, checked; `InventoryError` says what is wrong in one line."""
    uri = format_s3_uri(bucket, key)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise InventoryError(f"{uri} is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise InventoryError(f"{uri} is not an S3 Inventory manifest (not a JSON object)")
    missing = [f for f in ("sourceBucket", "fileFormat", "files") if f not in data]
    if missing:
        raise InventoryError(f"{uri} is not an S3 Inventory manifest (no {', '.join(missing)})")
    file_format = next((f for f in FORMATS if f.lower() == str(data["fileFormat"]).lower()), None)
    if file_format is None:
        raise InventoryError(
            f"{uri}: unsupported fileFormat {data['fileFormat']!r} (CSV, Parquet or ORC)"
        )
    columns: tuple[str, ...] = ()
    if file_format == "CSV":
        schema = data.get("fileSchema")
        if not isinstance(schema, str) or not schema.strip():
            raise InventoryError(f"{uri}: a CSV inventory's manifest needs its fileSchema")
        columns = tuple(canonical(c) for c in schema.split(","))
        check_columns(columns, uri)
    files = data["files"]
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("key"), str) for f in files
    ):
        raise InventoryError(f"{uri}: 'files' is not a list of {{key, size, MD5checksum}}")
    return Manifest(
        uri=uri,
        bucket=bucket,
        source_bucket=str(data["sourceBucket"]),
        file_format=file_format,
        csv_columns=columns,
        files=tuple(
            DataFile(f["key"], _int(f.get("size")), f.get("MD5checksum") or None) for f in files
        ),
        created_at=_created(data.get("creationTimestamp")),
    )


def check_columns(columns: Iterable[str], where: str) -> None:
    """An inventory without keys or buckets cannot be read."""
    absent = {"bucket", "key"} - set(columns)
    if absent:
        raise InventoryError(f"{where}: the inventory has no {' or '.join(sorted(absent))} column")


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return None


def _created(value: object) -> datetime | None:
    """`creationTimestamp`: milliseconds since the epoch, as a string."""
    millis = _int(value)
    if millis is None:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC)


def newest_snapshot(folders: Iterable[str]) -> list[str]:
    """Dated report folders (`.../2026-11-20T00-00Z/`) under a destination, newest first."""
    dated = [f for f in folders if SNAPSHOT_FOLDER.match(f.rstrip("/").rsplit("/", 1)[-1])]
    return sorted(dated, key=lambda f: f.rstrip("/").rsplit("/", 1)[-1], reverse=True)


def decode_key(key: str) -> str:
    """A CSV inventory's key as S3 knows it (see the module's note)."""
    if "%" in key or "+" in key:
        return unquote_plus(key, errors="strict")
    return key


def _true(value: object) -> bool:
    """A boolean column of either kind: Parquet/ORC booleans, CSV `true`/`false`."""
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def _time(value: object) -> datetime | None:
    """Parquet/ORC timestamps (naive UTC or aware) and CSV's ISO 8601 strings."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass
class Taken:
    """What one batch of rows gave: the keys to record and the greatest key of the source."""

    objects: list[ListedObject]
    max_key: str | None


def take_rows(
    columns: Mapping[str, Sequence[object]],
    *,
    bucket: str,
    prefix: str,
    key_filter: KeyFilter,
    encoded: bool,
) -> Taken:
    """The rows of one batch that are current objects of bucket + prefix the filter takes.

    `columns` maps canonical names to equally long value lists (absent optional columns:
    every object is current, sizes and times unknown). A row is left out when it is of
    another bucket or outside the prefix, a non-current version or a delete marker, or when
    the filter refuses it (folder placeholders and zero-byte objects included). The
    greatest key counts every current key under the prefix, taken or not: the listing
    cursor continues after it.
    """
    keys = columns["key"]
    count = len(keys)
    buckets = columns["bucket"]
    sizes = columns.get("size") or [None] * count
    etags = columns.get("etag") or [None] * count
    times = columns.get("lastmodifieddate") or [None] * count
    latest = columns.get("islatest")
    markers = columns.get("isdeletemarker")
    taken: list[ListedObject] = []
    # Python orders str by code point, which is S3's UTF-8 byte order for valid keys.
    max_key = ""
    for i in range(count):
        if buckets[i] != bucket:
            continue
        if (latest is not None and latest[i] not in (None, "") and not _true(latest[i])) or (
            markers is not None and _true(markers[i])
        ):
            continue
        raw = keys[i]
        assert isinstance(raw, str)
        key = decode_key(raw) if encoded else raw
        if not key.startswith(prefix):
            continue
        if key > max_key:
            max_key = key
        size = sizes[i]
        size = int(size) if size is not None and size != "" else None  # type: ignore[call-overload]
        if not key_filter.accepts(key, size):
            continue
        etag = etags[i]
        taken.append(
            ListedObject(
                key,
                size,
                str(etag).strip('"') or None if etag is not None else None,
                _time(times[i]),
            )
        )
    return Taken(taken, max_key or None)
