"""Which listed objects become items: the KeyFilter rules, then the same rules end to end
through `tracker sync` on moto (which, unlike SeaweedFS, keeps `folder/` placeholders)."""

from __future__ import annotations

import pytest

from tests.cli_support import run_cli
from tests.integration.test_sync_cli import keys_in
from tracker.errors import UsageError
from tracker.filters import IMAGE_EXTENSIONS, KeyFilter, parse_extensions


@pytest.mark.parametrize(
    ("key", "size", "taken"),
    [
        ("a.jpg", 10, True),
        ("a.JPG", 10, True),
        ("deep/path/b.JpEg", 10, True),
        ("c.tiff", 10, True),
        ("d.TIF", 10, True),
        ("e.webp", None, True),  # size unknown: not a reason to skip
        ("folder/", 0, False),
        ("folder.jpg/", 10, False),  # a placeholder, whatever its name or size
        ("empty.jpg", 0, False),
        ("notes.txt", 10, False),
        ("archive.jpg.zip", 10, False),
        ("dir.jpg/file.txt", 10, False),  # the extension of a folder is not the file's
        ("noextension", 10, True),  # judged by its bytes when served
        ("cas/ab/0123456789abcdef", 10, True),
        ("dir.d/noextension", 10, True),  # a dot in a folder is not the file's extension
        ("photo.HEIC", 10, True),
        ("photo.heif", 10, True),
        ("photo.avif", 10, True),
        ("trailingdot.", 10, False),
        (".hidden", 10, False),
        ("noextension-but-empty", 0, False),
    ],
)
def test_default_filter_takes_image_extensions_and_keys_without_one(key, size, taken):
    assert KeyFilter().accepts(key, size) is taken


def test_explicit_extensions_replace_the_default_and_ignore_case():
    only = KeyFilter.build(["TXT", ".Json", " csv "])
    assert only.extensions == frozenset({"txt", "json", "csv"})
    assert only.accepts("a.txt", 1) and only.accepts("b.JSON", 1) and only.accepts("c.Csv", 1)
    assert not only.accepts("d.jpg", 1)
    assert not only.accepts("noextension", 1)  # the no-extension rule is the default's


def test_a_page_with_nothing_taken_is_described_in_one_line_with_counts():
    line = KeyFilter().nothing_taken("s3://b/p/", 1000)
    assert "\n" not in line and "1000 objects" in line and "0 the filter takes" in line
    assert "heic" in line and "keys without an extension" in line
    assert "--ext, --match or --all-objects" in line
    assert "'raw/*'" in KeyFilter.build(globs=["raw/*"]).nothing_taken("s3://b", 3)


def test_globs_alone_decide_and_star_crosses_slashes():
    globs = KeyFilter.build(globs=["raw/*.dng", "*/thumbs/?.png"])
    assert globs.extensions is None
    assert not globs.accepts("noextension", 1)
    assert globs.accepts("raw/2024/x.dng", 1)
    assert globs.accepts("a/b/thumbs/1.png", 1)
    assert not globs.accepts("raw/x.jpg", 1)  # the default extensions no longer apply
    assert not globs.accepts("raw/empty.dng", 0)


def test_globs_add_to_explicit_extensions():
    both = KeyFilter.build(["jpg"], ["raw/*"])
    assert both.accepts("a.jpg", 1) and both.accepts("raw/b.dng", 1)
    assert not both.accepts("c.png", 1)


def test_globs_are_case_sensitive_and_brackets_are_classes():
    globs = KeyFilter.build(globs=["[ab]*.JPG"])
    assert globs.accepts("a1.JPG", 1) and not globs.accepts("a1.jpg", 1)
    assert not globs.accepts("c1.JPG", 1)


def test_all_objects_takes_everything_but_placeholders_and_empty_objects():
    every = KeyFilter.build(["jpg"], ["x"], all_objects=True)
    assert every.accepts("notes.txt", 1) and every.accepts("noextension", 5)
    assert not every.accepts("folder/", 5) and not every.accepts("empty.bin", 0)


