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
        self._started = False

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        """Start on `self.port`; on the first start, on another free port should that one
        be taken meanwhile (a parallel test worker picks ports from the same pool)."""
        for _ in range(5):
            if self._launch():
                self._started = True
                return self
            if self._started:  # a restart must keep the port: its clients hold the URL
                break
            self.port = free_port()
        raise RuntimeError(f"moto_server did not start on port {self.port}; see {self.log_path}")

    def _launch(self) -> bool:
        """Run moto_server and wait until it listens; False when it exits first.

        Readiness is moto's own "Running on" line for this port, not only an answer: on a
        port that another worker's server took between `free_port()` and the bind, that
        other server answers, and this one exits with "Address already in use".
        """
        moto = Path(sys.executable).parent / "moto_server"
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(
                [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.process = process
        listening = f"Running on {self.endpoint_url}".encode()
        client = self.client(max_attempts=1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.process = None
                return False
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                bound = listening in log.read()
            try:
                if bound:
                    client.list_buckets()
                    return True
            except Exception:
                pass
            time.sleep(0.1)
        self.stop()
        return False

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
