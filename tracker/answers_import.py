"""Reading `prodigy db-out` JSONL into answer records: the whole file, validated first.

Used by `tracker import-answers`. No DB access here: the command records what this returns
in one transaction, so a bad line leaves the state DB untouched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from tracker.display import printable
from tracker.errors import UsageError
from tracker.records import AnswerRecord, SourceRef
from tracker.tasks import AnswerError, answer_record


@dataclass(frozen=True)
class ParsedAnswers:
    answers: list[AnswerRecord]
    lines: int

    @property
    def keys(self) -> int:
        return len({a.key for a in self.answers})


def parse_db_out(lines: Iterable[str | bytes], source: SourceRef, *, name: str) -> ParsedAnswers:
    """Every answer in the file, or a `UsageError` naming the first bad line.

    The key comes from `meta.key`, else from `image` when that is `s3://bucket/key` or a bare
    key (the seed's recipe stored the key there); a data URI or URL names no key. Keys must
    lie under the source's prefix. Blank lines are skipped.
    """
    answers: list[AnswerRecord] = []
    count = 0
    for number, raw in enumerate(lines, start=1):
        count = number
        try:
            # utf-8-sig on the first line: a byte-order mark (Windows tools write one) is
            # not part of the JSON.
            codec = "utf-8-sig" if number == 1 else "utf-8"
            text = raw.decode(codec) if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            raise UsageError(f"{name} line {number}: not UTF-8") from None
        if number == 1:
            text = text.removeprefix("\ufeff")
        if not text.strip():
            continue
        try:
            example = json.loads(text)
        except json.JSONDecodeError as error:
            raise UsageError(f"{name} line {number}: not JSON ({error.msg})") from None
        if not isinstance(example, dict):
            raise UsageError(f"{name} line {number}: expected a JSON object")
        try:
            record = answer_record(example, source.bucket)
        except AnswerError as error:
            raise UsageError(f"{name} line {number}: {error}") from None
        if not record.key.startswith(source.prefix):
            raise UsageError(
                f"{name} line {number}: key {printable(record.key)!r} is not under {source.uri}"
            )
        answers.append(record)
    return ParsedAnswers(answers, count)
