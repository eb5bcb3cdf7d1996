"""What a complete listing pass costs the state DB (issue 14): recording N known keys again
under a pass id, and the one UPDATE that marks the unseen ones deleted.

    python -m bench.passes sqlite:////tmp/passes.db 100000
    python -m bench.passes postgresql+psycopg://postgres@127.0.0.1/bench 100000

Use an empty DB: the source `bench-passes` is created there.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

from tracker.records import ListedObject
from tracker.store import Store

PAGE = 1000


def _pages(count: int, tag: str) -> Iterator[list[ListedObject]]:
    for start in range(0, count, PAGE):
        stop = min(count, start + PAGE)
        yield [ListedObject(f"k/{i:08d}.jpg", 100, f"e{i}{tag}") for i in range(start, stop)]


def main(url: str, count: int) -> None:
    with Store.open(url) as store:
        source = store.source("bench-passes", create=True)

        def timed(label: str, tag: str, *, complete: bool) -> None:
            started = time.perf_counter()
            pass_id = store.begin_pass(source) if complete else None
            for page in _pages(count, tag):
                store.record_page(
                    source, page, next_token=None, last_key=page[-1].key, exhausted=False
                )
            if pass_id is not None:
                store.finish_pass(source, pass_id)
            print(f"{label}: {time.perf_counter() - started:.2f} s")

        timed(f"first listing of {count:,} keys", "", complete=False)
        timed("listed again, unchanged, no pass", "", complete=False)
        timed("complete pass, unchanged keys", "", complete=True)
        timed("complete pass, every ETag changed", "x", complete=True)
        started = time.perf_counter()
        marked = store.finish_pass(source, store.begin_pass(source))
        print(f"marking {marked:,} keys deleted: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
