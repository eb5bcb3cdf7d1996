"""`tracker demo`: runs end to end on a real local SeaweedFS, measures the restart, and
leaves nothing behind (also when interrupted)."""

from __future__ import annotations

import os
import re
import struct
import sys
import zlib

import pytest

from tracker.demo import BATCH, Reporter, demo_image, png


def test_generated_pngs_are_valid():
    data = demo_image(3)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    offset, chunks = 8, {}
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks[kind] = body
        offset += 12 + length
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    assert (width, height) == (64, 48)
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    assert demo_image(3) != demo_image(4)
    assert png(1, 1, lambda x, y: (1, 2, 3)).endswith(b"IEND\xaeB`\x82")


def test_demo_runs_end_to_end_and_cleans_up(tmp_path):
    import subprocess

    env = dict(os.environ, TMPDIR=str(tmp_path), TRACKER_DB_URL="sqlite:///must/not/be/used")
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "demo", "--images", "120", "--page-size", "20"],
        capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "source: s3://tracker-demo/images/" in out
    assert "failed:     1" in out  # the object deleted after it was listed
    ours = re.search(r"this tracker .*: (\d+) LIST, (\d+) GET", out)
    seed = re.search(r"the seed's recipe .*: (\d+) LIST, (\d+) GET", out)
    assert ours and seed, out
    assert int(ours.group(1)) <= 1 and int(ours.group(2)) == 1
    assert int(seed.group(1)) >= 2
    assert "Local S3 server stopped" in out
    assert list(tmp_path.iterdir()) == []  # temp dir, S3 data and state DB removed
    assert not os.path.exists("must/not/be/used")


def test_demo_with_an_explicit_db_and_keep(tmp_path, sqlite_url):
    from tracker.demo import run_demo
    from tracker.store import Store

    work = tmp_path / "work"
    work.mkdir()
    result = run_demo(Reporter(), db_url=sqlite_url, images=60, page_size=20, keep=True,
                      workdir=work)  # fmt: skip
    assert result.restart["LIST"] <= 1
    assert result.seed_restart["LIST"] >= 2
    assert result.reclaimed >= BATCH
    assert result.kept_db
    assert list(work.iterdir()) == []  # only the user's DB remains, outside the workdir
    with Store.open(sqlite_url) as store:
        (source,) = store.sources()
        (dataset,) = store.datasets(source)  # the demo annotates one dataset
        counts = store.counts(dataset)
    assert source.bucket.startswith("tracker-demo-")
    assert counts.state("failed") == 1
    assert counts.state("served") == 0  # stopped cleanly: nothing left leased


def test_demo_cleans_up_when_interrupted(tmp_path, monkeypatch):
    from tracker import locals3
    from tracker.demo import run_demo

    started = []
    original = locals3.SeaweedFS.start

    def start(self):
        started.append(self)
        return original(self)

    monkeypatch.setattr(locals3.SeaweedFS, "start", start)

    class CtrlC(Reporter):
        def step(self, text):
            if text.startswith("Annotating"):
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_demo(CtrlC(), images=30, workdir=tmp_path)
    (server,) = started
    assert server.process is None  # stopped
    assert list(tmp_path.iterdir()) == []
