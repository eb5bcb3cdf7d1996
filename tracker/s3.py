"""Talking to S3: one place that builds boto3 clients and turns S3's errors into one line.

Credentials, region and endpoint come from boto3's own chain (environment, profile, config
files, `AWS_ENDPOINT_URL_S3`); nothing here stores or prints them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from tracker.errors import S3Error, UsageError
from tracker.s3uri import format_s3_uri

if TYPE_CHECKING:  # boto3-stubs, in the dev extra
    from mypy_boto3_s3 import S3Client

#: Retries for throttling (503 SlowDown), 5xx answers and dropped connections: up to 5
#: attempts in all, with botocore's exponential backoff (standard mode).
RETRIES = {"mode": "standard", "total_max_attempts": 5}

#: Codes that say the request itself is refused, whatever we send: never worth a retry.
FATAL_CODES = frozenset(
    {
        "NoSuchBucket",
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "InvalidBucketName",
        "403",
        "404",
    }
)


#: Codes that say "slow down": retried by botocore; after the last retry, an error (never a
#: reason to give up a continuation token).
THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "BandwidthLimitExceeded",
        "503",
    }
)


def is_throttling(error: ClientError) -> bool:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(error) in THROTTLING_CODES or status in {429, 503}


def make_client(
    endpoint_url: str | None = None,
    *,
    profile: str | None = None,
    region: str | None = None,
    max_attempts: int | None = None,
) -> S3Client:
    """An S3 client from boto3's normal configuration chain.

    An explicit endpoint (or `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`) means an
    S3-compatible server, usually on a host name that has no per-bucket subdomains: use
    path-style addressing there. Retries default to `RETRIES`; boto3's own settings
    (`AWS_MAX_ATTEMPTS`, `AWS_RETRY_MODE`, `max_attempts` / `retry_mode` in the profile)
    take precedence.
    """
    endpoint = (
        endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    try:
        core = botocore.session.Session(profile=profile)
        retries: dict[str, Any] = dict(RETRIES)
        configured_mode = core.get_config_variable("retry_mode")
        configured_attempts = core.get_config_variable("max_attempts")
        if configured_mode:
            retries["mode"] = configured_mode
        if max_attempts or configured_attempts:  # attempts in all, as AWS_MAX_ATTEMPTS counts
            retries["total_max_attempts"] = int(max_attempts or configured_attempts)
        config = Config(
            retries=retries,  # type: ignore[arg-type]  # mode: the profile's string, botocore checks it
            connect_timeout=10,
            read_timeout=60,
            s3={"addressing_style": "path"} if endpoint else None,
            # SigV4 everywhere, presigned URLs included (botocore may otherwise presign
            # with SigV2 in us-east-1, which newer regions and many S3-compatible servers
            # refuse).
            signature_version="s3v4",
        )
        session = boto3.session.Session(botocore_session=core, region_name=region)
        return session.client("s3", endpoint_url=endpoint_url, config=config)
    except BotoCoreError as error:
        raise S3Error(f"cannot set up S3: {error}") from None
    except ValueError as error:  # e.g. a malformed endpoint URL
        raise UsageError(f"bad S3 endpoint {endpoint_url!r}: {error}") from None


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def describe(error: Exception, bucket: str, key: str | None = None) -> str:
    """One line that says what went wrong, in the user's terms, without secrets."""
    where = format_s3_uri(bucket, key or "")
    if isinstance(error, ClientError):
        code = error_code(error)
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in {"NoSuchBucket"} or (code == "404" and key is None):
            return f"bucket {bucket!r} does not exist"
        if code in {"NoSuchKey", "404"}:
            return f"{where} does not exist"
        if code in {"AccessDenied", "AllAccessDisabled", "403"}:
            return f"access denied to {where}"
        if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}:
            return f"S3 rejected the credentials ({code}) for {where}"
        message = error.response.get("Error", {}).get("Message") or ""
        return f"S3 error {code or status} on {where}: {message}".rstrip(": ")
    if isinstance(error, NoCredentialsError):
        return (
            "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or configure ~/.aws)"
        )
    if isinstance(error, BotoConnectionError):
        return f"cannot reach S3 ({type(error).__name__}): {error}"
    if isinstance(error, ParamValidationError):
        return f"invalid S3 request for {where}: {error}".replace("\n", " ")
    return f"S3 failure on {where}: {error}"
