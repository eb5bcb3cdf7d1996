"""Keep credentials out of log output.

botocore's DEBUG logs (`tracker -vv`) print request headers and the canonical request that
is signed, and both carry the session token (`X-Amz-Security-Token`) in clear. The filter
here rewrites every record that reaches our handler: session-token headers and query
parameters lose their value, and the literal values of the credential environment variables
are masked wherever they appear.
"""

from __future__ import annotations

import logging
import os
import re

#: Environment variables whose values are secrets (boto3's chain reads them).
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")

MASK = "***"

# `X-Amz-Security-Token': b'VALUE'`, `x-amz-security-token:VALUE` (canonical request),
# `X-Amz-Security-Token=VALUE` (presigned URL), and S3 Express's session token header.
_TOKEN = re.compile(
    r"""(x-amz-(?:security|s3session)-token['"]?\s*[:=]\s*b?['"]?)([^'"\s&,;}]+)""",
    re.IGNORECASE,
)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with session tokens and the given secret values masked."""
    text = _TOKEN.sub(lambda m: m.group(1) + MASK, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


class RedactSecrets(logging.Filter):
    """A handler filter: formats each record, then masks secrets in the result."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets = tuple(v for name in SECRET_ENV if len(v := os.environ.get(name, "")) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True
