"""The recipe's stream when S3 misbehaves, and what it leaves on disk.

- 503 SlowDown and dropped connections on the stream's GETs (a fault proxy in front of
  SeaweedFS): retried, every key served, none marked failed; past the retries, one-line
  `S3Error` and the batch goes back to pending (not failed), nothing lost.
- Presigned URLs on a SeaweedFS that checks signatures: valid for the configured time,
  refused after it.
- Inline mode in a real process: nothing written to TMPDIR, HOME or the working directory,
  and no image bytes, base64 or data: URI in the state DB.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.cli_support import states
from tests.faultproxy import FaultProxy
from tests.images_fixtures import image_bytes, put_images
from tracker.errors import S3Error
from tracker.locals3 import ACCESS_KEY, SECRET_KEY, SeaweedFS
from tracker.models import ItemState
from tracker.s3 import make_client
from tracker.stream import open_stream

ROOT = Path(__file__).resolve().parents[2]
DATASET = "ds"


# -- 503 and dropped connections on GET ---------------------------------------------------


def test_get_throttled_or_dropped_is_retried_and_every_key_served(seaweedfs, bucket, sqlite_url):
    keys = put_images(seaweedfs.client(), bucket, [f"g{i}.png" for i in range(6)])
    with FaultProxy(seaweedfs.endpoint_url) as proxy:
        client = make_client(proxy.endpoint_url)
        with open_stream(
            bucket, dataset=DATASET, state_db=sqlite_url, owner="o", client=client
        ) as stream:
            tasks = iter(stream)
            first = next(tasks)  # the page is listed; from now on the GETs get the faults
            proxy.slow_down(2, lists_only=False)
            proxy.drop(2, lists_only=False)
            rest = [next(tasks) for _ in keys[1:]]
            stream.record([{**t, "answer": "accept"} for t in [first, *rest]])
            assert next(tasks, None) is None
    faults = [r.fault for r in proxy.requests if r.fault]
    assert sorted(faults) == ["drop", "drop", "slowdown", "slowdown"]
    assert all(t["image"].startswith("data:image/png;base64,") for t in [first, *rest])
    assert sorted(t["meta"]["key"] for t in [first, *rest]) == keys
    assert set(states(sqlite_url, bucket).values()) == {ItemState.ANNOTATED}


def test_get_failing_past_the_retries_is_one_error_and_the_batch_goes_back(
    seaweedfs, bucket, sqlite_url
):
    keys = put_images(seaweedfs.client(), bucket, [f"f{i}.png" for i in range(4)])
    with FaultProxy(seaweedfs.endpoint_url) as proxy:
        client = make_client(proxy.endpoint_url, max_attempts=2)
        with open_stream(
            bucket, dataset=DATASET, state_db=sqlite_url, owner="o", client=client
        ) as stream:
            tasks = iter(stream)
            next(tasks)
            proxy.slow_down(100, lists_only=False)
            with pytest.raises(S3Error) as error:
                next(tasks)
    message = str(error.value)
    assert "SlowDown" in message and "\n" not in message
    after = states(sqlite_url, bucket)
    assert ItemState.FAILED not in after.values()  # S3 was unwell, not the objects
    assert sorted(k for k, s in after.items() if s == ItemState.PENDING) == keys[1:]
    # S3 recovers: a restarted stream serves every key once (its own first one at once)
    with open_stream(
        bucket, dataset=DATASET, state_db=sqlite_url, owner="o", client=seaweedfs.client()
    ) as again:
        served = []
        for task in again:
            served.append(task["meta"]["key"])
            again.record([{**task, "answer": "accept"}])
    assert sorted(served) == keys


# -- presigned URLs expire ----------------------------------------------------------------


class AuthSeaweedFS(SeaweedFS):
    """SeaweedFS with one identity configured: it then checks signatures and expiry."""

    def command(self) -> list[str]:
        config = self.data_dir / "s3.json"
        identity = {
            "name": "tester",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        return [*super().command(), f"-s3.config={config}"]


def test_presigned_urls_expire_as_configured_on_a_checking_server(tmp_path, s3_env, sqlite_url):
    (tmp_path / "weed").mkdir()
    with AuthSeaweedFS(tmp_path / "weed") as server:
        client = server.client()
        bucket = f"p-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        put_images(client, bucket, ["p.png"])
        with open_stream(
            bucket, dataset=DATASET, state_db=sqlite_url, owner="o",
            client=make_client(server.endpoint_url), presign="2s",
        ) as stream:  # fmt: skip
            url = next(iter(stream))["image"]
        assert "X-Amz-Expires=2&" in url or url.endswith("X-Amz-Expires=2")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == image_bytes("p.png")
        tampered = url.replace("X-Amz-Expires=2", "X-Amz-Expires=3600")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(tampered, timeout=10)
        assert refused.value.code == 403  # the server checks the signature...
        time.sleep(3)
        with pytest.raises(urllib.error.HTTPError) as expired:
            urllib.request.urlopen(url, timeout=10)
        assert expired.value.code == 403  # ...and the expiry


# -- inline mode writes no image bytes ----------------------------------------------------

STREAM_IN_A_PROCESS = """
import sys
from tracker.stream import open_stream
bucket, db, endpoint = sys.argv[1:4]
with open_stream(
    bucket, dataset="ds", state_db=db, owner="inline", endpoint_url=endpoint
) as stream:
    for task in stream:
        assert task["image"].startswith("data:image/")
        stream.update([{**task, "answer": "accept"}])
        print(task["meta"]["key"], flush=True)
"""


def test_inline_mode_in_a_real_process_writes_nothing_but_the_state_db(seaweedfs, bucket, tmp_path):
    keys = put_images(seaweedfs.client(), bucket, [f"i{i:02d}.png" for i in range(15)])
    scratch = {name: tmp_path / name for name in ("tmp", "home", "cwd")}
    for path in scratch.values():
        path.mkdir()
    db = tmp_path / "db" / "state.db"
    env = dict(
        os.environ, TMPDIR=str(scratch["tmp"]), HOME=str(scratch["home"]),
        PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1",
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", STREAM_IN_A_PROCESS, bucket, f"sqlite:///{db}",
         seaweedfs.endpoint_url],
        cwd=scratch["cwd"], env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == keys
    for name, path in scratch.items():
        assert list(path.rglob("*")) == [], f"something was written to {name}"
    blobs = b"".join(p.read_bytes() for p in db.parent.iterdir())
    assert b"data:image" not in blobs
    for key in keys:
        data = image_bytes(key)
        assert data not in blobs and b"payload:" + key.encode() not in blobs
        for shift in range(3):  # base64 of the payload, at each alignment
            encoded = base64.b64encode(data[shift:])[4:40]
            assert encoded not in blobs
