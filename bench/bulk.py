"""Bulk recording: pages on SQLite and PostgreSQL (PostgreSQL row by row, the old path,
beside the set-based insert, the new one, in the same run), and S3 Inventory ingestion on
SQLite beside its floor: pyarrow reading the same files into Python values, nothing else.

The inventory is a real report in AWS's layout on a local SeaweedFS (one manifest, data
files of 250,000 rows); ingestion includes downloading and checking each file's MD5.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from bench.report import Table, timed
from bench.scale import _nullcontext, pg_schema, record_all
from tracker.filters import KeyFilter
from tracker.inventory import Ingestion, open_manifest, read_batches
from tracker.store import Store

ROWS_PER_FILE = 250_000
CSV_COLUMNS = "Bucket, Key, Size, LastModifiedDate, ETag, IsLatest, IsDeleteMarker"


def _table(start: int, count: int) -> pa.Table:
    ids = range(start, start + count)
    return pa.table(
        {
            "bucket": pa.array(["bench-source"] * count),
            "key": pa.array([f"images/{i:09d}.jpg" for i in ids]),
            "size": pa.array([1000 + i % 5000 for i in ids], pa.int64()),
            "last_modified_date": pa.array(
                [datetime(2026, 11, 1, tzinfo=UTC)] * count, pa.timestamp("ms", tz="UTC")
            ),
            "e_tag": pa.array([f"{i:032x}" for i in ids]),
            "is_latest": pa.array([True] * count),
            "is_delete_marker": pa.array([False] * count),
        }
    )


def _body(table: pa.Table, file_format: str) -> bytes:
    out = io.BytesIO()
    if file_format == "Parquet":
        pq.write_table(table, out)
        return out.getvalue()
    plain = io.BytesIO()
    pcsv.write_csv(table, plain, write_options=pcsv.WriteOptions(include_header=False))
    return gzip.compress(plain.getvalue(), compresslevel=1)


def upload(client: Any, bucket: str, total: int, file_format: str) -> str:
    """A report of `total` keys in `file_format`; returns its manifest's URI."""
    files = []
    base = f"{file_format.lower()}/bench-source/daily"
    for number, start in enumerate(range(0, total, ROWS_PER_FILE)):
        body = _body(_table(start, min(ROWS_PER_FILE, total - start)), file_format)
        key = f"{base}/data/{number}.{file_format.lower()}"
        client.put_object(Bucket=bucket, Key=key, Body=body)
        files.append({"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()})
    manifest = {
        "sourceBucket": "bench-source",
        "fileFormat": file_format,
        "fileSchema": CSV_COLUMNS,
        "creationTimestamp": "1764547200000",
        "files": files,
    }
    key = f"{base}/2026-12-01T00-00Z/manifest.json"
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())
    return f"s3://{bucket}/{key}"


def pyarrow_floor(client: Any, manifest_uri: str, folder: Path) -> float:
    """Seconds for pyarrow to read the report's files in batches into Python values (the
    rows as `take_rows` gets them), from local copies: the least any ingestion pays."""
    manifest = open_manifest(client, manifest_uri)
    paths = []
    for number, data in enumerate(manifest.files):
        path = folder / f"floor-{number}"
        client.download_file(manifest.bucket, data.key, str(path))
        paths.append((path, data))

    def read() -> int:
        rows = 0
        for path, data in paths:
            for _, columns in read_batches(str(path), manifest, data, 0, 50_000):
                rows += len(columns["key"])
        return rows

    return timed(read)[0]


def ingest(client: Any, manifest_uri: str, url: str) -> float:
    with Store.open(url) as store:
        manifest = open_manifest(client, manifest_uri)
        ingestion = Ingestion(store, client, manifest, "bench-source", "", KeyFilter())
        seconds, result = timed(ingestion.run)
        assert result.finished, result
        return seconds


def run(client: Any, record_keys: int, inventory_keys: int, pg_url: str | None) -> list[Table]:
    tables = [_record(record_keys, pg_url)]
    client.create_bucket(Bucket="bench-inventory")
    table = Table(
        f"S3 Inventory ingestion ({inventory_keys:,} keys, files of {ROWS_PER_FILE:,} rows, "
        "SQLite, SeaweedFS on loopback)",
        ["format", "ingestion keys/s", "pyarrow read floor keys/s", "ingestion vs floor", "target"],
    )
    with tempfile.TemporaryDirectory(prefix="tracker-bench-inventory-") as tmp:
        for file_format in ("Parquet", "CSV"):
            uri = upload(client, "bench-inventory", inventory_keys, file_format)
            floor = pyarrow_floor(client, uri, Path(tmp))
            ours = ingest(client, uri, f"sqlite:///{Path(tmp) / f'{file_format}.db'}")
            table.add(
                file_format,
                f"{inventory_keys / ours:,.0f}",
                f"{inventory_keys / floor:,.0f}",
                f"{floor / ours * 100:.0f}%",
                ">= 100,000 keys/s",
            )
    table.notes.append(
        "ingestion: download + MD5 check + pyarrow read + filter + record (one transaction "
        "per 50,000 rows, with its position), then ANALYZE; floor: pyarrow read into "
        "Python values only"
    )
    tables.append(table)
    return tables


def _record(total: int, pg_url: str | None) -> Table:
    """Pages of 1,000 keys through `Store.record_page`."""
    table = Table(
        f"Recording listed pages ({total:,} keys, pages of 1,000; same run)",
        ["backend / path", "keys/s", "vs SQLite (now)", "target"],
    )
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tracker-bench-record-") as tmp:
        cases: list[tuple[str, Any, bool]] = [
            ("SQLite, row by row (before)", _nullcontext(f"sqlite:///{Path(tmp) / 'a.db'}"), False),
            ("SQLite, set-based (now)", _nullcontext(f"sqlite:///{Path(tmp) / 'b.db'}"), True),
        ]
        if pg_url:
            cases += [
                ("PostgreSQL, row by row (before)", pg_schema(pg_url), False),
                ("PostgreSQL, set-based (now)", pg_schema(pg_url), True),
            ]
        for name, context, bulk_insert in cases:
            with context as url, Store.open(url) as store:
                store.bulk_insert = bulk_insert
                rates[name] = total / record_all(store, total)
    sqlite = rates["SQLite, set-based (now)"]
    for name, rate in rates.items():
        target = ">= SQLite (now)" if name == "PostgreSQL, set-based (now)" else ""
        table.add(name, f"{rate:,.0f}", f"{rate / sqlite:.2f}x", target)
    if "PostgreSQL, set-based (now)" in rates:
        gain = rates["PostgreSQL, set-based (now)"] / rates["PostgreSQL, row by row (before)"]
        table.notes.append(
            f"set-based (one INSERT ... SELECT FROM unnest(arrays)) vs row by row on "
            f"PostgreSQL: {gain:.1f}x; on SQLite, multi-row VALUES through the driver vs "
            f"SQLAlchemy's executemany: {sqlite / rates['SQLite, row by row (before)']:.1f}x"
        )
    return table
