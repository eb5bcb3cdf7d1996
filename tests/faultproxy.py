"""A small HTTP proxy in front of a real S3 server: logs every request, injects faults.

It sits between the code under test (boto3, or a `tracker sync` subprocess) and SeaweedFS or
moto, so that tests can:

- count the LIST calls that reached the server, including those made by a process that was
  then killed, and tell which page each one returned (its first key);
- answer the next requests with `503 SlowDown` (throttling) or close the connection without
  an answer (a dropped connection), so that botocore's retries have to do their job;
- hold a LIST answer until released, so that a test can kill the client while a page is in
  flight: the server has answered, the client never commits;
- answer object GETs with an S3 error (AccessDenied, a KMS error) as a bucket policy or a
  key policy would;
- stop an SQS request (say DeleteMessage) before it reaches the server, until released,
  so that a test can kill the client between its commit and its delete;
- answer the start of a listing with a run of empty pages that say more follows (what S3
  sends for runs of delete markers in versioned buckets), then the server's real pages.

Requests are forwarded with their original headers (including `Host`), so signatures stay
valid; bodies are read by `Content-Length`, which is all boto3 sends to S3 here.
"""

from __future__ import annotations

import http.client
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)

#: Continuation tokens the proxy makes up for its empty pages: `EMPTY_TOKEN` + page number.
EMPTY_TOKEN = "proxy-empty-"


