"""Run in a child process by bench/memory.py: stream `count` new tasks, print peak RSS (KiB).

`python -m bench.memory_probe ours|seed BUCKET DB COUNT ENDPOINT`
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

from tracker.s3 import make_client


def main() -> None:
    kind, bucket, db, count, endpoint = sys.argv[1:6]
    client = make_client(endpoint)
    served = 0
    if kind == "ours":
        from tracker.stream import open_stream

        stream = open_stream(bucket, dataset="bench-memory", state_db=db, client=client)
        batch = []
        for task in stream:
            batch.append(task)
            served += 1
            if len(batch) == 10:
                stream.update([dict(t, answer="accept") for t in stream.before_db(batch)])
                batch = []
            if served == int(count):
                break
        stream.close()
    else:
        from bench.seed import SeedDataset, seed_stream

        for _task in seed_stream(client, bucket, "", SeedDataset(Path(db))):
            served += 1
            if served == int(count):
                break
    assert served == int(count), served
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


if __name__ == "__main__":
    main()
