"""Peak memory of the streaming process with 0 and with many keys already annotated, for our
stream (state DB) and for the seed's algorithm (the dataset's keys in a list)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import func, insert, literal, select, update

from bench.report import Table, median
from bench.seed import SeedDataset
from tracker.models import Answer, ItemState, datasets, items, objects
from tracker.records import ListedObject
from tracker.store import Store

#: The dataset `bench.memory_probe` streams (its annotated keys are this one's).
DATASET = "bench-memory"

STREAMED = 1000


def _state_db(path: Path, bucket: str, annotated: int) -> None:
    """A state DB that already holds `annotated` answered keys (sorting before the bucket's
    real `images/` keys, which are still to be listed)."""
    url = f"sqlite:///{path}"
    with Store.open(url) as store:
        source = store.source(bucket, "", create=True)
        for start in range(0, annotated, 1000):
            page = [
                ListedObject(f"done/{i:09d}.png", 100)
                for i in range(start, min(start + 1000, annotated))
            ]
            store.record_page(source, page, next_token=None, last_key=None, exhausted=False)
        dataset = store.dataset(source, DATASET, create=True)
        with store.engine.begin() as conn:
            # Every listed key annotated for the probe's dataset, its frontier past them.
            listed = select(
                literal(dataset.id),
                objects.c.id,
                literal(ItemState.ANNOTATED.value),
                literal(Answer.ACCEPT.value),
                literal(1),
            ).where(objects.c.source_id == source.id)
            conn.execute(
                insert(items).from_select(
                    ["dataset_id", "object_id", "state", "answer", "answer_count"], listed
                )
            )
            conn.execute(
                update(datasets)
                .where(datasets.c.id == dataset.id)
                .values(
                    frontier=select(func.coalesce(func.max(objects.c.id), 0))
                    .where(objects.c.source_id == source.id)
                    .scalar_subquery()
                )
            )


def _seed_db(path: Path, annotated: int) -> None:
    dataset = SeedDataset(path)
    for start in range(0, annotated, 10_000):
        dataset.add(f"done/{i:09d}.png" for i in range(start, min(start + 10_000, annotated)))


def _peak_kib(kind: str, bucket: str, db: str, endpoint: str) -> int:
    output = subprocess.run(
        [sys.executable, "-m", "bench.memory_probe", kind, bucket, db, str(STREAMED), endpoint],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ),
    ).stdout
    return int(output.strip().splitlines()[-1])


def run(endpoint: str, bucket: str, annotated: int, repeats: int) -> Table:
    table = Table(
        f"Memory: peak RSS streaming {STREAMED:,} new keys (median of {repeats})",
        ["process", "0 annotated", f"{annotated:,} annotated", "growth", "target"],
    )
    with tempfile.TemporaryDirectory(prefix="tracker-bench-mem-") as tmp:
        results = {}
        for kind in ("ours", "seed"):
            row = []
            for done in (0, annotated):
                template = Path(tmp) / f"{kind}-{done}.db"
                if kind == "ours":
                    _state_db(template, bucket, done)
                else:
                    _seed_db(template, done)
                peaks = []
                for attempt in range(repeats):
                    # Our stream writes to its state DB: each run starts from a fresh copy.
                    path = Path(tmp) / f"{kind}-{done}-{attempt}.db"
                    shutil.copy(template, path)
                    db = f"sqlite:///{path}" if kind == "ours" else str(path)
                    peaks.append(_peak_kib(kind, bucket, db, endpoint))
                row.append(median(peaks))
            results[kind] = row
        for kind, label, target in (
            ("ours", "our stream (state DB)", "< 20%"),
            ("seed", "seed algorithm (keys in a list)", ""),
        ):
            small, large = results[kind]
            table.add(
                label,
                f"{small / 1024:,.0f} MiB",
                f"{large / 1024:,.0f} MiB",
                f"{(large / small - 1) * 100:+.0f}%",
                target,
            )
    return table
