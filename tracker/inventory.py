"""S3 Inventory ingestion (`tracker sync --inventory`): a report's keys into a source
without listing the bucket.

Each data file is downloaded to a temporary file while its MD5 is computed, checked
against the manifest before any of its rows is recorded, then read with pyarrow in batches
of `BATCH_ROWS` rows (never a whole file in memory). Each batch's keys are recorded with
the position after it (file, rows read) in one transaction (`Store.record_inventory_batch`),
so a killed ingestion continues at that batch and nothing is lost or recorded twice.

An inventory adds keys; it never moves the listing cursor (`Store.finish_inventory`).
Nothing in a report proves which range of the source it covers: its configuration may
filter on a narrower prefix than the source's, and the manifest does not record the filter
(a report of `img/c/` read into `img/` holds no `img/a/` key, and looks the same as a report
of `img/` where `img/a/` is empty). So the listing stays where it was, and the next `sync`
or the recipe still lists, once, whatever the report may have missed.

pyarrow is an optional extra (`pip install 's3-annotation-tracker[inventory]'`); it is
imported only here, and only when a report is read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tracker.errors import InventoryError, S3Error
from tracker.filters import KeyFilter
from tracker.manifest import (
    COLUMNS,
    DataFile,
    Manifest,
    canonical,
    check_columns,
    newest_snapshot,
    parse_manifest,
    take_rows,
)
from tracker.s3 import describe, error_code
from tracker.s3uri import format_s3_uri, parse_s3_uri, utf8_after
from tracker.store import Store

#: Rows per batch, and so per transaction.
BATCH_ROWS = 50_000

#: Bytes per read while downloading a data file.
CHUNK_BYTES = 1 << 20

MISSING_PYARROW = (
    "reading an S3 Inventory needs pyarrow: pip install 's3-annotation-tracker[inventory]'"
)


def require_pyarrow() -> None:
    """Fail in one line, before anything is written, when the extra is not installed."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise InventoryError(MISSING_PYARROW) from None


def open_manifest(client: Any, uri: str) -> Manifest:
    """The manifest `uri` names: a `manifest.json`, or the newest one of the dated report
    folders (`YYYY-MM-DDTHH-MMZ/`) right under a destination prefix."""
    bucket, path = parse_s3_uri(uri)
    if path.endswith("manifest.json"):
        return parse_manifest(_get(client, bucket, path), bucket, path)
    prefix = path if not path or path.endswith("/") else path + "/"
    for folder in newest_snapshot(_folders(client, bucket, prefix)):
        key = folder + "manifest.json"
        try:
            raw = _get(client, bucket, key)
        except InventoryError:
            continue  # a report still being written has no manifest yet: take the one before
        return parse_manifest(raw, bucket, key)
    raise InventoryError(
        f"no report folder (YYYY-MM-DDTHH-MMZ/) with a manifest.json under {uri}; "
        "name the manifest.json itself, or the folder holding the dated folders"
    )


def _folders(client: Any, bucket: str, prefix: str) -> list[str]:
    folders: list[str] = []
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            folders += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    except (ClientError, BotoCoreError) as error:
        raise S3Error(describe(error, bucket, prefix or None)) from None
    return folders


@contextmanager
def _reading(bucket: str, key: str, missing: str) -> Iterator[None]:
    """S3's errors reading an object as one line: `missing` when it does not exist."""
    try:
        yield
    except ClientError as error:
        if error_code(error) in {"NoSuchKey", "404"}:
            raise InventoryError(missing) from None
        raise S3Error(describe(error, bucket, key)) from None
    except BotoCoreError as error:
        raise S3Error(describe(error, bucket, key)) from None


def _get(client: Any, bucket: str, key: str) -> bytes:
    with _reading(bucket, key, f"no inventory manifest at {format_s3_uri(bucket, key)}"):
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]


@dataclass
class IngestResult:
    files: int = 0
    rows: int = 0
    taken: int = 0
    new: int = 0
    finished: bool = False
    #: The report was read to its end before this run: nothing was done.
    already: bool = False


