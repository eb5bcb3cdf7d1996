"""A loopback HTTP proxy that adds a fixed delay to every LIST, like a real S3 round trip.

`python -m bench.latency UPSTREAM_URL DELAY_MS` prints its port on stdout, then serves
until killed. It runs in a process of its own, so that its work does not share the
benchmarked process's interpreter lock. Headers go through unchanged (signatures stay
valid); each handler thread keeps one upstream connection.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


def serve(upstream_url: str, delay_s: float) -> None:
    parts = urlsplit(upstream_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    local = threading.local()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if self.command == "GET" and "list-type=2" in self.path:
                time.sleep(delay_s)
            for attempt in range(2):
                conn = getattr(local, "conn", None)
                if conn is None:
                    conn = local.conn = http.client.HTTPConnection(host, port, timeout=120)
                try:
                    conn.putrequest(self.command, self.path, skip_host=True)
                    for name, value in self.headers.items():
                        conn.putheader(name, value)
                    conn.endheaders(body)
                    response = conn.getresponse()
                    data = response.read()
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    local.conn = None
                    if attempt:
                        raise
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in {"transfer-encoding", "connection", "content-length"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


class LatencyProxy:
    """`with LatencyProxy(url, 0.1) as proxy:` ... `proxy.endpoint_url`."""

    def __init__(self, upstream_url: str, delay_s: float) -> None:
        self.upstream_url = upstream_url
        self.delay_s = delay_s
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LatencyProxy:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.latency", self.upstream_url, str(self.delay_s * 1000)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        return self

    def __exit__(self, *_: Any) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    serve(sys.argv[1], float(sys.argv[2]) / 1000)
