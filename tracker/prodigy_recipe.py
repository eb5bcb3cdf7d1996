"""The `prodigy_recipes` entry point: loads `recipes/s3_loader.py`, which registers the recipe.

There is one source of truth, `recipes/s3_loader.py`; a wheel carries it as
`tracker/_recipes/s3_loader.py` (see pyproject's force-include), a source tree has it at
`../recipes/`. Importing this module imports Prodigy (through that file), so only Prodigy
should import it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

_MODULE_NAME = "tracker._s3_loader"


def recipe_file() -> Path:
    """`recipes/s3_loader.py` in a source tree, or its copy inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_recipes" / "s3_loader.py", here.parent / "recipes" / "s3_loader.py"):
        if candidate.is_file():
            return candidate
    raise ImportError("recipes/s3_loader.py is missing from this installation")


def load() -> ModuleType:
    """Import the recipe file once (registering its recipes with Prodigy)."""
    module = sys.modules.get(_MODULE_NAME)
    if module is None:
        spec = importlib.util.spec_from_file_location(_MODULE_NAME, recipe_file())
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE_NAME] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[_MODULE_NAME]
            raise
    return module


def __getattr__(name: str) -> Any:
    if name in ("stream_from_s3", "stream_from_s3_dashed"):
        return getattr(load(), name)
    raise AttributeError(name)
