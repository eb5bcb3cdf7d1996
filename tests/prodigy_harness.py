"""A harness that plays Prodigy's feed rules against a recipe's components.

Prodigy is licensed and cannot be installed here, so this module plays the part of a Prodigy
server from public facts (../shared/PRODIGY.md). Every rule it plays, and where it comes from:

- loading: `load_recipes()` imports `recipes/s3_loader.py` with the stand-in `prodigy`
  module; `parse_command()` reads plac-style annotations as plac would
  -> PRODIGY.md "Registration and loading".
- exclusion by the dataset's hashes, `_task_hash` (`exclude_by: "task"`, the default) or
  `_input_hash` (`"input"`), or none (`auto_exclude_current` off): `Feed.exclude_by`
  -> PRODIGY.md "The feed rules ..." (Exclusion); support.prodi.gy threads 4075, 7328.
- the in-process duplicate filter: a task whose hash was already pulled from the generator
  in this process is dropped and never reaches a browser: `Feed.dedupe`
  -> PRODIGY.md "The feed rules ..." (Duplicates); thread 4075. [unverified] for every
  version, hence a switch: both outcomes must be safe.
- batching after filtering: a filtered task does not shrink the batch, the server pulls more
  from the generator; Prodigy's batch size may differ from the recipe's (`Feed.batch_size`)
  -> PRODIGY.md "The stream" and "The feed rules ..." (Batching).
- named sessions: `?session=alice` answers carry `_session_id` = `_annotator_id` =
  `DATASET-alice`; all sessions of one server pull from ONE generator, from request threads,
  under a lock around `next()` (`App.pull_concurrently`)
  -> PRODIGY.md "Components a recipe returns", "Multiple annotators".
- reload, older versions (`Feed.reload = "new_batch"`): a reload asks for a new batch; the
  one sent before is never re-sent by the server -> PRODIGY.md "The stream"; thread 2198.
- reload, >= 1.12 (`Feed.reload = "reoffer"`): a session's unanswered tasks stay open and
  are offered again on reload; once the generator is exhausted another session steals them
  (Prodigy's own work stealing) -> threads 7548, 7615, 7510; `force_stream_order` re-sends in
  order -> thread 2949.
- answers: `update(answers)` and `before_db(answers)` in either order (`Feed.order`), then
  what `before_db` returned is saved in the dataset, a list shared across restarts
  -> PRODIGY.md "Components a recipe returns" (order [unverified]).
- restart: a new `App` (new recipe call) on the same state DB and dataset list; `App.exit()`
  calls `on_exit(ctrl)` -> PRODIGY.md "Components a recipe returns", "The stream".
- requests: a fill loop's pulls all run on the one thread that serves the request
  (`RequestThread`), and a browser's next request reaches the server at least
  `Feed.round_trip` seconds after its last response reached it (an HTTP round trip)
  -> PRODIGY.md "Multiple annotators" (request threads).

What a real server cannot do, the harness checks instead: a `next()` that blocks longer than
`Feed.pull_timeout` seconds while the batch being filled already holds tasks fails the test
(`StreamBlocked`: a real server would hang inside `next()` with that batch undelivered); with
nothing held yet, a wait for work is a spinner in the browser, bounded by `Feed.idle_timeout`;
more than `Feed.max_pulls` pulls fails it too (`StreamEndless`).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import inspect
import itertools
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

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


# -- the feed rules ---------------------------------------------------------------------------


class StreamBlocked(AssertionError):
    """The generator did not return from `next()` within `Feed.pull_timeout`."""


class StreamEndless(AssertionError):
    """The generator was pulled more than `Feed.max_pulls` times without ending."""


@dataclass(frozen=True)
class Feed:
    """Which of Prodigy's feed rules a server plays (see the module docstring for sources).

    The defaults are the plainest server: exclusion by task hash, no duplicate filter, a
    reload asks for a new batch, batches of the recipe's `config["batch_size"]`.
    """

    #: Hash compared with the dataset's: "task", "input", or None (no exclusion).
    exclude_by: Literal["task", "input"] | None = "task"
    #: Drop a task whose hash this process already pulled from the generator.
    dedupe: bool = False
    #: "new_batch" (older versions) or "reoffer" (>= 1.12: open tasks re-offered, stolen).
    reload: Literal["new_batch", "reoffer"] = "new_batch"
    #: Prodigy's batch size; None: the recipe's `config["batch_size"]` (default 10).
    batch_size: int | None = None
    #: Which callback sees the answers first: "update_first" or "before_db_first".
    order: Literal["update_first", "before_db_first"] = "update_first"
    #: Seconds one `next()` may take while the batch holds tasks (a server would hang).
    pull_timeout: float = 30.0
    #: Seconds one `next()` may take for an empty batch (the browser shows a spinner).
    idle_timeout: float = 60.0
    #: Pulls from the generator before the test fails as "the stream never ends".
    max_pulls: int = 10_000
    #: Seconds at least from a response reaching a browser to that browser's next request
    #: reaching the server: an HTTP round trip (a few milliseconds even on loopback, and a
    #: person answering in between). Without it, an answer and the next request would
    #: come faster than any real browser sends them.
    round_trip: float = 0.005

    @property
    def hash_field(self) -> str:
        """The hash both filters compare: `_input_hash` under `exclude_by: input`."""
        return "_input_hash" if self.exclude_by == "input" else "_task_hash"


#: Named modes for `pytest.mark.parametrize`: every stream guarantee must hold under each.
MODES: dict[str, Feed] = {
    "older": Feed(dedupe=True),
    "older-no-dedupe": Feed(),
    "v1.12": Feed(dedupe=True, reload="reoffer"),
    "v1.12-exclude-input-before-db-first": Feed(
        dedupe=True, reload="reoffer", exclude_by="input", order="before_db_first"
    ),
    "prodigy-batch-3": Feed(dedupe=True, batch_size=3),
}


@dataclass(frozen=True)
class Shown:
    """One task reaching a browser: from the generator, re-offered, or stolen."""

    key: str
    session: str
    via: Literal["stream", "reoffer", "steal"]
    #: time.monotonic() when it was handed over (for the stream: when it was yielded).
    at: float


@dataclass
class Controller:
    """The attributes of Prodigy's Controller that public recipes use."""

    dataset: str
    session_id: str
    db: list[dict[str, Any]]
    stream: Any = None


