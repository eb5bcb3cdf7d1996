"""Start-up time of the `tracker` command: whole processes, as a shell runs them.

Beside each figure, `python -c pass` measured in the same run: the interpreter's own start,
which no command can beat, so that the ratio holds on a busy machine.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.report import Table, median, timed
from bench.scale import record_all
from tracker.store import Store

#: The console script pip installed beside this interpreter.
TRACKER = str(Path(sys.executable).with_name("tracker"))


def run_median(command: Sequence[str], runs: int) -> float:
    """Median wall-clock seconds of `runs` runs of `command` (one warm-up run first)."""

    def once() -> None:
        subprocess.run(command, check=True, capture_output=True, timeout=600)

    once()
    return median([timed(once)[0] for _ in range(runs)])


def _db(path: Path, keys: int) -> str:
    url = f"sqlite:///{path}"
    with Store.open(url) as store:
        record_all(store, keys)
        store.dataset(store.source("bench-bucket", "", create=True), "bench", create=True)
    return url


def run(big_keys: int, runs: int = 11) -> Table:
    table = Table(
        f"Start-up: whole `tracker` processes (median of {runs} runs after a warm-up)",
        ["command", "median", "x `python -c pass`", "target"],
    )
    with tempfile.TemporaryDirectory(prefix="tracker-bench-") as tmp:
        small = _db(Path(tmp) / "small.db", 1_000)
        big = _db(Path(tmp) / "big.db", big_keys)
        floor = run_median([sys.executable, "-c", "pass"], runs)
        table.add("`python -c pass`", f"{floor * 1000:.0f} ms", "1.0", "")
        for label, command, target in [
            ("`tracker --help`", [TRACKER, "--help"], "<= 250 ms"),
            ("`tracker --version`", [TRACKER, "--version"], ""),
            ("`tracker status`, 1,000 keys", [TRACKER, "--db", small, "status"], ""),
            (
                f"`tracker status`, {big_keys:,} keys",
                [TRACKER, "--db", big, "status"],
                "<= 600 ms at 10M (needs the counters)",
            ),
        ]:
            seconds = run_median(command, runs)
            table.add(label, f"{seconds * 1000:.0f} ms", f"{seconds / floor:.1f}", target)
    table.notes.append(
        "`--help`/`--version` import neither SQLAlchemy, Alembic, boto3 nor rich; `status` "
        "imports SQLAlchemy and rich but not boto3 or Alembic "
        "(tests/integration/test_cli_startup.py)."
    )
    return table
