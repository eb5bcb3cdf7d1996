"""MkDocs hooks for the docs site (mkdocs.yml's `hooks:`).

GitHub's Markdown needs a pipe inside a table cell's code escaped (`a\\|b`), or it splits
the cell; Python-Markdown keeps code spans whole and would show the backslash. The pages
stay written for GitHub (docs/ is read there too); the site gets the pipe without it.
"""

from __future__ import annotations

import re
from typing import Any

CODE_SPAN = re.compile(r"`[^`\n]*`")


def on_page_markdown(markdown: str, **_: Any) -> str:
    lines = []
    for line in markdown.split("\n"):
        if line.startswith("|"):
            line = CODE_SPAN.sub(lambda span: span.group().replace("\\|", "|"), line)
        lines.append(line)
    return "\n".join(lines)