class Ingestion:
    """Reads one report into bucket + prefix, from where the state DB says it stopped."""

    def __init__(
        self,
        store: Store,
        client: Any,
        manifest: Manifest,
        bucket: str,
        prefix: str,
        key_filter: KeyFilter,
        *,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        if manifest.source_bucket != bucket:
            raise InventoryError(
                f"{manifest.uri} is an inventory of bucket {manifest.source_bucket!r}, "
                f"not of {bucket!r}"
            )
        self.store = store
        self.client = client
        self.manifest = manifest
        self.bucket = bucket
        self.prefix = prefix
        self.key_filter = key_filter
        self.batch_rows = batch_rows
        self.result = IngestResult()

    @property
    def uri(self) -> str:
        return format_s3_uri(self.bucket, self.prefix)

    def run(
        self,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_batch: Callable[[IngestResult], None] = lambda result: None,
    ) -> IngestResult:
        """Read the files left, batch by batch; `should_stop` is asked after each commit."""
        require_pyarrow()
        source = self.store.source(self.bucket, self.prefix, create=True)
        progress = self.store.start_inventory(
            source,
            self.manifest.uri,
            snapshot_at=self.manifest.snapshot_at,
            files=len(self.manifest.files),
        )
        if progress.finished:
            self.result.already = self.result.finished = True
            return self.result
        max_key = progress.max_key
        files = self.manifest.files
        for index in range(progress.file_index, len(files)):
            skip = progress.row_offset if index == progress.file_index else 0
            with tempfile.TemporaryDirectory(prefix="tracker-inventory-") as folder:
                path = os.path.join(folder, "data")
                self._download(files[index], path)
                for rows_read, columns in read_batches(
                    path, self.manifest, files[index], skip, self.batch_rows
                ):
                    taken = take_rows(
                        columns,
                        bucket=self.bucket,
                        prefix=self.prefix,
                        key_filter=self.key_filter,
                        encoded=self.manifest.file_format == "CSV",
                        where=format_s3_uri(self.manifest.bucket, files[index].key),
                        first_row=rows_read - len(columns["key"]) + 1,
                    )
                    if utf8_after(taken.max_key, max_key):
                        max_key = taken.max_key
                    self.result.new += self.store.record_inventory_batch(
                        source,
                        self.manifest.uri,
                        taken.objects,
                        file_index=index,
                        row_offset=rows_read,
                        max_key=max_key,
                    )
                    self.result.rows += len(columns["key"])
                    self.result.taken += len(taken.objects)
                    on_batch(self.result)
                    if should_stop():
                        return self.result
            # The file is done: the next run starts at the next one, without downloading it.
            self.store.record_inventory_batch(
                source, self.manifest.uri, [], file_index=index + 1, row_offset=0, max_key=max_key
            )
            self.result.files += 1
            if should_stop() and index + 1 < len(files):
                return self.result
        self.store.finish_inventory(source, self.manifest.uri)
        self.result.finished = True
        return self.result

    def _download(self, data: DataFile, path: str) -> None:
        """The file to `path`, its MD5 checked against the manifest's."""
        bucket = self.manifest.bucket
        digest = hashlib.md5(usedforsecurity=False)
        where = format_s3_uri(bucket, data.key)
        with _reading(bucket, data.key, f"{where}, listed in {self.manifest.uri}, does not exist"):
            body = self.client.get_object(Bucket=bucket, Key=data.key)["Body"]
            with open(path, "wb") as out:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
        if digest.hexdigest() != data.md5.lower():
            raise InventoryError(
                f"{where}: MD5 {digest.hexdigest()} differs from "
                f"the manifest's {data.md5}; none of its rows were recorded"
            )


def read_batches(
    path: str, manifest: Manifest, data: DataFile, skip: int, batch_rows: int
) -> Iterator[tuple[int, dict[str, list[Any]]]]:
    """(rows of the file read so far, {canonical column: values}) per batch, after the
    first `skip` rows. pyarrow's errors (a truncated file, bad gzip) become one line."""
    import pyarrow as pa

    where = format_s3_uri(manifest.bucket, data.key)
    try:
        read = 0
        for batch in _arrow_batches(path, manifest, where, batch_rows):
            if read + batch.num_rows <= skip:
                read += batch.num_rows
                continue
            if read < skip:
                batch = batch.slice(skip - read)
                read = skip
            read += batch.num_rows
            try:
                columns = {name: _values(batch.column(name)) for name in batch.schema.names}
            except UnicodeDecodeError:  # Parquet/ORC strings are not checked when written
                row = read - batch.num_rows + _first_bad_utf8(batch) + 1
                raise InventoryError(
                    f"{where}, row {row}: a value is not valid UTF-8; the report is damaged "
                    "(nothing from its batch on is recorded)"
                ) from None
            yield read, columns
    except (pa.ArrowException, OSError, EOFError) as error:
        raise InventoryError(
            f"{where} cannot be read as {manifest.file_format}: {error}".replace("\n", " ")
        ) from None


def _first_bad_utf8(batch: Any) -> int:
    """The index of the batch's first row holding a string that is not valid UTF-8."""
    import pyarrow as pa

    first: int = batch.num_rows
    for column in batch.columns:
        if pa.types.is_string(column.type):
            raw = column.view(pa.binary())
        elif pa.types.is_large_string(column.type):
            raw = column.view(pa.large_binary())
        else:
            continue
        for index, value in enumerate(raw.to_pylist()[:first]):
            try:
                if value is not None:
                    value.decode("utf-8")
            except UnicodeDecodeError:
                first = index
                break
    return first


def _values(column: Any) -> list[Any]:
    """A column as Python values. Timestamps become naive microsecond datetimes (arrow
    keeps them in UTC; `take_rows` marks them so): pyarrow builds aware ones ~5x slower,
    and ORC's nanoseconds have no Python form."""
    import pyarrow as pa

    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("us"), safe=False)
    return column.to_pylist()  # type: ignore[no-any-return]


