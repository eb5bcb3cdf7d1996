"""Run every benchmark and print one markdown report: `python -m bench [--quick]`.

Each figure is a median of several runs, next to a baseline measured in the same run
(the seed's algorithm, raw sqlite3, a bare boto3 loop), so that ratios hold on a noisy
machine even when absolute numbers move.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    annotators,
    bulk,
    datasets,
    dbcopy,
    large,
    listing,
    memory,
    order,
    parallel,
    pgvacuum,
    resume,
    rowsize,
    scale,
    startup,
    status,
)
from bench.report import machine
from tracker.locals3 import ACCESS_KEY, SECRET_KEY, SeaweedFS

PG_URL = os.environ.get("TRACKER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

#: A valid 1x1 PNG: every benchmark object is a real image the recipe can serve.
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8ffff3f0005fe02fea7d6a4e0"
    "0000000049454e44ae426082"
)


def fill_bucket(client, bucket: str, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    client.create_bucket(Bucket=bucket)
    keys = [f"images/{i:06d}.png" for i in range(count)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=PNG_1X1), keys))
    return keys


#: The benchmarks, in the report's order (`--only` picks some).
SECTIONS = (
    "resume",
    "memory",
    "listing",
    "bulk",
    "parallel",
    "scale",
    "datasets",
    "order",
    "annotators",
    "large",
    "rowsize",
    "copy",
    "status",
    "startup",
    "pgvacuum",
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes: a smoke run of every benchmark in a few minutes",
    )
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL figures")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        action="append",
        help="run only this benchmark (repeatable) [default: all]",
    )
    parser.add_argument(
        "--scale",
        metavar="SIZE",
        help="run the `large` benchmark at SIZE keys (e.g. 10m, 1m, 200k): record, inventory "
        "ingest, claim + answer, status, bytes per key, each beside its floor; alone unless "
        "--only names others [default with --only large: 1m, quick 200k]",
    )
    args = parser.parse_args()
    if args.scale:
        try:
            large_keys = large.parse_size(args.scale)
        except ValueError as error:
            parser.error(str(error))
        wanted = set(args.only or ()) | {"large"}
    else:
        large_keys = 200_000 if args.quick else 1_000_000
        # The large benchmark runs when asked for: its full size takes a while.
        wanted = set(args.only or [s for s in SECTIONS if s != "large"])

    objects = 5_000 if args.quick else 20_000
    store_keys = 100_000 if args.quick else 1_000_000
    repeats = 3
    os.environ.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION="us-east-1",
    )
    started = time.perf_counter()
    sections = [
        "## Benchmark report",
        "",
        f"- run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, mode: {'quick' if args.quick else 'full'}",
        f"- machine: {machine()}",
        "",
    ]
    print("\n".join(sections), flush=True)

    def emit(text: str) -> None:
        sections.append(text)
        print(text, flush=True)

    pg = None if args.no_postgres else PG_URL
    with SeaweedFS() as server:
        client = server.client()
        if wanted & {"resume", "memory", "listing"}:
            print(f"filling a bucket with {objects:,} objects...", file=sys.stderr, flush=True)
            keys = fill_bucket(client, "bench", objects)
        if "resume" in wanted:
            emit(resume.run(client, "bench", keys, repeats).markdown())
        if "memory" in wanted:
            emit(memory.run(server.endpoint_url, "bench", store_keys, repeats).markdown())
        if "listing" in wanted:
            emit(listing.run(client, "bench", objects, repeats).markdown())
        if "bulk" in wanted:
            # Recording pages (PostgreSQL row by row vs set-based), S3 Inventory ingestion.
            record_keys = 50_000 if args.quick else 500_000
            inventory_keys = 250_000 if args.quick else 2_000_000
            print(f"bulk: {inventory_keys:,} inventory keys...", file=sys.stderr, flush=True)
            for table in bulk.run(client, record_keys, inventory_keys, pg):
                emit(table.markdown())
        if "large" in wanted:
            for table in large.run(client, large_keys, pg):
                emit(table.markdown())
    if "parallel" in wanted:
        # Its own SeaweedFS: the bucket is filled with unsigned PUTs (see bench/parallel.py).
        # The target is measured on >= 50,000 keys per layout: the full mode.
        parallel_keys = 10_000 if args.quick else 100_000
        print(
            f"parallel listing: {parallel_keys:,} keys per layout...", file=sys.stderr, flush=True
        )
        delays = (0.1,) if args.quick else (0.1, 0.3)
        for table in parallel.run(parallel_keys, 1 if args.quick else repeats, delays):
            emit(table.markdown())
    if "scale" in wanted:
        emit(scale.run(store_keys, repeats, pg).markdown())
    if "datasets" in wanted:
        dataset_sizes = [100_000] if args.quick else [1_000_000, 10_000_000]
        emit(datasets.run(dataset_sizes, pg).markdown())
    if "order" in wanted:
        emit(order.run(store_keys, pg).markdown())
    if "annotators" in wanted:
        annotator_sizes = [100_000] if args.quick else [1_000_000, 10_000_000]
        emit(annotators.run(annotator_sizes, pg).markdown())
    if "rowsize" in wanted:
        # Bytes per key by table and index, beside the keys' own bytes.
        emit(rowsize.run(store_keys, pg).markdown())
    if "copy" in wanted:
        # `tracker db copy` both ways (issue 12, part 8).
        copy_keys = 100_000 if args.quick else 1_000_000
        print(f"db copy: {copy_keys:,} keys both ways...", file=sys.stderr, flush=True)
        emit(dbcopy.run(copy_keys, pg).markdown())
    if "status" in wanted:
        # Counters vs COUNT(*): TRACKER_BENCH_STATUS_KEYS (e.g. 10000000) for another size.
        status_sizes = [100_000] if args.quick else [1_000_000]
        extra = os.environ.get("TRACKER_BENCH_STATUS_KEYS")
        if extra:
            status_sizes = [int(n) for n in extra.split(",")]
        emit(status.run(status_sizes, pg).markdown())
    if "startup" in wanted:
        emit(startup.run(100_000 if args.quick else 1_000_000).markdown())
    if "pgvacuum" in wanted:
        # Claim + answer on PostgreSQL never analyzed nor vacuumed, and vacuumed as it goes.
        vacuum_keys = 200_000 if args.quick else 2_000_000
        print(f"pgvacuum: {vacuum_keys:,} keys...", file=sys.stderr, flush=True)
        for table in pgvacuum.run(vacuum_keys, pg):
            emit(table.markdown())
    emit(f"_total benchmark time: {time.perf_counter() - started:.0f} s_\n")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("\n".join(sections))


if __name__ == "__main__":
    main()
