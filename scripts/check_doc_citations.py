"""The docs cite only tests that exist.

README.md, CONTRIBUTING.md and docs/ back their promises with test names; a renamed or
never-written test leaves a promise with nothing behind it. This reads every citation:

- a test file path (`tests/integration/test_store.py`, `tests/faultproxy.py`): the file
  exists;
- `path::test_name`, and `::test_name` after it in the same table row or paragraph (the
  shorthand): the test is defined in that file;
- a bare `test_name`: some file under tests/ defines it, or names a module so.

    python scripts/check_doc_citations.py     # exit 1, one line per wrong citation
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PATH = re.compile(r"(?<![\w/.])tests/[\w/]*\w\.py")
# `path::name` or `::name`; a name cited alone, not part of a longer word or path
QUALIFIED = re.compile(r"(?:(?<![\w/.])(tests/[\w/]*\w\.py))?::(test_\w+)")
BARE = re.compile(r"(?<![\w/.:])test_\w+(?![\w/])")


def documents(root: Path = ROOT) -> list[Path]:
    found = [root / name for name in ("README.md", "CONTRIBUTING.md") if (root / name).exists()]
    if (root / "docs").is_dir():
        found += sorted(p for p in (root / "docs").rglob("*") if p.suffix in {".md", ".rst"})
    return found


def defined_tests(root: Path = ROOT) -> dict[str, set[str]]:
    """Test function names (any depth: classes too) by file, relative to `root`."""
    found: dict[str, set[str]] = {}
    for path in sorted((root / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found[path.relative_to(root).as_posix()] = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
        }
    return found


def wrong_citations(text: str, where: str, tests: dict[str, set[str]]) -> list[str]:
    """One line per citation in `text` (a document named `where`) of a test that is not."""
    every_test = set().union(*tests.values()) if tests else set()
    module_names = {Path(p).stem for p in tests}
    problems = []
    last_path: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        at = f"{where}:{number}"
        for path in PATH.findall(line):
            if path not in tests:
                problems.append(f"{at}: {path} does not exist")
        # The shorthand refers to the file last named in its table row or its paragraph.
        if not line.strip() or line.lstrip().startswith("|"):
            last_path = None
        for match in QUALIFIED.finditer(line):
            path, name = match.group(1), match.group(2)
            last_path = path or last_path
            if last_path is None:
                problems.append(f"{at}: ::{name} follows no test file")
            elif last_path in tests and name not in tests[last_path]:
                problems.append(f"{at}: {last_path} defines no {name}")
        for name in BARE.findall(line):
            if name not in every_test and name not in module_names:
                problems.append(f"{at}: no test is named {name}")
    return problems


def main() -> int:
    tests = defined_tests()
    problems = []
    for document in documents():
        where = document.relative_to(ROOT).as_posix()
        problems += wrong_citations(document.read_text(encoding="utf-8"), where, tests)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} citations of tests that do not exist", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
