"""The shell examples of the docs (README.md, docs/*.md) run as written.

Every ```bash block either runs here or says in its first line why not: `# needs real AWS
...` (a bucket of your own, an SQS queue, S3 Inventory, a Prodigy licence) or `# not run by
the docs tests: ...` (installs, servers until Ctrl-C, the suite, benchmarks). The README's
two commands are what CI runs (`.ci/run`; the demo: tests/integration/test_cli_demo.py).

So does every line of each command's `Example:` (the docs' command-line reference is
generated from the same help), unless it ends with `# needs real AWS`, `# needs Prodigy` or
`# until Ctrl-C`, names an AWS host, or runs the demo (tests/integration/test_cli_demo.py).

The lines of an example are alternatives ("first run, or continue"), not one script, so
each line is one case, run by bash (a plain `tracker ...` line in-process, as click runs it)
in its own copy of one sandbox: a moto server holding `my-bucket` (images under `images/`),
an S3 Inventory report of it in `my-inventories` and an SQS queue (`$QUEUE_URL`); a SQLite
state DB (`TRACKER_DB_URL=sqlite:///state.db`, in the working directory) where `tracker
sync` listed the bucket and the dataset `cats` holds two imported answers; and the files
the examples name (`uncertainty.csv`, `scored.jsonl`, `cats.jsonl`, `alembic.ini`). The
docs' PostgreSQL URL and local endpoint stand for the test's own (`PG_IN_DOCS`,
`ENDPOINT_IN_DOCS`). A line passes when it exits 0 with no `error:` line and no traceback.

Seen failing on the docs as first moved from the README, and on `tracker sync --help` and
`tracker watch --help`: `tracker sync s3://my-bucket --max-pages 10` beside
`s3://my-bucket/images/` (overlapping sources are refused); and on `tracker requeue --key
...` without `--yes` (no terminal to confirm at: exit 2).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from tests.inventory_support import Row, upload_inventory
from tests.s3servers import MotoServer
from tracker.cli import cli
from tracker.locals3 import ACCESS_KEY, SECRET_KEY

# One worker runs them all, on one sandbox (its moto server and seeded state DB).
pytestmark = pytest.mark.xdist_group("docs_examples")

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKERS = ("# needs real AWS", "# not run by the docs tests: ")
#: The README's set-up and test commands: `.ci/run` runs both (the set-up without the demo,
#: which tests/integration/test_cli_demo.py runs).
CI_COMMANDS = {
    "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/tracker demo",
    ".venv/bin/python -m pytest",
}
PG_IN_DOCS = "postgresql://annotate@db/tracker"
ENDPOINT_IN_DOCS = "http://127.0.0.1:8333"


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence
    text: str

    @property
    def marker(self) -> str | None:
        first = self.text.splitlines()[0] if self.text else ""
        return next((marker for marker in MARKERS if first.startswith(marker)), None)


def shell_blocks() -> list[Block]:
    blocks = []
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(r"^```(?:bash|sh|shell|console)\n(.*?)^```", text, re.M | re.S):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append(Block(str(page.relative_to(ROOT)), line, match.group(1)))
    return blocks


def commands(block: Block) -> list[str]:
    """The block's command lines, continuations joined, comment-only lines left out."""
    joined = block.text.replace("\\\n", " ")
    return [
        line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


#: What a line of a command's `Example:` says in a trailing comment when it cannot run here.
HELP_MARKERS = ("# needs real AWS", "# needs Prodigy", "# until Ctrl-C")


def help_examples() -> list[tuple[str, str]]:
    """(`tracker ... --help`, line) for each line of every command's `Example:` section:
    the docs' command-line reference shows them (generated from the commands)."""

    def helps(group, path):
        yield path, CliRunner().invoke(cli, [*path, "--help"], terminal_width=1000).output
        for name, command in sorted(getattr(group, "commands", {}).items()):
            yield from helps(command, [*path, name])

    found = []
    for path, text in helps(cli, []):
        section = re.search(r"\n *Examples?:\n(.*?)(?:\n\n|\Z)", text, re.S)
        assert section, f"tracker {' '.join(path)} --help has no Example: section"
        for line in section.group(1).splitlines():
            found.append((" ".join(["tracker", *path, "--help"]), line.strip()))
    return found


def runs_here(line: str) -> bool:
    """A help example that needs nothing but the sandbox: not marked, names no AWS host, and
    not the demo (tests/integration/test_cli_demo.py runs it; it takes a minute here)."""
    return not (
        any(marker in line for marker in HELP_MARKERS)
        or "amazonaws.com" in line
        or line.startswith("tracker demo")
    )


def runnable() -> list[pytest.param]:
    cases = []
    for block in shell_blocks():
        if block.marker or block.text.strip() in CI_COMMANDS:
            continue
        for number, command in enumerate(commands(block), 1):
            cases.append(pytest.param(command, id=f"{block.page}:{block.line}:{number}"))
    for number, (where, line) in enumerate(help_examples(), 1):
        if runs_here(line):
            cases.append(pytest.param(line, id=f"{where}:{number}"))
    # A line shown in two places (a page and a --help) runs once.
    unique: dict[str, pytest.param] = {}
    for case in cases:
        unique.setdefault(case.values[0], case)
    return list(unique.values())


def test_every_shell_example_runs_here_or_says_why_not():
    blocks = shell_blocks()
    assert len(blocks) > 30  # the parser found the docs' examples
    # The README's two commands are the ones CI runs (else CI_COMMANDS and .ci/run must follow).
    readme = (ROOT / "README.md").read_text()
    assert all(f"```bash\n{command}\n```" in readme for command in CI_COMMANDS), CI_COMMANDS
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q -e '.[dev]'" in ci_run, ".ci/run no longer runs the README's set-up"
    assert ".venv/bin/python -m pytest" in ci_run, ".ci/run no longer runs the README's tests"
    for block in blocks:
        if block.marker is None and block.text.strip() not in CI_COMMANDS:
            # Run by the next test: a command of its own on every line it keeps.
            assert commands(block), f"{block.page}:{block.line}: an example with no command"
    assert len(runnable()) >= 60


@dataclass(frozen=True)
class Sandbox:
    seed: Path
    env: dict[str, str]
    endpoint_url: str


def _write_files(folder: Path) -> None:
    answers = [
        {
            "image": f"s3://my-bucket/{key}",
            "answer": answer,
            "_session_id": session,
            "meta": {"key": key},
        }
        for key, answer, session in [
            ("images/cam1/0000.jpg", "accept", "cats-alice"),
            ("images/cam1/0001.jpg", "reject", "cats-bob"),
        ]
    ]
    lines = "".join(json.dumps(answer) + "\n" for answer in answers)
    (folder / "cats.jsonl").write_text(lines)
    (folder / "answers.jsonl").write_text(lines)
    # What `tracker keys ... > retry.jsonl`, the line before `--keys-from retry.jsonl`, writes.
    (folder / "retry.jsonl").write_text('{"key": "images/cam1/0003.jpg"}\n')
    (folder / "uncertainty.csv").write_text(
        "key,priority\nimages/cam1/0002.jpg,0.93\nimages/cam2/0003.png,0.4\n"
    )
    (folder / "scores.jsonl").write_text(
        '{"key": "images/cam1/0006.jpg", "score": 0.5}\n'
        '{"key": "images/cam2/0007.png", "score": 0.1}\n'
    )
    (folder / "scored.jsonl").write_text(
        '{"meta": {"key": "images/cam1/0004.jpg"}, "score": 0.7}\n'
        '{"meta": {"key": "images/cam2/0005.png"}, "score": 0.2}\n'
    )
    # `alembic ...` runs "from the repository root": its config and migrations.
    shutil.copy(ROOT / "alembic.ini", folder / "alembic.ini")
    shutil.copytree(ROOT / "migrations", folder / "migrations")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> object:
    root = tmp_path_factory.mktemp("docs-examples")
    server = MotoServer(root).start()
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="my-bucket")
        for i in range(12):
            s3.put_object(
                Bucket="my-bucket", Key=f"images/cam1/{i:04}.jpg", Body=b"\xff\xd8\xff" * 8
            )
            s3.put_object(Bucket="my-bucket", Key=f"images/cam2/{i:04}.png", Body=b"\x89PNG" * 8)
        sqs = boto3.client(
            "sqs",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        queue_url = sqs.create_queue(QueueName="tracker-my-bucket")["QueueUrl"]
        # The report the inventory examples read, where their manifest URL says.
        s3.create_bucket(Bucket="my-inventories")
        rows = [Row(f"images/cam3/{i:04}.jpg") for i in range(5)]
        upload_inventory(s3, "my-inventories", "my-bucket", [rows], "CSV", destination="")
        home = root / "home"
        home.mkdir()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "TRACKER_")) or key == "TRACKER_REQUIRE_PG"
        }
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            HOME=str(home),
            XDG_DATA_HOME=str(home / "data"),
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=server.endpoint_url,
            AWS_MAX_ATTEMPTS="2",
            TRACKER_DB_URL="sqlite:///state.db",
            QUEUE_URL=queue_url,
        )
        seed = root / "seed"
        seed.mkdir()
        _write_files(seed)
        for command in [
            "tracker sync s3://my-bucket/images/",
            "tracker import-answers s3://my-bucket/images/ cats.jsonl --dataset cats",
        ]:
            subprocess.run(shlex.split(command), cwd=seed, env=env, check=True, capture_output=True)
        yield Sandbox(seed, env, server.endpoint_url)
    finally:
        server.stop()


