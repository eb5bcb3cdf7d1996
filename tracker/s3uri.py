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


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix"). The prefix is kept verbatim."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() != "s3":
        raise UsageError(f"not an S3 URL (expected s3://BUCKET[/PREFIX]): {uri!r}")
    bucket, _, prefix = rest.partition("/")
    return validate_bucket(bucket), prefix


def format_s3_uri(bucket: str, prefix: str = "") -> str:
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
