"""Registration with Prodigy, the command line, options, and the pieces without S3."""

from __future__ import annotations

import argparse
import inspect
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.prodigy_harness import ROOT, load_recipes, parse_command, use_fake_prodigy
from tracker import recipe as recipe_module
from tracker.errors import UsageError
from tracker.filters import KeyFilter
from tracker.images import choose_mime, sniff_mime
from tracker.recipe import RECIPE_ARGS, build_components, check_feed_overlap
from tracker.tasks import (
    AnswerError,
    build_task,
    input_hash,
    key_from_example,
    parse_labels,
    stable_hash,
    strip_image,
)


def test_both_names_are_registered_with_plac_annotations() -> None:
    registered = load_recipes()
    assert set(registered) == {"stream_from_s3", "stream-from-s3"}
    for func, annotated in registered.values():
        assert annotated == RECIPE_ARGS
        parameters = inspect.signature(func).parameters
        assert list(parameters) == list(RECIPE_ARGS)
        for name, (help_text, kind, _shortcut, type_) in annotated.items():
            assert help_text and kind in {"positional", "option", "flag"} and callable(type_)
            if kind == "positional" and name != "prefix":
                assert parameters[name].default is inspect.Parameter.empty
    assert registered["stream_from_s3"][0] is not registered["stream-from-s3"][0]
    assert recipe_module.stream_from_s3.__annotations__ != RECIPE_ARGS  # our copy untouched


def test_the_recipe_file_imports_only_recipe_from_prodigy() -> None:
    import ast

    tree = ast.parse((ROOT / "recipes" / "s3_loader.py").read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "prodigy"
    }
    assert used == {"recipe"}
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert "prodigy" in imported and not any(n.startswith("prodigy.") for n in imported)


def test_the_seed_command_line_parses_to_the_call_prodigy_makes() -> None:
    func, annotations = load_recipes()["stream_from_s3"]
    argv = ["my_set", "my-bucket", "images"]
    assert parse_command(func, annotations, argv) == {
        "dataset": "my_set",
        "bucket": "my-bucket",
        "prefix": "images",
        "view_id": None,
        "label": None,
        "state_db": None,
        "lease": "30m",
        "presign": None,
        "endpoint_url": None,
        "owner": None,
        "max_attempts": 3,  # replaces `resend_after`: serves of a key without an answer
        "batch_size": 10,
        "ext": None,
        "match": None,
        "all_objects": False,
        "order": None,
        "seed": None,
    }
    every = [
        "ds",
        "bkt",
        "--view-id",
        "classification",
        "-l",
        "DOG",
        "--state-db",
        "sqlite:///x.db",
        "--lease",
        "90s",
        "--presign",
        "1h",
        "--endpoint-url",
        "http://127.0.0.1:9",
        "--owner",
        "me",
        "--max-attempts",
        "5",
        "--batch-size",
        "5",
        "--ext",
        "jpg,heic",
        "--match",
        "raw/*",
        "--all-objects",
    ]
    parsed = parse_command(func, annotations, every)
    assert (parsed["ext"], parsed["match"], parsed["all_objects"]) == ("jpg,heic", "raw/*", True)
    assert parsed["prefix"] is None and parsed["label"] == "DOG" and parsed["batch_size"] == 5
    assert parsed["lease"] == "90s" and parsed["presign"] == "1h" and parsed["owner"] == "me"
    assert parsed["max_attempts"] == 5
    assert "resend_after" not in parsed  # a live lease is never re-sent: no such option
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        parse_command(func, annotations, ["ds", "bkt", "--resend-after", "2m"])


def test_the_entry_point_loads_the_recipe_file(monkeypatch) -> None:
    use_fake_prodigy()
    monkeypatch.delitem(sys.modules, "tracker._s3_loader", raising=False)
    monkeypatch.delitem(sys.modules, "tracker.prodigy_recipe", raising=False)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = pyproject["project"]["entry-points"]["prodigy_recipes"]["stream_from_s3"]
    assert target == "tracker.prodigy_recipe:stream_from_s3"
    module_name, _, attribute = target.partition(":")
    module = __import__(module_name, fromlist=[attribute])
    assert callable(getattr(module, attribute))
    import prodigy

    assert set(prodigy.RECIPES) == {"stream_from_s3", "stream-from-s3"}
    assert module.recipe_file() == ROOT / "recipes" / "s3_loader.py"


