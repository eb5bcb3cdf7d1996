"""s3-annotation-tracker: resumable, lease-based annotation of S3 image collections."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("s3-annotation-tracker")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