def test_default_extensions_are_the_documented_ones():
    documented = {"jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff", "heic", "heif"}
    assert frozenset(documented | {"avif"}) == IMAGE_EXTENSIONS


def test_ext_option_parsing():
    assert parse_extensions(()) is None
    assert parse_extensions(("jpg,png", ".TIF")) == ["jpg", "png", ".TIF"]
    with pytest.raises(UsageError):
        parse_extensions(("jpg,,png",))
    with pytest.raises(UsageError):
        parse_extensions((".",))


OBJECTS = {
    "folder/": b"",
    "folder-with-body/": b"not really a folder",
    "empty.jpg": b"",
    "a.JPG": b"1",
    "b.jpeg": b"1",
    "c.Png": b"1",
    "d.tiff": b"1",
    "e.txt": b"1",
    "g.jpg.txt": b"1",
    "h": b"1",
    "dir.jpg/i": b"1",
    "raw/f.dng": b"1",
}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ((), {"a.JPG", "b.jpeg", "c.Png", "d.tiff", "h", "dir.jpg/i"}),
        (("--ext", "txt"), {"e.txt", "g.jpg.txt"}),
        (("--ext", "JPG,png", "--ext", ".TIFF"), {"a.JPG", "c.Png", "d.tiff"}),
        (("--match", "raw/*"), {"raw/f.dng"}),
        (("--match", "*.dng", "--match", "h"), {"raw/f.dng", "h"}),
        (("--ext", "jpg", "--match", "raw/*.dng"), {"a.JPG", "raw/f.dng"}),
        (("--all-objects",), set(OBJECTS) - {"folder/", "folder-with-body/", "empty.jpg"}),
    ],
    ids=["default", "ext", "ext-any-case", "glob", "globs", "ext-and-glob", "all"],
)
def test_sync_filters_end_to_end(moto_filters, tmp_path, options, expected, capsys):
    """Proves the filters as a user meets them: placeholders (`/`, with or without a
    body), zero-byte objects, extensions in any case, globs, and --all-objects."""
    url = f"sqlite:///{tmp_path / 'filters.db'}"
    result = run_cli(capsys, "--db", url, "sync", "s3://filters", *options,
                     "--endpoint-url", moto_filters.endpoint_url)  # fmt: skip
    assert result.code == 0, result.err
    # A sync lists for every dataset: the keys it took are the source's objects.
    assert set(keys_in(url, "filters")) == expected


def test_all_objects_with_ext_is_a_usage_error(tmp_path, capsys, s3_env):
    url = f"sqlite:///{tmp_path / 'never.db'}"
    result = run_cli(capsys, "--db", url, "sync", "s3://bucket", "--all-objects", "--ext", "jpg")
    assert result.code == 2 and result.err.startswith("error: --all-objects")
    assert not (tmp_path / "never.db").exists()


@pytest.fixture(scope="module")
def moto_filters(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One moto server for the filter matrix (a bucket of OBJECTS)."""
    from tests.s3servers import MotoServer

    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    client = server.client()
    client.create_bucket(Bucket="filters")
    for key, body in OBJECTS.items():
        client.put_object(Bucket="filters", Key=key, Body=body)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _credentials(s3_env):  # type: ignore[no-untyped-def]
    """Every test here talks to S3 with the test credentials."""


def test_sync_reports_a_page_it_takes_nothing_from_in_one_line_with_counts(
    moto_filters, tmp_path, capsys
):
    url = f"sqlite:///{tmp_path / 'nothing.db'}"
    result = run_cli(capsys, "--db", url, "sync", "s3://filters", "--ext", "xyz",
                     "--endpoint-url", moto_filters.endpoint_url)  # fmt: skip
    assert result.code == 0, result.err
    lines = [line for line in result.err.splitlines() if "the filter takes" in line]
    assert len(lines) == 1
    assert f"a listed page of {len(OBJECTS)} objects had 0 the filter takes" in lines[0]
    assert "(extensions xyz)" in lines[0]
