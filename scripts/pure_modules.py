"""The pure modules: every tracker module that does no I/O, found from its imports.

`scripts/mutants` mutates these (and only these) against tests/unit. A module is pure when
neither it nor any tracker module it imports at run time imports an I/O library (see IO
below) or calls a built-in that does I/O. Imports under `if TYPE_CHECKING:` do not count:
they never run.

    python scripts/pure_modules.py          # their paths, one a line
    python scripts/pure_modules.py --why    # every tracker module, and why it is not pure
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Libraries that reach files, the network, processes, threads, the terminal or the clock.
# `logging` is not here: the pure modules only define filters; handlers are the CLI's.
IO = frozenset(
    {
        "alembic",
        "asyncio",
        "boto3",
        "botocore",
        "click",
        "concurrent",
        "glob",
        "importlib",
        "mmap",
        "multiprocessing",
        "mypy_boto3_s3",
        "os",
        "pathlib",
        "prodigy",
        "psycopg",
        "pyarrow",
        "queue",
        "rich",
        "select",
        "selectors",
        "shutil",
        "signal",
        "socket",
        "sqlalchemy",
        "sqlite3",
        "subprocess",
        "sys",
        "tempfile",
        "threading",
        "time",
        "urllib.request",
    }
)
# `io` only for its in-memory StringIO (csv reads from one).
IO_ALLOWED_ATTRS = {"io": frozenset({"StringIO"})}
IO_BUILTINS = frozenset({"open", "print", "input", "breakpoint", "exec", "eval"})


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, less the bodies of `if TYPE_CHECKING:` blocks."""
    found: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                todo.extend(child.orelse)  # type: ignore[attr-defined]
            else:
                todo.append(child)
    return found


def _is_io(module: str) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:n]) in IO for n in range(1, len(parts) + 1))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def direct_problems(path: Path) -> tuple[list[str], set[str]]:
    """(why `path` itself is not pure, the tracker modules it imports at run time)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    problems: list[str] = []
    tracker_imports: set[str] = set()
    aliases: dict[str, str] = {}
    for node in _runtime_nodes(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            for alias in node.names:
                modules.append(alias.name)
                aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
            if node.module in IO_ALLOWED_ATTRS:
                bad = [a.name for a in node.names if a.name not in IO_ALLOWED_ATTRS[node.module]]
                if bad:
                    problems.append(f"imports {node.module}.{', '.join(bad)}")
                continue
            if node.module.startswith("tracker"):
                # `from tracker import x` may name a module
                tracker_imports.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in IO_BUILTINS:
                problems.append(f"calls {node.func.id}()")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and aliases.get(node.value.id) in IO_ALLOWED_ATTRS
            and node.attr not in IO_ALLOWED_ATTRS[aliases[node.value.id]]
        ):
            problems.append(f"uses {aliases[node.value.id]}.{node.attr}")
        for module in modules:
            if module.startswith("tracker"):
                tracker_imports.add(module)
            elif _is_io(module):
                problems.append(f"imports {module}")
    return sorted(set(problems)), tracker_imports


def classify() -> dict[str, tuple[Path, list[str]]]:
    """Every tracker module by name: (its path, why it is not pure; empty when it is)."""
    paths = {module_name(p): p for p in sorted((ROOT / "tracker").rglob("*.py"))}
    direct = {name: direct_problems(path) for name, path in paths.items()}
    why: dict[str, list[str]] = {name: list(found[0]) for name, found in direct.items()}
    changed = True
    while changed:  # an impure import makes its importer impure, to a fixed point
        changed = False
        for name, (_, imports) in direct.items():
            for imported in sorted(imports & paths.keys()):
                reason = f"imports {imported}, which is not pure"
                if why[imported] and reason not in why[name]:
                    why[name].append(reason)
                    changed = True
    return {name: (paths[name], why[name]) for name in paths}


def _defines_functions(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) for n in ast.walk(tree))


def pure_paths() -> list[str]:
    return [
        str(path.relative_to(ROOT))
        for path, why in classify().values()
        # mutmut mutates functions only: a module without one has nothing to mutate
        if not why and _defines_functions(path)
    ]


def main(argv: list[str]) -> int:
    if "--why" in argv:
        for name, (_, why) in sorted(classify().items()):
            print(f"{name}: {'pure' if not why else '; '.join(why)}")
        return 0
    print("\n".join(pure_paths()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
