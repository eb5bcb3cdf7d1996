"""S3 Inventory reports built the way AWS writes them, uploaded to the test S3 server.

Layout (AWS "Inventory manifest" docs): `<prefix><source bucket>/<config>/data/<uuid>.<ext>`
for the data files and `<prefix><source bucket>/<config>/<YYYY-MM-DDTHH-MMZ>/manifest.json`
naming them with their size and MD5. CSV files are gzip'd, headerless, every field quoted,
keys URL-encoded as forms encode them (space `+`, `+` `%2B`); Parquet and ORC files name
their columns in snake case and store keys as they are.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq

CSV_SCHEMA = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag"

#: The report's creation time as the manifest gives it: milliseconds since the epoch.
CREATED_MS = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp() * 1000)
MODIFIED = datetime(2026, 11, 19, 12, 30, 15, 123000, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    key: str
    size: int = 10
    bucket: str | None = None  # None: the report's source bucket
    latest: bool = True
    delete_marker: bool = False
    version: str | None = None

    @property
    def etag(self) -> str:
        return hashlib.md5(self.key.encode()).hexdigest()


def _table(rows: list[Row], bucket: str) -> pa.Table:
    return pa.table(
        {
            "bucket": pa.array([r.bucket or bucket for r in rows], pa.string()),
            "key": pa.array([r.key for r in rows], pa.string()),
            "version_id": pa.array([r.version for r in rows], pa.string()),
            "is_latest": pa.array([r.latest for r in rows], pa.bool_()),
            "is_delete_marker": pa.array([r.delete_marker for r in rows], pa.bool_()),
            "size": pa.array([None if r.delete_marker else r.size for r in rows], pa.int64()),
            "last_modified_date": pa.array([MODIFIED] * len(rows), pa.timestamp("ms", tz="UTC")),
            "e_tag": pa.array([None if r.delete_marker else r.etag for r in rows], pa.string()),
        }
    )


def _csv(rows: list[Row], bucket: str) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for r in rows:
        writer.writerow(
            [
                r.bucket or bucket,
                quote_plus(r.key, safe="/"),
                r.version or "",
                "true" if r.latest else "false",
                "true" if r.delete_marker else "false",
                "" if r.delete_marker else str(r.size),
                MODIFIED.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "" if r.delete_marker else r.etag,
            ]
        )
    return gzip.compress(text.getvalue().encode("utf-8"), compresslevel=1)


def data_file(rows: list[Row], bucket: str, file_format: str) -> bytes:
    """One data file's bytes in `file_format` (CSV gzip'd, Parquet or ORC)."""
    if file_format == "CSV":
        return _csv(rows, bucket)
    out = io.BytesIO()
    if file_format == "Parquet":
        pq.write_table(_table(rows, bucket), out)
    else:
        orc.write_table(_table(rows, bucket), out)
    return out.getvalue()


def upload_inventory(
    client: Any,
    inventory_bucket: str,
    source_bucket: str,
    files: list[list[Row]],
    file_format: str,
    *,
    destination: str = "inventories/",
    snapshot: str = "2026-11-20T00-00Z",
    manifest_extra: dict[str, Any] | None = None,
) -> str:
    """Upload a report (one data file per list of rows); returns its manifest's URI."""
    base = f"{destination}{source_bucket}/daily"
    extension = {"CSV": "csv.gz", "Parquet": "parquet", "ORC": "orc"}[file_format]
    listed = []
    for rows in files:
        body = data_file(rows, source_bucket, file_format)
        key = f"{base}/data/{uuid.uuid4()}.{extension}"
        client.put_object(Bucket=inventory_bucket, Key=key, Body=body)
        listed.append({"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()})
    schema = {
        "CSV": CSV_SCHEMA,
        "Parquet": "message s3.inventory { required binary bucket (STRING); ... }",
        "ORC": "struct<bucket:string,key:string,version_id:string,is_latest:boolean>",
    }[file_format]
    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{inventory_bucket}",
        "version": "2016-11-30",
        "creationTimestamp": str(CREATED_MS),
        "fileFormat": file_format,
        "fileSchema": schema,
        "files": listed,
        **(manifest_extra or {}),
    }
    key = f"{base}/{snapshot}/manifest.json"
    client.put_object(Bucket=inventory_bucket, Key=key, Body=json.dumps(manifest).encode())
    return f"s3://{inventory_bucket}/{key}"
