"""Keep credentials out of log output.

botocore's DEBUG logs (`tracker -vv`) print request headers and the canonical request that
is signed, and both carry the session token (`X-Amz-Security-Token`) in clear. The filter
here rewrites every record that reaches our handler: session-token headers and query
parameters lose their value, and the literal values of the credential environment variables
are masked wherever they appear.

Database URLs are masked here too (`mask_url`), from the text itself rather than from a
parsed URL: SQLAlchemy's parser reads an unencoded `@` in a password as the start of the
host, so its own `hide_password` printed the password's tail; and a password can also be
given as a query parameter (`?password=`), which it never hides.
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


# `scheme://[user]:password@host...`: the password runs to the LAST `@` that is followed by
# a host (no `@ / ? #`): an unencoded `@` in a password is masked with it, never leaked. An
# `@` in a query value after the host may make this mask more than the password: that
# errs on the safe side.
_USERINFO = re.compile(
    r"^(?P<user>[^:/?#@]*):(?P<password>.*)@(?P<host>[^@/?#]*)(?P<tail>[/?#].*)?$", re.DOTALL
)

# Query parameters that carry a credential: libpq's `password` and `sslpassword`, and any
# name that says pass/pwd/secret/token/key (over-masking a harmless value costs nothing).
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;][^=&;#]*(?:pass|pwd|secret|token|key)[^=&;#]*=)(?P<value>[^&;#]*)",
    re.IGNORECASE,
)

# A URL inside free text (an error message): a scheme, `://`, then up to white space.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://\S+")


def mask_url(url: str) -> str:
    """`url` with every credential-bearing part replaced by `***`: the password of its
    user-info (all of it, `@`s included) and the values of credential query parameters."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _SECRET_PARAM.sub(lambda m: m.group("name") + MASK, url)
    match = _USERINFO.match(rest)
    if match is not None and match.group("password"):
        rest = f"{match.group('user')}:{MASK}@{match.group('host')}{match.group('tail') or ''}"
    return scheme + sep + _SECRET_PARAM.sub(lambda m: m.group("name") + MASK, rest)


def url_password(url: str) -> str | None:
    """The password of a URL's user-info, read as `mask_url` reads it (to the last `@`)."""
    _, sep, rest = url.partition("://")
    match = _USERINFO.match(rest) if sep else None
    return match.group("password") if match is not None and match.group("password") else None


def url_secrets(url: str) -> tuple[str, ...]:
    """Every credential value in `url` (user-info password, credential query values)."""
    found = [m.group("value") for m in _SECRET_PARAM.finditer(url) if m.group("value")]
    password = url_password(url)
    if password:
        found.append(password)
    return tuple(found)


def mask_urls_in(text: str) -> str:
    """Every URL in free text masked as `mask_url` does (error lines, log messages)."""
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with session tokens and the given secret values masked."""
    text = _TOKEN.sub(lambda m: m.group(1) + MASK, text)
    text = mask_urls_in(text)
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
