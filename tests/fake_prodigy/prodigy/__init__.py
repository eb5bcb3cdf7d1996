"""Test-only stand-in for Prodigy (which is licensed and cannot be installed here).

Provides the one name the recipe file uses, `recipe(name, **annotations)`, and records
every registration in `RECIPES`, the way Prodigy's registry would. Like Prodigy's
plac-style registration, it stores the annotations as the function's `__annotations__`.
Only the tests put this directory on `sys.path`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: name -> (function, plac-style annotations)
RECIPES: dict[str, tuple[Callable[..., Any], dict[str, tuple[Any, ...]]]] = {}


def recipe(name: str, **annotations: tuple[Any, ...]) -> Callable[[Callable[..., Any]], Any]:
    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        if annotations:
            func.__annotations__ = dict(annotations)
        RECIPES[name] = (func, dict(annotations))
        return func

    return register