@dataclass
class Request:
    """One request that reached the proxy, and what became of it."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int | None = None  # None: dropped by a fault, or the upstream failed
    fault: str | None = None
    first_key: str | None = None
    key_count: int | None = None
    done: bool = False
    #: The `X-Amz-Target` header (the action of a JSON-protocol request such as SQS's).
    target: str | None = None

    @property
    def is_list(self) -> bool:
        return self.method == "GET" and self.query.get("list-type") == ["2"]


@dataclass
class Fault:
    kind: str  # "slowdown" | "drop" | "hold" | "block" | "error"
    remaining: int
    applies: Callable[[Request], bool]
    release: threading.Event | None = None
    held: threading.Event | None = None
    status: int = 0
    body: bytes = b""


class FaultProxy:
    """`with FaultProxy(upstream_url) as proxy:` ... `proxy.endpoint_url` is the S3 URL."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.empty_run = 0
        self.lock = threading.Lock()
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    # -- faults ---------------------------------------------------------------------------

    def slow_down(self, count: int, *, lists_only: bool = True) -> None:
        """Answer the next `count` (LIST) requests with 503 SlowDown."""
        self._add(Fault("slowdown", count, _selector(lists_only)))

    def drop(self, count: int, *, lists_only: bool = True) -> None:
        """Close the connection, unanswered, on the next `count` (LIST) requests."""
        self._add(Fault("drop", count, _selector(lists_only)))

    def fail_gets(self, count: int, code: str, status: int = 403) -> None:
        """Answer the next `count` object GETs with S3 error `code` (e.g. AccessDenied)."""
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{code} (fault proxy)</Message></Error>"
        ).encode()
        is_get = lambda r: r.method == "GET" and not r.is_list  # noqa: E731
        self._add(Fault("error", count, is_get, status=status, body=body))

    def hold_list(self, after: int = 0) -> tuple[threading.Event, threading.Event]:
        """Hold the answer to the LIST request after the next `after` ones.

        Returns (held, release): `held` is set once the server has answered that request
        and the proxy is sitting on the answer; setting `release` lets it go.
        """
        seen = [0]

        def applies(request: Request) -> bool:
            if not request.is_list:
                return False
            seen[0] += 1
            return seen[0] > after

        held, release = threading.Event(), threading.Event()
        self._add(Fault("hold", 1, applies, release=release, held=held))
        return held, release

    def block_action(self, action: str) -> tuple[threading.Event, threading.Event]:
        """Stop the next request for the JSON-protocol `action` (e.g. `DeleteMessage`)
        before it reaches the server. Returns (held, release): `held` is set once the
        request is waiting; on `release` its connection is closed, unanswered and unsent."""
        applies = lambda r: (r.target or "").endswith(f".{action}")  # noqa: E731
        held, release = threading.Event(), threading.Event()
        self._add(Fault("block", 1, applies, release=release, held=held))
        return held, release

    def empty_pages(self, count: int) -> None:
        """Answer a listing's first LIST (no token, no StartAfter) with an empty page that
        is truncated, and each of its tokens with the next, `count` pages in all; the last
        token is answered with the server's own first page."""
        self.empty_run = count

    def _empty_page(self, request: Request) -> tuple[int | None, str | None]:
        """(number of the empty page to send, None) or (None, upstream path to send)."""
        if not self.empty_run or not request.is_list or "start-after" in request.query:
            return None, None
        token = request.query.get("continuation-token", [None])[0]
        if token is None:
            return 1, None
        if not token.startswith(EMPTY_TOKEN):
            return None, None
        sent = int(token[len(EMPTY_TOKEN) :])
        if sent < self.empty_run:
            return sent + 1, None
        query = {k: v for k, v in request.query.items() if k != "continuation-token"}
        return None, f"{request.path}?{urlencode(query, doseq=True)}"

    def _add(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def _take_fault(self, request: Request) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.remaining > 0 and fault.applies(request):
                    fault.remaining -= 1
                    return fault
        return None

    # -- the log --------------------------------------------------------------------------

    def lists(self) -> list[Request]:
        """LIST requests that the server answered (held or not, whatever the client did)."""
        with self.lock:
            return [r for r in self.requests if r.is_list and r.status is not None]

    def list_count(self) -> int:
        return len(self.lists())

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every request received so far has been answered or failed: a killed
        client's last request is still forwarded, and must count for the run it came from."""
        import time

        time.sleep(0.1)  # let bytes already sent by a killed client reach a handler
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(r.done for r in self.requests):
                    return
            time.sleep(0.02)
        raise TimeoutError("the proxy still has requests in flight")

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        with self.lock:
            for fault in self.faults:
                if fault.release is not None:
                    fault.release.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                split = urlsplit(self.path)
                request = Request(
                    self.command,
                    split.path,
                    parse_qs(split.query),
                    target=self.headers.get("X-Amz-Target"),
                )
                with proxy.lock:
                    proxy.requests.append(request)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy._take_fault(request)
                request.fault = fault.kind if fault else None
                try:
                    self._handle(request, fault, body)
                finally:
                    request.done = True

            def _handle(self, request: Request, fault: Fault | None, body: bytes | None) -> None:
                if fault is not None and fault.kind == "block":
                    assert fault.held is not None and fault.release is not None
                    fault.held.set()
                    fault.release.wait(120)
                if fault is not None and fault.kind in {"drop", "block"}:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault is not None and fault.kind == "error":
                    request.status = fault.status
                    self._reply(fault.status, {"Content-Type": "application/xml"}, fault.body)
                    return
                if fault is not None and fault.kind == "slowdown":
                    request.status = 503
                    self._reply(503, {"Content-Type": "application/xml"}, SLOW_DOWN)
                    return
                empty, path = proxy._empty_page(request)
                if empty is not None:
                    request.status, request.key_count = 200, 0
                    self._reply(200, {"Content-Type": "application/xml"}, _empty_page(empty))
                    return
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    upstream.putrequest(self.command, path or self.path, skip_host=True)
                    upstream.putheader("Host", self.headers.get("Host", ""))
                    for name, value in headers.items():
                        upstream.putheader(name, value)
                    upstream.endheaders(body)
                    response = upstream.getresponse()
                    data = response.read()
                    reply_headers = {
                        k: v
                        for k, v in response.getheaders()
                        if k.lower() not in {"transfer-encoding", "connection", "content-length"}
                    }
                finally:
                    upstream.close()
                request.status = response.status
                if request.is_list and response.status == 200:
                    request.first_key, request.key_count = _first_key(data)
                if fault is not None and fault.kind == "hold":
                    assert fault.held is not None and fault.release is not None
                    fault.held.set()
                    fault.release.wait(120)
                try:
                    self._reply(response.status, reply_headers, data)
                except OSError:  # the client is gone (killed): the page was still read
                    self.close_connection = True

            def _reply(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A killed client resets its connection: expected here, not worth a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def _selector(lists_only: bool) -> Callable[[Request], bool]:
    return (lambda r: r.is_list) if lists_only else (lambda r: True)


def _empty_page(number: int) -> bytes:
    """A ListObjectsV2 answer with no Contents that says more follows."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        "<KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
        f"<NextContinuationToken>{EMPTY_TOKEN}{number}</NextContinuationToken>"
        "</ListBucketResult>"
    ).encode()


def _first_key(data: bytes) -> tuple[str | None, int]:
    """The first key of a ListObjectsV2 answer (URL-decoded if the client asked for that)."""
    root = ET.fromstring(data)
    ns = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""
    keys = [c.findtext(f"{ns}Key") or "" for c in root.findall(f"{ns}Contents")]
    encoded = (root.findtext(f"{ns}EncodingType") or "").lower() == "url"
    if encoded:
        keys = [unquote(k) for k in keys]
    return (keys[0] if keys else None), len(keys)


# -- filling a bucket fast ----------------------------------------------------------------


def put_objects(endpoint_url: str, bucket: str, keys: list[str], body: bytes = b"x") -> None:
    """PUT plain ASCII keys with unsigned requests on 16 threads: ~10x faster than boto3.

    SeaweedFS (no identities configured) and moto (auth off) accept unsigned requests. Odd
    keys go through boto3 instead, so that the encoding under test is boto3's own.
    """
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import quote

    import urllib3

    pool = urllib3.PoolManager(maxsize=16)

    def put(key: str) -> None:
        url = f"{endpoint_url}/{bucket}/{quote(key, safe='/')}"
        for _attempt in range(5):
            response = pool.request("PUT", url, body=body, retries=False)
            if response.status == 200:
                return
        raise RuntimeError(f"PUT {key!r}: HTTP {response.status} {response.data[:200]!r}")

    with ThreadPoolExecutor(16) as executor:
        list(executor.map(put, keys))
