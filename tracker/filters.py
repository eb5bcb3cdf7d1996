"""Which listed objects become items: images only by default, never folder placeholders."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

#: Extensions taken by default (compared case-insensitively).
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff"})


@dataclass(frozen=True)
class KeyFilter:
    """Keeps an object when it is not a placeholder and matches the extensions or globs.

    `extensions=None` and `globs=()` take every object (but still no placeholders).
    """

    extensions: frozenset[str] | None = IMAGE_EXTENSIONS
    globs: tuple[str, ...] = ()

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
            return cls(extensions=chosen, globs=globs)
        return cls(extensions=None if globs else IMAGE_EXTENSIONS, globs=globs)

    def accepts(self, key: str, size: int | None) -> bool:
        if key.endswith("/") or size == 0:
            return False
        if self.extensions is None and not self.globs:
            return True
        if self.extensions is not None:
            _, dot, extension = key.rpartition(".")
            if dot and "/" not in extension and extension.lower() in self.extensions:
                return True
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.globs)