@pytest.mark.slow
def test_a_wheel_carries_the_recipe_file_and_the_entry_point(tmp_path) -> None:
    import zipfile

    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"),
    )
    assert result.returncode == 0, f"cannot build a wheel: {result.stderr.strip()[-300:]}"
    wheel = next(tmp_path.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "tracker/_recipes/s3_loader.py" in names
        assert (
            archive.read("tracker/_recipes/s3_loader.py")
            == (ROOT / "recipes" / "s3_loader.py").read_bytes()
        )
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt")))
    assert b"stream_from_s3 = tracker.prodigy_recipe:stream_from_s3" in entry_points


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"view_id": "ner_manual", "label": "A"}, "unknown --view-id"),
        ({"view_id": "image_manual", "label": None}, "needs at least one --label"),
        ({"label": "A", "ext": "jpg", "all_objects": True}, "--all-objects takes every"),
        ({"label": "A", "ext": "jpg,,png"}, "empty extension"),
        ({"view_id": "classification", "label": "A,B"}, "takes one --label"),
        ({"label": "A", "lease": "soon"}, "not a duration"),
        ({"label": "A", "presign": "30d"}, "at most 7d"),
        ({"label": "A", "state_db": "nonsense://"}, "database URL"),
    ],
)
def test_bad_options_end_with_one_line_and_an_exit_code(
    kwargs, message, capsys, sqlite_url, s3_env
) -> None:
    kwargs.setdefault("state_db", sqlite_url)
    func, _ = load_recipes()["stream_from_s3"]
    with pytest.raises(SystemExit) as exited:
        func("ds", "some-bucket", **kwargs)
    assert exited.value.code in (2, 4)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_build_components_returns_every_component(sqlite_url, s3_env) -> None:
    parts = build_components(
        "ds", "some-bucket", "img/", label="A, B,A", state_db=sqlite_url, batch_size=7
    )
    try:
        assert set(parts) == {
            "dataset",
            "view_id",
            "stream",
            "update",
            "before_db",
            "on_load",
            "on_exit",
            "config",
        }
        assert parts["config"] == {"batch_size": 7, "labels": ["A", "B"], "feed_overlap": False}
        stream = parts["update"].__self__
        assert stream.owner.startswith("ds@") and stream.source.prefix == "img/"
    finally:
        parts["on_exit"](None)


def test_hashes_are_stable_signed_32_bit_and_not_pythons_hash() -> None:
    value = stable_hash("s3://bucket/key.png")
    assert -(2**31) <= value < 2**31
    script = "from tracker.tasks import stable_hash; print(stable_hash('s3://bucket/key.png'))"
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONHASHSEED=seed),
            cwd=ROOT,
            check=True,
        ).stdout
        assert int(out) == value
    assert input_hash("b", "k") != input_hash("b", "k2") != input_hash("b2", "k")
    odd = build_task("b", "a\nb [red]x[/red] ü.png", "data:image/png;base64,AA==")
    assert -(2**31) <= odd["_task_hash"] < 2**31


def test_before_db_replaces_images_with_the_s3_uri_and_keeps_meta() -> None:
    task = build_task("b", "dir/k.png", "data:image/png;base64,AAAA", size=4)
    assert strip_image(dict(task))["image"] == "s3://b/dir/k.png"
    assert strip_image(dict(task))["meta"]["key"] == "dir/k.png"
    assert "image" not in strip_image({"image": "data:image/png;base64,AA"})
    assert strip_image({"image": "https://x/y"}) == {"image": "https://x/y"}


@pytest.mark.parametrize(
    ("example", "key"),
    [
        ({"meta": {"key": "a/b.png"}, "image": "data:..."}, "a/b.png"),
        ({"image": "a/b.png"}, "a/b.png"),  # what the seed's recipe stored
        ({"image": "s3://b/a/b.png"}, "a/b.png"),
    ],
)
def test_keys_come_from_meta_or_image(example, key) -> None:
    assert key_from_example(example, "b") == key


@pytest.mark.parametrize(
    "example",
    [
        {"image": "data:image/png;base64,AA"},
        {"image": "https://b.s3.amazonaws.com/k?X-Amz-Signature=1"},
        {"image": "s3://other/k.png"},
        {"meta": {"bucket": "other", "key": "k"}},
        {"text": "no image"},
    ],
)
def test_answers_that_name_no_key_of_the_bucket_are_refused(example) -> None:
    with pytest.raises(AnswerError):
        key_from_example(example, "b")


