"""A harness that drives the recipe the way Prodigy does (see ../shared PRODIGY.md).

1. `load_recipes()` imports `recipes/s3_loader.py` with the stand-in `prodigy` module and
   returns what it registered; `parse_command()` turns a command line into the call Prodigy
   makes, reading the plac-style annotations as plac would.
2. `App.next_batch()` pulls `batch_size` tasks from the stream, skipping hashes already in
   the dataset (Prodigy's `exclude_by: task`).
3. `App.answer()` calls `update` and `before_db` (in either order, on the same objects) and
   "saves" what `before_db` returned in the dataset, a plain list shared across restarts.
4. A reload is a batch never answered; a restart is a new `App` on the same state DB and
   dataset; `App.exit()` calls `on_exit(ctrl)`.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import inspect
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FAKE_PRODIGY = Path(__file__).resolve().parent / "fake_prodigy"
RECIPE_FILE = ROOT / "recipes" / "s3_loader.py"
COMPONENTS = {"dataset", "view_id", "stream", "update", "before_db", "on_exit", "config"}

_loads = itertools.count()


def use_fake_prodigy() -> Any:
    """Put the stand-in `prodigy` first on sys.path and return it, registry emptied."""
    if str(FAKE_PRODIGY) not in sys.path:
        sys.path.insert(0, str(FAKE_PRODIGY))
    import prodigy

    assert Path(prodigy.__file__).resolve().is_relative_to(FAKE_PRODIGY), prodigy.__file__
    prodigy.RECIPES.clear()
    return prodigy


def load_recipes(path: Path = RECIPE_FILE) -> dict[str, tuple[Callable[..., Any], dict]]:
    """What `prodigy ... -F recipes/s3_loader.py` registers: name -> (function, annotations)."""
    prodigy = use_fake_prodigy()
    spec = importlib.util.spec_from_file_location(f"s3_loader_{next(_loads)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(prodigy.RECIPES)


def parse_command(
    func: Callable[..., Any], annotations: dict[str, tuple[Any, ...]], argv: list[str]
) -> dict[str, Any]:
    """Parse `argv` as plac does from (help, kind, shortcut, type) annotations.

    Positional arguments with a default are optional; options are `--long-name` (underscores
    become dashes) or `-shortcut`; flags take no value.
    """
    signature = inspect.signature(func)
    parser = argparse.ArgumentParser(prog="prodigy", add_help=False, exit_on_error=False)
    for name, parameter in signature.parameters.items():
        help_text, kind, shortcut, type_ = (tuple(annotations[name]) + (None,) * 4)[:4]
        assert help_text, f"{name} has no help"
        default = None if parameter.default is inspect.Parameter.empty else parameter.default
        if kind == "positional":
            nargs = None if parameter.default is inspect.Parameter.empty else "?"
            parser.add_argument(name, nargs=nargs, default=default, type=type_ or str)
        elif kind == "option":
            flags = [f"--{name.replace('_', '-')}"] + ([f"-{shortcut}"] if shortcut else [])
            parser.add_argument(*flags, dest=name, default=default, type=type_ or str)
        elif kind == "flag":
            flags = [f"--{name.replace('_', '-')}"] + ([f"-{shortcut}"] if shortcut else [])
            parser.add_argument(*flags, dest=name, action="store_true")
        else:
            raise AssertionError(f"{name}: unknown plac kind {kind!r}")
    return vars(parser.parse_args(argv))


@dataclass
class Controller:
    """The attributes of Prodigy's Controller that public recipes use."""

    dataset: str
    session_id: str
    db: list[dict[str, Any]]
    stream: Any = None


@dataclass
class App:
    """One Prodigy server process running the recipe's components."""

    components: dict[str, Any]
    dataset_db: list[dict[str, Any]] = field(default_factory=list)
    order: str = "update_first"
    served: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        missing = {"dataset", "view_id", "stream"} - set(self.components)
        assert not missing, f"components lack {missing}"
        assert set(self.components) <= COMPONENTS | {"exclude", "on_load", "progress"}
        self.batch_size = int(self.components.get("config", {}).get("batch_size", 10))
        self.dataset = self.components["dataset"]
        self._stream = iter(self.components["stream"])
        self.exhausted = False

    def _in_dataset(self, task: dict[str, Any]) -> bool:
        return any(eg.get("_task_hash") == task["_task_hash"] for eg in self.dataset_db)

    def next_batch(self) -> list[dict[str, Any]]:
        """The next batch the web app would receive; [] when the stream is exhausted."""
        batch: list[dict[str, Any]] = []
        while len(batch) < self.batch_size:
            try:
                task = next(self._stream)
            except StopIteration:
                self.exhausted = True
                break
            if self._in_dataset(task):
                continue
            batch.append(task)
        keys = [t["meta"]["key"] for t in batch]
        assert len(keys) == len(set(keys)), f"a key twice in one batch: {keys}"
        self.served.extend(keys)
        return batch

    def answer(
        self,
        batch: list[dict[str, Any]],
        answer: str = "accept",
        *,
        session: str = "alice",
        order: str | None = None,
    ) -> list[dict[str, Any]]:
        """Send answers back as the web app does; returns what was saved in the dataset."""
        answers = []
        for task in batch:
            example = copy.deepcopy(task)
            example["answer"] = answer
            example["_session_id"] = f"{self.dataset}-{session}"
            example["_annotator_id"] = f"{self.dataset}-{session}"
            answers.append(example)
        update = self.components.get("update")
        before_db = self.components.get("before_db")
        if (order or self.order) == "update_first":
            if update:
                update(answers)
            saved = before_db(answers) if before_db else answers
        else:
            saved = before_db(answers) if before_db else answers
            if update:
                update(answers)
        assert isinstance(saved, list), "before_db must return a list"
        for example in saved:
            image = example.get("image", "")
            assert not str(image).startswith(("data:", "http")), "image bytes/URL saved"
        self.dataset_db.extend(copy.deepcopy(saved))
        return saved

    def exit(self) -> Any:
        on_exit = self.components.get("on_exit")
        if on_exit is None:
            return None
        ctrl = Controller(self.dataset, f"{self.dataset}-default", self.dataset_db, self._stream)
        return on_exit(ctrl)

    def annotate_all(self, answer: str = "accept", *, max_batches: int = 10_000) -> list[str]:
        """Answer every batch until the stream ends; returns the keys answered."""
        done: list[str] = []
        for _ in range(max_batches):
            batch = self.next_batch()
            if batch:
                self.answer(batch, answer)
                done.extend(t["meta"]["key"] for t in batch)
            if self.exhausted:
                return done
        raise AssertionError("the stream did not end")
