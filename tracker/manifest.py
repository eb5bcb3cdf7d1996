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
from tracker.s3uri import format_s3_uri, key_problem

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
    md5: str  # hex; a manifest without one is refused (`parse_manifest`)


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
    # AWS writes an MD5 for every data file. Without one, a truncated or replaced file could
    # not be told from the report's own: refused, as a manifest we cannot check.
    unchecked = next(
        (
            f["key"]
            for f in files
            if not isinstance(f.get("MD5checksum"), str) or not f["MD5checksum"].strip()
        ),
        None,
    )
    if unchecked is not None:
        raise InventoryError(
            f"{uri}: data file {unchecked!r} has no MD5checksum, so its rows cannot be "
            "checked; nothing was read (AWS writes one for every file)"
        )
    return Manifest(
        uri=uri,
        bucket=bucket,
        source_bucket=str(data["sourceBucket"]),
        file_format=file_format,
        csv_columns=columns,
        files=tuple(
            DataFile(f["key"], _int(f.get("size")), f["MD5checksum"].strip()) for f in files
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
    where: str = "the report",
    first_row: int = 1,
) -> Taken:
    """The rows of one batch that are current objects of bucket + prefix the filter takes.

    `columns` maps canonical names to equally long value lists (absent optional columns:
    every object is current, sizes and times unknown). A row is left out when it is of
    another bucket or outside the prefix, a non-current version or a delete marker, or when
    the filter refuses it (folder placeholders and zero-byte objects included). The
    greatest key counts every current key under the prefix, taken or not; it is kept with
    the ingestion's progress for people (the listing cursor does not move to it: see
    `tracker.inventory`).

    A row no S3 listing could give (a key that is not percent-encoded UTF-8, holds a NUL or
    is over 1024 bytes; a size or date that is no number or ISO 8601 time) means a damaged
    report: `InventoryError` names `where` and the row (`first_row` is the batch's first
    row in its file, counted from 1), and nothing of the batch is taken.
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
        try:
            key = decode_key(raw) if encoded else raw
        except UnicodeDecodeError:
            raise _bad_row(
                where, first_row + i, f"key {raw!r} is not percent-encoded UTF-8"
            ) from None
        if not key.startswith(prefix):
            continue
        problem = key_problem(key)
        if problem is not None:
            raise _bad_row(where, first_row + i, f"{problem}: {raw!r}")
        if key > max_key:
            max_key = key
        size = sizes[i]
        try:
            size = int(size) if size is not None and size != "" else None  # type: ignore[call-overload]
        except ValueError:
            raise _bad_row(where, first_row + i, f"size {size!r} is not a number") from None
        if not key_filter.accepts(key, size):
            continue
        etag = etags[i]
        try:
            modified = _time(times[i])
        except ValueError:
            raise _bad_row(
                where, first_row + i, f"last modified {times[i]!r} is not an ISO 8601 time"
            ) from None
        taken.append(
            ListedObject(
                key, size, str(etag).strip('"') or None if etag is not None else None, modified
            )
        )
    return Taken(taken, max_key or None)


def _bad_row(where: str, row: int, what: str) -> InventoryError:
    return InventoryError(
        f"{where}, row {row}: {what}; the report is damaged (nothing from its batch on is recorded)"
    )
