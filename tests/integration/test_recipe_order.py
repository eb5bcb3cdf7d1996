"""`--order` and `--seed` through the recipe's components, played by the Prodigy harness
against moto's server: the recipe lists the bucket as it goes and serves in the order
asked, reproducibly;
priorities set with `tracker priority` before listing apply to the keys once listed; the
annotator table names the session and the recipe's owner."""

from __future__ import annotations

import pytest

from tests.cli_support import run
from tests.images_fixtures import PNG_MAGIC
from tests.prodigy_harness import App
from tracker.errors import UsageError
from tracker.recipe import build_components

KEYS = sorted(f"{cam}/{i:02}.png" for cam in ("cam1", "cam2") for i in range(12))


@pytest.fixture
def bucket(moto_server, s3_env):  # type: ignore[no-untyped-def]
    client = moto_server.client()
    client.create_bucket(Bucket="shots")
    for key in KEYS:
        client.put_object(Bucket="shots", Key=key, Body=PNG_MAGIC)
    return moto_server.endpoint_url


def annotate(endpoint: str, db_url: str, dataset: str, **options) -> list[str]:  # type: ignore[no-untyped-def]
    app = App(build_components(dataset, "shots", state_db=db_url, endpoint_url=endpoint, **options))
    try:
        return app.annotate_all()
    finally:
        app.exit()


def test_random_order_through_the_recipe_is_reproducible_and_not_listing_order(
    bucket, db_url, tmp_path
):
    # Pages of 10: the stream ranks each page as it lists it, random among the keys listed
    # so far; the same seed over the same listing (here a new state DB) repeats the order.
    first = annotate(bucket, db_url, "a", order="random", seed=5, page_size=10)
    again_db = f"sqlite:///{tmp_path / 'again.db'}"
    again = annotate(bucket, again_db, "a", order="random", seed=5, page_size=10)
    assert first == again and sorted(first) == KEYS and first != KEYS
    other = annotate(bucket, again_db, "b", order="random", seed=6)
    assert sorted(other) == KEYS and other != first


def test_by_prefix_through_the_recipe_alternates_cameras(bucket, sqlite_url):
    served = annotate(bucket, sqlite_url, "a", order="by-prefix", seed=1)
    cams = [key.split("/")[0] for key in served]
    assert all(cams[i] != cams[i + 1] for i in range(len(cams) - 1)), cams


def test_priorities_set_before_listing_lead_the_recipe_and_the_session_is_reported(
    bucket, db_url, tmp_path
):
    path = tmp_path / "p.csv"
    path.write_text("key,priority\ncam2/11.png,0.9\ncam1/05.png,0.9\ncam2/00.png,0.2\n")
    assert run(db_url, "priority", "s3://shots", str(path)).exit_code == 0
    served = annotate(bucket, db_url, "ds", order="priority")
    assert served[:3] == ["cam1/05.png", "cam2/11.png", "cam2/00.png"]  # a tie: listing order
    assert served[3:] == [k for k in KEYS if k not in served[:3]]
    report = run(db_url, "status", "--json").stdout
    assert '"session": "ds-alice"' in report and '"answered": 24' in report
    assert '"owner": "ds@' in report  # the recipe's default owner: DATASET@HOST:PORT


def test_an_unknown_order_is_refused_before_anything_is_served(bucket, sqlite_url):
    with pytest.raises(UsageError, match="unknown order 'newest'"):
        build_components("ds", "shots", state_db=sqlite_url, endpoint_url=bucket, order="newest")
