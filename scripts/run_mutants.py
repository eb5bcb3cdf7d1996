"""Mutation testing of the pure modules against tests/unit (run it as `scripts/mutants`).

mutmut reads its settings from pyproject.toml only, and the list of pure modules is
computed (scripts/pure_modules.py), not written down; so the run happens in a scratch copy,
.mutmut/, whose pyproject.toml gets a [tool.mutmut] table naming them. The copy is kept
after the run: `cd .mutmut && ../.venv/bin/mutmut browse` (or `mutmut show NAME`) shows the
survivors.

Counts every mutant, the ones no test reaches too; exits 1 below the goal (90% killed).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pure_modules import ROOT, pure_paths

GOAL = 90.0
WORK = ROOT / ".mutmut"


def _config(paths: list[str]) -> str:
    listed = ", ".join(json.dumps(p) for p in paths)
    return f"""

[tool.mutmut]
source_paths = ["tracker"]
only_mutate = [{listed}]
pytest_add_cli_args_test_selection = ["tests/unit"]
also_copy = ["scripts"]  # tests/unit/test_doc_citations.py tests a script
# no slowest-tests report, no cache, no per-test timeout thread: one quiet run per mutant
pytest_add_cli_args = ["-q", "-p", "no:cacheprovider", "-o", "addopts=", "-p", "no:timeout"]
use_git_change_detection = false
"""


def _prepare(paths: list[str]) -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "tracker", WORK / "tracker", ignore=ignore)
    (WORK / "tests").mkdir()
    for name in ("__init__.py", "conftest.py"):
        shutil.copy2(ROOT / "tests" / name, WORK / "tests" / name)
    # conftest's imports (fixtures for the integration tests) must still resolve
    for helper in ROOT.glob("tests/*.py"):
        shutil.copy2(helper, WORK / "tests" / helper.name)
    shutil.copytree(ROOT / "tests" / "unit", WORK / "tests" / "unit", ignore=ignore)
    shutil.copytree(ROOT / "scripts", WORK / "scripts", ignore=ignore)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (WORK / "pyproject.toml").write_text(pyproject + _config(paths), encoding="utf-8")


def _pragma_budget(paths: list[str]) -> str | None:
    """Why the `# pragma: no mutate` lines are too many (one per 100 lines), or None."""
    lines = pragmas = 0
    for path in paths:
        text = (ROOT / path).read_text(encoding="utf-8").splitlines()
        lines += len(text)
        pragmas += sum("pragma: no mutate" in line for line in text)
    if pragmas > lines // 100:
        return (
            f"{pragmas} '# pragma: no mutate' lines in {lines} lines of pure code: "
            f"at most {lines // 100}"
        )
    return None


def main(argv: list[str]) -> int:
    paths = pure_paths()
    print(f"mutating {len(paths)} pure modules: {' '.join(Path(p).stem for p in paths)}")
    too_many = _pragma_budget(paths)
    if too_many:
        print(too_many, file=sys.stderr)
        return 1
    _prepare(paths)
    mutmut = Path(sys.executable).parent / "mutmut"
    started = time.monotonic()
    log = WORK / "run.log"
    with log.open("w") as out:  # mutmut's progress line redraws itself: a log, not a terminal
        run = subprocess.run([str(mutmut), "run", *argv], cwd=WORK, stdout=out, stderr=out)
    if run.returncode != 0:
        print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
        print(f"mutmut run failed (exit {run.returncode}); its output: {log}", file=sys.stderr)
        return 2
    subprocess.run(
        [str(mutmut), "export-cicd-stats"], cwd=WORK, check=True, stdout=subprocess.DEVNULL
    )
    stats = json.loads((WORK / "mutants" / "mutmut-cicd-stats.json").read_text())
    elapsed = time.monotonic() - started
    # CPU time says what a quiet 2-core machine would take, whatever else shares this one
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    total = stats["total"]
    killed = stats["killed"] + stats["timeout"]
    percent = 100.0 * killed / total if total else 100.0
    print(
        f"mutants: {killed}/{total} killed ({percent:.1f}%) in {elapsed:.0f} s "
        f"({cpu:.0f} s of CPU); "
        f"survived {stats['survived']}, no test {stats['no_tests']}, "
        f"suspicious {stats['suspicious']}, skipped {stats['skipped']}"
    )
    if argv:
        print("a partial run (mutants named): the goal is checked on a full run only")
        return 0
    if percent < GOAL:
        print(f"below the goal of {GOAL:.0f}% killed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
