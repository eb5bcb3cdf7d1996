"""A recipe process for the multi-process tests: `python -m tests.recipe_worker CONFIG_JSON`.

Runs the registered recipe through the harness and prints one JSON line per batch
(`{"batch": [keys]}`), flushed, so the test sees what was served before it kills us.
Modes: `annotate` answers every batch until the stream ends; `hold` takes `batches`
batches, prints `{"holding": true}` and sleeps until killed.
"""

from __future__ import annotations

import json
import sys
import time

from tests.prodigy_harness import App, load_recipes


def main() -> None:
    config = json.loads(sys.argv[1])
    recipe, _ = load_recipes()["stream_from_s3"]
    app = App(
        recipe(
            config.get("dataset", "ds"),
            config["bucket"],
            config.get("prefix"),
            label="CAT",
            state_db=config["state_db"],
            endpoint_url=config["endpoint_url"],
            owner=config["owner"],
            lease=config.get("lease", "1h"),
        )
    )
    if config["mode"] == "hold":
        for _ in range(config["batches"]):
            keys = [t["meta"]["key"] for t in app.next_batch()]
            print(json.dumps({"batch": keys}), flush=True)
        print(json.dumps({"holding": True}), flush=True)
        while True:
            time.sleep(60)
    while not app.exhausted:
        batch = app.next_batch()
        print(json.dumps({"batch": [t["meta"]["key"] for t in batch]}), flush=True)
        time.sleep(config.get("think", 0.0))
        app.answer(batch, session=config["owner"])
    app.exit()
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main()
