"""s3-annotation-tracker: resumable, lease-based annotation of S3 image collections."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """`tracker.__version__`, read from the installed metadata on first use:
    `importlib.metadata` costs more to import than the rest of `tracker --help`."""
    if name != "__version__":
        raise AttributeError(f"module 'tracker' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("s3-annotation-tracker")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"