def test_mime_types_come_from_the_bytes_then_the_content_type() -> None:
    assert sniff_mime(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff_mime(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert choose_mime("application/octet-stream", b"\x89PNG\r\n\x1a\n") == "image/png"
    assert choose_mime("image/jpg", b"????") == "image/jpeg"
    assert choose_mime("text/plain", b"hello") is None
    assert choose_mime(None, b"") is None


def test_labels_parse_from_comma_lists_and_sequences() -> None:
    assert parse_labels("A, B,,A") == ["A", "B"]
    assert parse_labels(["A,B", "C"]) == ["A", "B", "C"]
    assert parse_labels(None) == []


def test_the_fake_prodigy_is_only_on_the_path_in_tests() -> None:
    assert not (ROOT / "tracker" / "prodigy").exists()
    assert Path(use_fake_prodigy().__file__).parent.parent.name == "fake_prodigy"


def test_the_seeds_exact_command_line_starts_with_the_image_view_and_one_line_saying_so(
    monkeypatch, capsys, sqlite_url, s3_env
) -> None:
    """`prodigy stream_from_s3 DATASET BUCKET PREFIX -F recipes/s3_loader.py`, no --label."""
    monkeypatch.setenv("TRACKER_DB_URL", sqlite_url)
    func, annotations = load_recipes()["stream_from_s3"]
    parts = func(**parse_command(func, annotations, ["my_set", "my-bucket", "images"]))
    try:
        assert parts["view_id"] == "image" and "labels" not in parts["config"]
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 2  # the view chosen, then the usual startup line
        assert "no --label given: using the 'image' view" in lines[0]
        # The dataset the recipe annotates, over the source's normalised prefix.
        assert lines[1].startswith("stream_from_s3: my_set on s3://my-bucket/images/ ")
    finally:
        parts["update"].__self__.close()


def test_labels_without_a_view_id_mean_image_manual_and_say_nothing_more(
    capsys, sqlite_url, s3_env
) -> None:
    func, _ = load_recipes()["stream_from_s3"]
    parts = func("ds", "some-bucket", label="CAT", state_db=sqlite_url)
    try:
        assert parts["view_id"] == "image_manual" and parts["config"]["labels"] == ["CAT"]
        assert len(capsys.readouterr().err.splitlines()) == 1
    finally:
        parts["update"].__self__.close()


def test_recipe_filter_options_reach_the_stream_with_syncs_rules(sqlite_url, s3_env) -> None:
    cases = [
        ({}, KeyFilter()),
        ({"ext": "JPG, .heic"}, KeyFilter(frozenset({"jpg", "heic"}), (), no_extension=False)),
        ({"match": "raw/*"}, KeyFilter(None, ("raw/*",), no_extension=False)),
        ({"all_objects": True}, KeyFilter.build(all_objects=True)),
    ]
    for options, expected in cases:
        parts = build_components("ds", "some-bucket", state_db=sqlite_url, **options)
        try:
            assert parts["update"].__self__.key_filter == expected, options
        finally:
            parts["update"].__self__.close()


@pytest.mark.parametrize(
    "ctrl",
    [
        None,
        SimpleNamespace(),  # a Controller without `config`
        SimpleNamespace(config={}),
        SimpleNamespace(config={"feed_overlap": False}),
        SimpleNamespace(config=SimpleNamespace(feed_overlap=False)),
    ],
)
def test_on_load_accepts_configs_without_feed_overlap(ctrl, sqlite_url, s3_env) -> None:
    func, _ = load_recipes()["stream_from_s3"]
    parts = func("ds", "some-bucket", state_db=sqlite_url)
    try:
        parts["on_load"](ctrl)
    finally:
        parts["update"].__self__.close()


def test_feed_overlap_true_in_prodigys_config_is_refused_in_one_line(
    capsys, sqlite_url, s3_env
) -> None:
    func, _ = load_recipes()["stream_from_s3"]
    parts = func("ds", "some-bucket", state_db=sqlite_url)
    assert parts["config"]["feed_overlap"] is False
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        parts["on_load"](SimpleNamespace(config={"feed_overlap": True, "batch_size": 10}))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: feed_overlap is true") and err.count("\n") == 1
    with pytest.raises(UsageError, match="feed_overlap"):
        check_feed_overlap(SimpleNamespace(config=SimpleNamespace(feed_overlap=True)))
