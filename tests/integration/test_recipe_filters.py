"""What the recipe takes from a bucket and what stops it, through the Prodigy harness
against moto's server (behind the fault proxy where S3 has to refuse something).

- the default filter serves HEIC/AVIF and sniffs keys without an extension: image bytes
  are served with their real type, other bytes are marked failed "not an image";
- `--ext` / `--match` / `--all-objects` decide as in `tracker sync`;
- a listed page the filter takes nothing from is one log line with counts;
- AccessDenied / KMS errors on GET stop the stream with one line, no key failed.
"""

from __future__ import annotations

import logging

import pytest

from tests.faultproxy import FaultProxy
from tests.images_fixtures import PNG_MAGIC, image_bytes
from tests.prodigy_harness import App, load_recipes
from tracker.models import ItemState
from tracker.store import Store

HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 16
AVIF = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1" + b"\x00" * 16


@pytest.fixture
def moto(moto_server, s3_env):  # type: ignore[no-untyped-def]
    return moto_server


def fill(server, bucket: str, objects: dict[str, bytes]) -> None:  # type: ignore[no-untyped-def]
    client = server.client()
    client.create_bucket(Bucket=bucket)
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)


def start(endpoint_url: str, db_url: str, bucket: str, **options) -> App:  # type: ignore[no-untyped-def]
    recipe, _ = load_recipes()["stream_from_s3"]
    options.setdefault("label", "CAT")
    return App(recipe("ds", bucket, state_db=db_url, endpoint_url=endpoint_url, **options))


def states(db_url: str, bucket: str) -> dict[str, tuple[ItemState, str | None]]:
    with Store.open(db_url) as store:
        rows = store.iter_items(store.dataset(store.source(bucket), "ds"))
        return {r.key: (r.state, r.failure_reason) for r in rows}


def test_default_serves_heic_avif_and_sniffs_keys_without_an_extension(moto, db_url) -> None:
    fill(
        moto,
        "mixed",
        {
            "cas/3f/3fa9c0d1e2": image_bytes("cas.png"),  # content-addressed, a PNG
            "cas/77/77b0aa12ff": b"%PDF-1.7 not an image at all" + b"\x00" * 40,
            "phone/IMG_0001.HEIC": HEIC,
            "phone/IMG_0002.avif": AVIF,
            "notes.txt": b"not listed as an item",
        },
    )
    app = start(moto.endpoint_url, db_url, "mixed")
    try:
        served = {t["meta"]["key"]: t["image"] for t in app.next_batch()}
    finally:
        app.exit()
    assert served["cas/3f/3fa9c0d1e2"].startswith("data:image/png;base64,")
    assert served["phone/IMG_0001.HEIC"].startswith("data:image/heic;base64,")
    assert served["phone/IMG_0002.avif"].startswith("data:image/avif;base64,")
    assert set(served) == {"cas/3f/3fa9c0d1e2", "phone/IMG_0001.HEIC", "phone/IMG_0002.avif"}
    after = states(db_url, "mixed")
    assert "notes.txt" not in after
    state, reason = after["cas/77/77b0aa12ff"]
    assert state is ItemState.FAILED and reason is not None and reason.startswith("not an image")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"ext": "txt,png"}, {"a.png", "notes.txt"}),
        ({"match": "raw/*"}, {"raw/x.dng"}),
        ({"all_objects": True}, {"a.png", "notes.txt", "raw/x.dng", "noext"}),
    ],
    ids=["ext", "match", "all-objects"],
)
def test_filter_options_decide_which_keys_become_items(moto, sqlite_url, options, expected):
    fill(
        moto,
        "opts",
        {"a.png": PNG_MAGIC, "notes.txt": b"t", "raw/x.dng": b"d", "noext": PNG_MAGIC},
    )
    app = start(moto.endpoint_url, sqlite_url, "opts", **options)
    try:
        app.next_batch()
    finally:
        app.exit()
    assert set(states(sqlite_url, "opts")) == expected


def test_a_page_the_filter_takes_nothing_from_is_one_log_line_with_counts(
    moto, sqlite_url, caplog
) -> None:
    fill(moto, "docs", {f"doc{i}.pdf": b"%PDF" for i in range(7)})
    caplog.set_level(logging.INFO)
    app = start(moto.endpoint_url, sqlite_url, "docs")
    try:
        assert app.next_batch() == [] and app.exhausted
    finally:
        app.exit()
    lines = [r.getMessage() for r in caplog.records if "the filter takes" in r.getMessage()]
    assert len(lines) == 1
    assert "a listed page of 7 objects had 0 the filter takes" in lines[0]
    assert "--ext, --match or --all-objects" in lines[0]


@pytest.mark.parametrize(
    ("code", "status"),
    [("AccessDenied", 403), ("KMS.DisabledException", 400), ("KMS.NotFoundException", 400)],
)
def test_access_denied_or_kms_on_get_stops_the_stream_in_one_line_and_fails_no_key(
    moto, db_url, capsys, code, status
) -> None:
    keys = [f"k{i}.png" for i in range(6)]
    fill(moto, "locked", {k: image_bytes(k) for k in keys})
    with FaultProxy(moto.endpoint_url) as proxy:
        proxy.fail_gets(1000, code, status)
        app = start(proxy.endpoint_url, db_url, "locked")
        capsys.readouterr()
        try:
            assert app.next_batch() == [] and app.exhausted
        finally:
            app.exit()
        gets = [r for r in proxy.requests if r.fault == "error"]
    assert len(gets) == 1  # one refused GET is enough: not one per key
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "s3://locked/k0.png" in err and "no key was marked failed" in err
    assert "the stream stopped" in err
    assert {state for state, _ in states(db_url, "locked").values()} == {ItemState.PENDING}


def test_a_vanished_key_is_still_failed_alone_and_the_stream_goes_on(moto, sqlite_url) -> None:
    keys = [f"v{i}.png" for i in range(3)]
    fill(moto, "vanish", {k: image_bytes(k) for k in keys})
    with FaultProxy(moto.endpoint_url) as proxy:
        proxy.fail_gets(1, "NoSuchKey", 404)
        app = start(proxy.endpoint_url, sqlite_url, "vanish")
        try:
            served = [t["meta"]["key"] for t in app.next_batch()]
        finally:
            app.exit()
    assert served == keys[1:]
    assert states(sqlite_url, "vanish")["v0.png"][0] is ItemState.FAILED
