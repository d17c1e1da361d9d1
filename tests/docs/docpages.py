"""
Reading the project's Markdown pages (README.md and docs/*.md) for the docs
tests: their fenced blocks with the info string that says how each one runs,
their anchors, and their relative links.

The info string of a fenced block is a language and tags:

    ```python                 a script, run in a fresh folder; exit status 0
    ```python                 whose first line is "# test_NAME.py": a test file,
                              run with the others by pytest (the plugin loaded
                              from its entry point)
    ```yaml                   a profile (it has name:), checked by `emulator check`
    ```yaml section           a part of a profile, checked inside one that
                              extends ims55sp4
    ```yaml middlebox         a middlebox file (type, attributes), checked as
                              a profile's middlebox: section
    ```sh                     a bash script (set -eu), exit status 0
    ```sh starts              each line a long-running server: started, its
                              --listen ports answer a banner, then stopped
    ```console                "$ command" lines, each followed by its exact output
    ```text golden=PATH       a transcript excerpt: its lines appear, in order,
                              in tests/golden/PATH.txt ("..." skips lines)
    ```text faults            lines "--fault 'SPEC'", each parsed as a fault
    ```mermaid                the layer diagram: one node per emulator package
    ... no-run                not run (a syntax sketch, make run, a command that
                              needs a real server on port 25); only for sh,
                              console and text
    ... walk=TEST             one of a sequence of blocks that TEST (a test file
                              that names the page) runs in order, against servers
                              it starts (the console's and the learned-persona walks)

Further tags: "serve" or "serve=PROFILE" runs the block while a server runs
in its folder, as `make run` starts it (profile ims55sp4 unless named) plus
the control API on port 8025; "file=NAME" also writes the block to NAME in
the folder of every block of the page.  Blocks use ports 2525, 2526, 2527, 4650
and 8025 as a reader would; the tests replace them with free ports.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def pages() -> list[Path]:
    """README.md and every page of docs/, in a stable order."""
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def relative(path: Path) -> str:
    """C{path} as the repository names it (a page outside it by its name)."""
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: Path
    line: int  # of the opening fence, from 1
    language: str
    tags: dict = field(hash=False)
    text: str

    @property
    def id(self) -> str:
        return f"{relative(self.page)}:{self.line}"

    @property
    def test_file(self) -> str | None:
        """The file name of a complete test file (first line C{# test_NAME.py}), else None."""
        match = re.match(r"# (test_\w+\.py)\n", self.text)
        return match.group(1) if self.language == "python" and match else None


_FENCE = re.compile(r"^```(.*)$")


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of C{page}; fences start at the beginning of a line."""
    found, lines, start = [], page.read_text(encoding="utf-8").splitlines(keepends=True), None
    for number, line in enumerate(lines, 1):
        match = _FENCE.match(line.rstrip("\n"))
        if not match:
            continue
        if start is None:
            start, info, body = number, match.group(1).split(), []
        else:
            assert not match.group(1), f"{relative(page)}:{number}: a fence that closes a block has no info string"
            language = info[0] if info else ""
            tags = dict((tag.split("=", 1) + [""])[:2] for tag in info[1:])
            found.append(Block(page, start, language, tags, "".join(lines[start:number - 1])))
            start = None
    assert start is None, f"{relative(page)}:{start}: block not closed"
    return found


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of C{page}: its headings' slugs (numbered as GitHub numbers
    repeats) and explicit C{<a id="...">} elements."""
    found: set[str] = set()
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, re.M):
        base, n = slug(heading), 0
        name = base
        while name in found:
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    found.update(re.findall(r'<a id="([^"]+)"></a>', text))
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """The relative links of C{page} outside fenced blocks: (line, target)."""
    found, fenced = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            line = re.sub(r"`[^`]*`", "", line)
            found += [(number, target) for target in re.findall(r"\]\(([^)\s]+)\)", line)
                      if not re.match(r"[a-z]+:", target)]
    return found
