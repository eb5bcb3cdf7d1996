"""Which listed objects become items: images only by default, never folder placeholders.

By default a key is taken when its extension is an image one (HEIC/HEIF/AVIF included) or
when its last path segment has no extension at all (content-addressed keys such as
`ab/cdef0123...`): those cannot be judged by name, so they are listed and their bytes
decide when they are served (an object that is not an image is marked `failed` "not an
image"). Explicit `--ext` / `--match` replace the default, no-extension rule included.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from tracker.errors import UsageError

#: Extensions taken by default (compared case-insensitively).
IMAGE_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff", "heic", "heif", "avif"}
)


def parse_extensions(values: Iterable[str]) -> list[str] | None:
    """`--ext jpg,png --ext .TIF` -> ["jpg", "png", ".TIF"]; None when not given."""
    values = tuple(values)
    if not values:
        return None
    extensions = [part.strip() for value in values for part in value.split(",")]
    if not all(e.strip(".") for e in extensions):
        raise UsageError(f"empty extension in --ext {','.join(values)!r}")
    return extensions


@dataclass(frozen=True)
class KeyFilter:
    """Keeps an object when it is not a placeholder and matches the extensions or globs.

    `extensions=None` and `globs=()` take every object (but still no placeholders).
    `no_extension` also takes keys whose last segment has no dot (the default filter).
    """

    extensions: frozenset[str] | None = IMAGE_EXTENSIONS
    globs: tuple[str, ...] = ()
    no_extension: bool = True

    @classmethod
    def build(
        cls,
        extensions: Iterable[str] | None = None,
        globs: Iterable[str] = (),
        *,
        all_objects: bool = False,
    ) -> KeyFilter:
        """From CLI or recipe options: explicit extensions or globs replace the default."""
        globs = tuple(globs)
        if all_objects:
            return cls(extensions=None, globs=())
        if extensions is not None:
            chosen = frozenset(e.strip().lstrip(".").lower() for e in extensions if e.strip())
            return cls(extensions=chosen, globs=globs, no_extension=False)
        if globs:
            return cls(extensions=None, globs=globs, no_extension=False)
        return cls()

    def accepts(self, key: str, size: int | None) -> bool:
        if key.endswith("/") or size == 0:
            return False
        if self.extensions is None and not self.globs:
            return True
        if self.extensions is not None:
            _, dot, extension = key.rpartition(".")
            if dot and "/" not in extension and extension.lower() in self.extensions:
                return True
            if self.no_extension and "." not in key.rpartition("/")[2]:
                return True
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.globs)

    def describe(self) -> str:
        """The filter in the user's terms, for log lines."""
        if self.extensions is None and not self.globs:
            return "every object"
        parts = []
        if self.extensions is not None:
            parts.append("extensions " + ",".join(sorted(self.extensions)))
            if self.no_extension:
                parts.append("keys without an extension")
        parts += [f"keys matching {glob!r}" for glob in self.globs]
        return " or ".join(parts)

    def nothing_taken(self, uri: str, listed: int) -> str:
        """One line for a listed page whose objects the filter all left out."""
        return (
            f"{uri}: a listed page of {listed} objects had 0 the filter takes "
            f"({self.describe()}); to take others use --ext, --match or --all-objects"
        )