@pytest.mark.parametrize("command", runnable())
def test_a_docs_example_runs_as_written(command, sandbox, tmp_path, request, monkeypatch):
    cwd = tmp_path / "cwd"
    shutil.copytree(sandbox.seed, cwd)
    command = command.replace(ENDPOINT_IN_DOCS, sandbox.endpoint_url)
    if PG_IN_DOCS in command:
        pg = request.getfixturevalue("pg_url")
        if command.startswith(f"tracker --db {PG_IN_DOCS} "):
            # It reads the team's DB: give it the sandbox's state first.
            copy = ["tracker", "db", "copy", "--to", pg]
            subprocess.run(copy, cwd=cwd, env=sandbox.env, check=True, capture_output=True)
        command = command.replace(PG_IN_DOCS, shlex.quote(pg))
    if re.fullmatch(r"tracker [^|<>&;$]*", command):
        # A plain `tracker ...` line runs in-process, as the shell would see it (the group
        # turns errors into a line and an exit code), a second of start-up the less.
        monkeypatch.chdir(cwd)
        args = shlex.split(command, comments=True)[1:]
        ran = CliRunner().invoke(cli, args, env=_in_process_env(sandbox.env), prog_name="tracker")
        code, stdout, stderr = ran.exit_code, ran.stdout, ran.stderr
    else:
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=cwd,
            env=sandbox.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    shown = f"$ {command}\n{stdout}{stderr}"
    assert code == 0, shown
    assert "Traceback" not in stderr, shown
    assert not re.search(r"^error:", stderr, re.M), shown


def _in_process_env(env: dict[str, str]) -> dict[str, str | None]:
    """The sandbox's environment for CliRunner: its variables set, every other AWS_ and
    TRACKER_ variable of this process unset."""
    unset: dict[str, str | None] = {
        key: None for key in os.environ if key.startswith(("AWS_", "TRACKER_")) and key not in env
    }
    return {**unset, **env}


def test_no_internal_issue_number_is_shown_to_a_user():
    """The README, the docs and every command's --help speak to users: no "(issue 12)".
    Seen failing on the performance page as moved from the README."""

    def helps(group, path):
        yield path, CliRunner().invoke(cli, [*path, "--help"]).output
        for name, command in getattr(group, "commands", {}).items():
            yield from helps(command, [*path, name])

    texts = [(str(page.relative_to(ROOT)), page.read_text()) for page in PAGES]
    texts += [(f"tracker {' '.join(path)} --help", text) for path, text in helps(cli, [])]
    found = [
        (where, match.group())
        for where, text in texts
        for match in re.finditer(r"\bissues? #?\d+", text, re.I)
    ]
    assert found == []
