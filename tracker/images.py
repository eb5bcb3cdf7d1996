"""Turning an S3 object into what Prodigy's `image` field takes.

Inline mode reads the object and returns a `data:` URI with its real MIME type (sniffed
from the first bytes, else the object's image Content-Type). Presign mode reads only the
first 64 bytes (to know the object exists and is an image) and returns a presigned GET URL;
the browser then fetches the image from S3 itself. Nothing is written to disk in either.

An object that vanished, is not an image, or is archived raises `ImageUnavailable` with a
one-line reason: the stream marks that key `failed` and goes on. Anything else raises
`S3Error`, which stops the stream (its batch goes back to pending): S3 unreachable or
throttled past the retries, and also AccessDenied and KMS errors on GET. Those are almost
always about the reader's permissions (no s3:GetObject on the prefix, no kms:Decrypt on the
bucket's key), not about one object; marking them failed one by one would fail every key.
The rare object denied on its own (an ACL, another account's object) stops the stream too,
with its key in the line.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tracker.errors import S3Error, UsageError
from tracker.s3 import describe, error_code
from tracker.s3uri import format_s3_uri

#: SigV4 presigned URLs live at most 7 days.
MAX_PRESIGN = timedelta(days=7)

#: Objects larger than this are not inlined (they would sit base64-encoded in Prodigy's
#: queue and in the browser); such a key fails with a hint to use `--presign`.
MAX_INLINE_BYTES = 50 * 1024 * 1024

_SNIFF_BYTES = 64

#: GET errors about the reader's permissions, not about one object (see the module doc).
_ACCESS_CODES = frozenset({"AccessDenied", "403", "AllAccessDisabled"})

#: S3 error codes that say "this object cannot be served", as opposed to "S3 is unwell".
_OBJECT_CODES = {
    "NoSuchKey": "vanished",
    "404": "vanished",
    "NotFound": "vanished",
    "InvalidRange": "empty object",
    "InvalidObjectState": "archived (restore it first)",
}


class ImageUnavailable(Exception):
    """This key cannot be served; `reason` goes into the state DB's `failure_reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sniff_mime(head: bytes) -> str | None:
    """The image MIME type the first bytes show, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:2] == b"BM" and len(head) >= 14:
        return "image/bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return "image/avif"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1"):
        return "image/heic"
    if head[:4] == b"\x00\x00\x01\x00":
        return "image/x-icon"
    stripped = head.lstrip()
    if stripped.startswith(b"<svg") or (stripped.startswith(b"<?xml") and b"<svg" in head):
        return "image/svg+xml"
    return None


def choose_mime(content_type: str | None, head: bytes) -> str | None:
    """Sniffed bytes first (Content-Type is often wrong or generic), then an image/*
    Content-Type for formats we do not sniff. None: not an image."""
    sniffed = sniff_mime(head)
    if sniffed:
        return sniffed
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared == "image/jpg":
        return "image/jpeg"
    if declared.startswith("image/") and len(declared) > len("image/"):
        return declared
    return None


def to_data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class ImageLoader:
    """Loads keys of one bucket as data URIs (inline) or presigned URLs (`presign`)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        presign: timedelta | None = None,
        max_inline_bytes: int = MAX_INLINE_BYTES,
    ) -> None:
        if presign is not None and presign > MAX_PRESIGN:
            raise UsageError("--presign can be at most 7d (S3's limit for presigned URLs)")
        if presign is not None and presign < timedelta(seconds=1):
            raise UsageError("--presign must be at least 1s")
        self.client = client
        self.bucket = bucket
        self.presign = presign
        self.max_inline_bytes = max_inline_bytes

    def load(self, key: str, size: int | None = None) -> str:
        """The `image` value for `key`; raises `ImageUnavailable` or `S3Error`."""
        if self.presign is not None:
            return self._presigned(key)
        if size is not None and size > self.max_inline_bytes:
            raise ImageUnavailable(
                f"too large to inline ({size} bytes > {self.max_inline_bytes}); use --presign"
            )
        response = self._get(key)
        body = response["Body"]
        try:
            data = self._read(body, key)
        finally:
            body.close()
        mime = choose_mime(response.get("ContentType"), data[:_SNIFF_BYTES])
        if mime is None:
            raise ImageUnavailable(_not_an_image(response.get("ContentType")))
        return to_data_uri(data, mime)

    def _presigned(self, key: str) -> str:
        response = self._get(key, Range=f"bytes=0-{_SNIFF_BYTES - 1}")
        body = response["Body"]
        try:
            head = self._read(body, key)
        finally:
            body.close()
        if choose_mime(response.get("ContentType"), head) is None:
            raise ImageUnavailable(_not_an_image(response.get("ContentType")))
        assert self.presign is not None
        try:
            return str(
                self.client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.bucket, "Key": key},
                    ExpiresIn=int(self.presign.total_seconds()),
                )
            )
        except (ClientError, BotoCoreError) as error:
            raise S3Error(describe(error, self.bucket, key)) from None

    def _get(self, key: str, **extra: Any) -> dict[str, Any]:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key, **extra)  # type: ignore[no-any-return]
        except ClientError as error:
            code = error_code(error)
            reason = _OBJECT_CODES.get(code)
            if reason is not None:
                raise ImageUnavailable(f"{reason}: {format_s3_uri(self.bucket, key)}") from None
            if code in _ACCESS_CODES or code.startswith("KMS."):
                raise S3Error(access_problem(describe(error, self.bucket, key))) from None
            raise S3Error(describe(error, self.bucket, key)) from None
        except BotoCoreError as error:
            raise S3Error(describe(error, self.bucket, key)) from None

    def _read(self, body: Any, key: str) -> bytes:
        try:
            return body.read()  # type: ignore[no-any-return]
        except (ClientError, BotoCoreError, OSError) as error:
            raise S3Error(describe(error, self.bucket, key)) from None


def access_problem(described: str) -> str:
    """One line for a permission error on GET: what to check, and that no key was failed."""
    return (
        f"{described} (check s3:GetObject on the prefix, and kms:Decrypt for SSE-KMS "
        "objects); no key was marked failed"
    )


def _not_an_image(content_type: str | None) -> str:
    return f"not an image (Content-Type {content_type or 'unknown'}, no image signature)"
