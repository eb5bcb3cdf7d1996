"""Parsing `s3://BUCKET[/PREFIX]`, the way every command names a source."""

from __future__ import annotations

import re

from tracker.errors import UsageError

# S3's rules for bucket names (3-63 characters: lowercase letters, digits, dots, hyphens;
# starting and ending with a letter or digit). Legacy names with underscores or capitals are
# accepted too, since older buckets and S3-compatible servers allow them.
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")


def validate_bucket(bucket: str) -> str:
    if not _BUCKET.match(bucket):
        raise UsageError(f"not a valid S3 bucket name: {bucket!r}")
    return bucket


#: S3's limit on a key: 1024 bytes of UTF-8.
MAX_KEY_BYTES = 1024


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix"). The prefix is kept verbatim."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() != "s3":
        raise UsageError(f"not an S3 URL (expected s3://BUCKET[/PREFIX]): {uri!r}")
    bucket, _, prefix = rest.partition("/")
    return validate_bucket(bucket), prefix


def parse_source_uri(uri: str) -> tuple[str, str]:
    """`s3://BUCKET[/PREFIX]` as a source: the bucket and the prefix in its one stored
    form (`normalize_prefix`, which the store applies too): `s3://b/img` and `s3://b/img/`
    name one source."""
    bucket, prefix = parse_s3_uri(uri)
    return bucket, normalize_prefix(prefix)


def key_problem(key: str) -> str | None:
    """Why `key` cannot be an S3 key in the state DB, or None when it can.

    Checked on input before any write, so that SQLite and PostgreSQL take the same keys:
    PostgreSQL refuses NUL in text and, with the column's limit, keys over 1024 characters;
    SQLite would store both. S3 itself allows neither over 1024 bytes.
    """
    if not key:
        return "empty key"
    if "\x00" in key:
        return "key contains a NUL character"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "key is not valid Unicode (a lone surrogate)"
    if size > MAX_KEY_BYTES:
        return f"key is {size} bytes of UTF-8, over S3's {MAX_KEY_BYTES}"
    return None


def format_s3_uri(bucket: str, prefix: str = "") -> str:
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def normalize_prefix(prefix: str) -> str:
    """The one stored form of a source's prefix: a folder, so `img`, `img/` and `/img/`
    name the same source (keys under `img/`); the whole bucket is ``""``."""
    prefix = prefix.lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def prefixes_overlap(a: str, b: str) -> bool:
    """True when one normalised prefix holds keys of the other (``""`` holds every key)."""
    return a.startswith(b) or b.startswith(a)


def utf8_after(key: str | None, than: str | None) -> bool:
    """True when `key` sorts after `than` in S3's listing order (UTF-8 bytes)."""
    if key is None:
        return False
    return than is None or key.encode("utf-8", "surrogatepass") > than.encode(
        "utf-8", "surrogatepass"
    )