def key_of(task: dict[str, Any]) -> str:
    return task["meta"]["key"]


def keys_of(tasks: Iterable[dict[str, Any]]) -> list[str]:
    return [key_of(t) for t in tasks]


@dataclass
class Session:
    """One named session (`?session=NAME`) of a server: one browser tab."""

    app: App
    name: str
    #: Tasks sent to this session and not answered yet (what >= 1.12 keeps open).
    open: list[dict[str, Any]] = field(default_factory=list)
    #: time.monotonic() when this browser's last response reached it.
    responded_at: float = float("-inf")

    @property
    def session_id(self) -> str:
        return f"{self.app.dataset}-{self.name}"

    def next_batch(self) -> list[dict[str, Any]]:
        """The browser asks for questions; [] once the stream is exhausted."""
        return self._request(lambda: self.app._get_questions(self))

    def reload(self) -> list[dict[str, Any]]:
        """The browser reloads: its batch is lost; what it sees next depends on the version."""
        return self._request(lambda: self.app._reload(self))

    def answer(
        self, batch: list[dict[str, Any]], answer: str = "accept", *, order: str | None = None
    ) -> list[dict[str, Any]]:
        """Send answers back as the web app does; returns what was saved in the dataset."""
        return self._request(lambda: self.app._give_answers(self, batch, answer, order))

    def _request(self, serve: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """One HTTP request of this browser: it reaches the server a round trip after the
        last response reached the browser."""
        time.sleep(max(0.0, self.responded_at + self.app.feed.round_trip - time.monotonic()))
        try:
            return serve()
        finally:
            self.responded_at = time.monotonic()


class RequestThread:
    """The thread that serves one request: Prodigy fills a batch by calling `next()` from
    the request thread that asked, so every pull of one fill loop runs on this one thread
    (a daemon, so that a stream left blocked by a failed test does not hold up the exit)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        threading.Thread(target=self._run, daemon=True, name=name).start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def __enter__(self) -> RequestThread:
        return self

    def __exit__(self, *_: object) -> None:
        self._jobs.put(None)


class App:
    """One Prodigy server process running the recipe's components under `feed`'s rules.

    `dataset_db` is the Prodigy dataset, a list shared by the `App`s of one test (restarts,
    other processes). `next_batch()` / `answer()` act for the default session `alice`;
    `session(name)` gives others.
    """

    def __init__(
        self,
        components: dict[str, Any],
        dataset_db: list[dict[str, Any]] | None = None,
        *,
        feed: Feed | None = None,
        order: str | None = None,
        name: str = "app",
        after_pull: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        missing = {"dataset", "view_id", "stream"} - set(components)
        assert not missing, f"components lack {missing}"
        assert set(components) <= COMPONENTS | {"exclude", "on_load", "progress"}
        feed = feed or Feed()
        self.feed = replace(feed, order=order) if order else feed
        self.components = components
        self.dataset_db = dataset_db if dataset_db is not None else []
        self.dataset = components["dataset"]
        self.name = name
        config = components.get("config", {})
        self.batch_size = self.feed.batch_size or int(config.get("batch_size", 10))
        #: Called with each raw task pulled (before filtering): lets a test act between pulls.
        self.after_pull = after_pull
        #: id(task) -> when `next()` returned it, until the task is shown.
        self._pulled_at: dict[int, float] = {}
        self.exhausted = False
        #: Keys handed to browsers, in order (any session, any route).
        self.served: list[str] = []
        self.shown: list[Shown] = []
        self.pulls = 0
        self._stream: Iterator[dict[str, Any]] = iter(components["stream"])
        self._pulled_hashes: set[Any] = set()
        self._sessions: dict[str, Session] = {}
        # A server's request threads share one generator: one `next()` at a time.
        self._lock = threading.RLock()
        self._blocked = False

    # -- sessions ---------------------------------------------------------------------------

    def session(self, name: str = "alice") -> Session:
        with self._lock:
            return self._sessions.setdefault(name, Session(self, name))

    def next_batch(self, session: str = "alice") -> list[dict[str, Any]]:
        return self.session(session).next_batch()

    def answer(
        self,
        batch: list[dict[str, Any]],
        answer: str = "accept",
        *,
        session: str = "alice",
        order: str | None = None,
    ) -> list[dict[str, Any]]:
        return self.session(session).answer(batch, answer, order=order)

    def pull_concurrently(self, *names: str) -> dict[str, list[dict[str, Any]]]:
        """Sessions ask for a batch at the same time, each from its own request thread."""
        results: dict[str, list[dict[str, Any]]] = {}
        errors: list[BaseException] = []

        def ask(name: str) -> None:
            try:
                results[name] = self.session(name).next_batch()
            except BaseException as error:  # re-raised in the test's thread
                errors.append(error)

        threads = [threading.Thread(target=ask, args=(n,), daemon=True) for n in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return results

    # -- the server's side ------------------------------------------------------------------

    def _pull(self, request: RequestThread, holding: int = 0) -> dict[str, Any] | None:
        """`next()` on the generator in the request's thread, bounded (tighter when the
        batch being filled holds `holding` tasks already); None when it is exhausted."""
        if self._blocked:
            raise StreamBlocked(f"{self.name}: the stream is still blocked in an earlier next()")
        self.pulls += 1
        if self.pulls > self.feed.max_pulls:
            raise StreamEndless(
                f"{self.name}: the stream did not end after {self.feed.max_pulls} pulls"
            )
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["task"] = next(self._stream)
            except StopIteration:
                box["task"] = None
            except BaseException as error:  # re-raised in the caller's thread
                box["error"] = error
            done.set()

        request.submit(run)
        bound = self.feed.pull_timeout if holding else self.feed.idle_timeout
        if not done.wait(bound):
            self._blocked = True
            raise StreamBlocked(
                f"{self.name}: next() on the stream blocked for more than "
                f"{bound:g}s after {len(self.served)} tasks were shown, with {holding} in the "
                "batch; "
                "a Prodigy server would hang here with the batch it holds undelivered"
            )
        if "error" in box:
            raise box["error"]
        task = box["task"]
        if task is not None:
            # When the generator handed it over: a batch is shown only once it is full.
            self._pulled_at[id(task)] = time.monotonic()
            if self.after_pull is not None:
                self.after_pull(task)
        return task

    def _excluded(self, task: dict[str, Any]) -> bool:
        """Prodigy's filters: hashes in the dataset, then hashes already pulled here."""
        name = self.feed.hash_field
        in_dataset = any(eg.get(name) == task[name] for eg in self.dataset_db)
        if self.feed.exclude_by is not None and in_dataset:
            return True
        if self.feed.dedupe:
            seen = task[name]
            if seen in self._pulled_hashes:
                return True
            self._pulled_hashes.add(seen)
        return False

    def _get_questions(self, session: Session) -> list[dict[str, Any]]:
        with self._lock, RequestThread(f"{self.name}-{session.name}") as request:
            batch: list[dict[str, Any]] = []
            while len(batch) < self.batch_size and not self.exhausted:
                task = self._pull(request, len(batch))
                if task is None:
                    self.exhausted = True
                elif not self._excluded(task):
                    batch.append(task)
            self._show(session, batch, "stream")
            if not batch and self.exhausted and self.feed.reload == "reoffer":
                batch = self._steal_for(session)
            return batch

    def _steal_for(self, session: Session) -> list[dict[str, Any]]:
        """>= 1.12 work stealing: an idle session takes other sessions' open tasks."""
        stolen: list[dict[str, Any]] = []
        for other in self._sessions.values():
            while other is not session and other.open and len(stolen) < self.batch_size:
                stolen.append(other.open.pop(0))
        self._show(session, stolen, "steal")
        return stolen

    def _reload(self, session: Session) -> list[dict[str, Any]]:
        with self._lock:
            if self.feed.reload == "reoffer" and session.open:
                again = list(session.open)
                self._record(session, again, "reoffer")
                return again
            session.open.clear()  # older versions forget the batch; nothing re-sends it
        return self._get_questions(session)

    def _show(self, session: Session, batch: list[dict[str, Any]], via: str) -> None:
        keys = keys_of(batch)
        assert len(keys) == len(set(keys)), f"a key twice in one batch: {keys}"
        session.open.extend(batch)
        self._record(session, batch, via)

    def _record(self, session: Session, batch: list[dict[str, Any]], via: str) -> None:
        now = time.monotonic()
        for task, key in zip(batch, keys_of(batch), strict=True):
            self.served.append(key)
            # A task from the stream is dated when the generator yielded it.
            at = self._pulled_at.pop(id(task), now) if via == "stream" else now
            self.shown.append(Shown(key, session.name, via, at))  # type: ignore[arg-type]

    def _give_answers(
        self, session: Session, batch: list[dict[str, Any]], answer: str, order: str | None
    ) -> list[dict[str, Any]]:
        answers = []
        for task in batch:
            example = copy.deepcopy(task)
            example["answer"] = answer
            example["_session_id"] = session.session_id
            example["_annotator_id"] = session.session_id
            answers.append(example)
        with self._lock:
            answered_keys = set(keys_of(batch))
            session.open[:] = [t for t in session.open if key_of(t) not in answered_keys]
        update = self.components.get("update")
        before_db = self.components.get("before_db")
        if (order or self.feed.order) == "update_first":
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
        """Session `alice` answers every batch until the stream ends; returns the keys."""
        alice = self.session("alice")
        done: list[str] = []
        for _ in range(max_batches):
            batch = alice.next_batch()
            if batch:
                alice.answer(batch, answer)
                done.extend(keys_of(batch))
            if self.exhausted and not batch:
                return done
        raise StreamEndless(f"{self.name}: the stream did not end within {max_batches} batches")
