"""Resume cost: S3 requests and wall time from a restart to the first new task, for the
seed's algorithm and for our recipe's stream on its state DB, at several amounts of done
work K, on the same bucket in the same run."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.report import Table, median, ratio, timed
from bench.s3counter import RequestCounter
from bench.seed import SeedDataset, seed_stream
from tracker.lister import MAX_PAGE_SIZE, Lister
from tracker.models import Answer
from tracker.records import AnswerRecord
from tracker.store import Store
from tracker.stream import open_stream

DATASET = "bench-images"


def prepare_state_db(path: Path, client: Any, bucket: str, keys: list[str], done: int) -> None:
    """The state DB a recipe leaves after annotating the first `done` keys: it listed just
    the pages those keys came from (it lists lazily), and recorded their answers."""
    with Store.open(f"sqlite:///{path}") as store:
        source = store.source(bucket, "", create=True)
        pages = -(-done // MAX_PAGE_SIZE)
        if pages:
            Lister(store, source, client).run(max_pages=pages)
        dataset = store.dataset(source, DATASET, create=True)
        for start in range(0, done, 1000):
            store.record_answers(
                dataset,
                [
                    AnswerRecord(k, Answer.ACCEPT, DATASET)
                    for k in keys[start : min(start + 1000, done)]
                ],
            )


def ours_first_task(client: Any, bucket: str, db_path: Path) -> dict[str, Any]:
    stream = open_stream(bucket, dataset=DATASET, state_db=f"sqlite:///{db_path}", client=client)
    try:
        return next(iter(stream))
    finally:
        stream.close()


def seed_first_task(client: Any, bucket: str, dataset: SeedDataset) -> dict[str, Any]:
    return next(seed_stream(client, bucket, "", dataset))


def run(client: Any, bucket: str, keys: list[str], repeats: int) -> Table:
    counter = RequestCounter(client)
    n = len(keys)
    table = Table(
        f"Resume cost: restart to first new task ({n:,} objects; median of {repeats})",
        [
            "K annotated",
            "seed LIST",
            "seed GET",
            "seed time",
            "ours LIST",
            "ours GET",
            "ours time",
            "time ratio",
        ],
    )
    table.notes.append(
        "seed: load the dataset's keys into a list, paginate from the first page, skip known "
        "keys, GET the first new one (bench/seed.py). ours: open the state DB and the stream, "
        "take the first task (bench/resume.py). Targets: ours LIST <= 1 for every K; time "
        "ratio >= 50x at K = N-100."
    )
    with tempfile.TemporaryDirectory(prefix="tracker-bench-resume-") as tmp:
        for done in (0, n // 4, n // 2, n - 100):
            template = Path(tmp) / f"state-{done}.db"
            prepare_state_db(template, client, bucket, keys, done)
            dataset = SeedDataset(Path(tmp) / f"seed-{done}.db")
            dataset.add(keys[:done])
            seed_times, ours_times = [], []
            for attempt in range(repeats):
                counter.reset()
                seconds, task = timed(lambda d=dataset: seed_first_task(client, bucket, d))
                assert task["meta"]["key"] == keys[done], task["meta"]
                seed_times.append(seconds)
                seed_calls = (counter.lists, counter.gets)
                db_path = Path(tmp) / f"restart-{done}-{attempt}.db"
                shutil.copy(template, db_path)
                counter.reset()
                seconds, task = timed(lambda p=db_path: ours_first_task(client, bucket, p))
                assert task["meta"]["key"] == keys[done], task["meta"]
                ours_times.append(seconds)
                ours_calls = (counter.lists, counter.gets)
            seed_t, ours_t = median(seed_times), median(ours_times)
            table.add(
                f"{done:,}",
                seed_calls[0],
                seed_calls[1],
                f"{seed_t * 1000:,.0f} ms",
                ours_calls[0],
                ours_calls[1],
                f"{ours_t * 1000:,.0f} ms",
                ratio(seed_t, ours_t),
            )
    return table
