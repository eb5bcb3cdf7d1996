"""Real S3 server processes for the tests: moto's server (fault injection) beside SeaweedFS.

SeaweedFS (`tracker.locals3.SeaweedFS`) is the listing suite's server. moto's server starts
in about a second, keeps AWS's key rules, and forgets its continuation tokens when it is
restarted, which is how the tests kill a saved token.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tracker.locals3 import free_port, loopback_client


class MotoServer:
    """`moto_server` on a loopback port that stays the same across restarts."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"moto-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        moto = Path(sys.executable).parent / "moto_server"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        client = self.client(max_attempts=1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                client.list_buckets()
                return self
            except Exception:
                time.sleep(0.1)
        raise RuntimeError(f"moto_server did not start; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port: every bucket, object and token is gone."""
        self.stop()
        self.start()

    def client(self, *, max_attempts: int = 3) -> Any:
        return loopback_client(self.endpoint_url, max_attempts=max_attempts)


def temporary_bucket(seaweedfs: Any) -> Iterator[str]:
    """A new bucket on the session's SeaweedFS, emptied and deleted afterwards.

    SeaweedFS gives each bucket its own volumes and runs out after a few dozen buckets;
    deleting them keeps a long run going.
    """
    name = f"b-{uuid.uuid4().hex[:16]}"
    client = seaweedfs.client()
    client.create_bucket(Bucket=name)
    yield name
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                client.delete_objects(Bucket=name, Delete={"Objects": objects, "Quiet": True})
        client.delete_bucket(Bucket=name)
    except Exception:  # cleanup only: a leftover bucket costs volumes, not correctness
        pass