def _arrow_batches(path: str, manifest: Manifest, where: str, batch_rows: int) -> Iterator[Any]:
    """pyarrow record batches of the columns read, renamed to their canonical names."""
    import pyarrow as pa

    if manifest.file_format == "CSV":
        import pyarrow.csv as pcsv

        names = list(manifest.csv_columns)
        wanted = [c for c in COLUMNS if c in names]
        reader = pcsv.open_csv(
            pa.input_stream(path, compression="gzip"),
            read_options=pcsv.ReadOptions(column_names=names, block_size=8 << 20),
            convert_options=pcsv.ConvertOptions(
                include_columns=wanted, column_types=dict.fromkeys(wanted, pa.string())
            ),
        )
        for batch in reader:
            yield from _split(batch, batch_rows)
        return
    if manifest.file_format == "Parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        actual = _chosen(parquet.schema_arrow.names, where)
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=list(actual)):
            yield _renamed(batch, actual)
        return
    import pyarrow.orc as orc

    orc_file = orc.ORCFile(path)
    actual = _chosen(orc_file.schema.names, where)
    for stripe in range(orc_file.nstripes):
        yield from _split(
            _renamed(orc_file.read_stripe(stripe, columns=list(actual)), actual), batch_rows
        )


def _chosen(names: list[str], where: str) -> dict[str, str]:
    """{file's column name: canonical name} for the columns read."""
    chosen = {name: canonical(name) for name in names if canonical(name) in COLUMNS}
    check_columns(chosen.values(), where)
    return chosen


def _renamed(batch: Any, actual: dict[str, str]) -> Any:
    return batch.rename_columns([actual[name] for name in batch.schema.names])


def _split(batch: Any, size: int) -> Iterator[Any]:
    for start in range(0, batch.num_rows, size):
        yield batch.slice(start, size)
