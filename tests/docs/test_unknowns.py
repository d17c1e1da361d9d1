"""docs/unknowns.md lists every [P] value of the shipped profiles, "what we
know we do not know": its table is compared with one read from profiles/
(each value's mark is its own comment, else the comment block above it).

After a deliberate change to the profiles, UPDATE_GOLDEN=1 rewrites the
table (review the diff before committing it)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from docpages import DOCS, ROOT

PAGE = DOCS / "unknowns.md"
BEGIN, END = "<!-- table: generated from profiles/ by tests/docs/test_unknowns.py -->\n", "<!-- end of table -->\n"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<rest>.*)$")
_MARK = re.compile(r"\[(?:V|P|T)\b")
_PLAUSIBLE = re.compile(r"\[P\b")


def _split(rest: str) -> tuple[str, str]:
    """A key line's value and its comment (after two spaces and #, or a # that starts the rest)."""
    rest = rest.strip()
    if rest.startswith("#"):
        return "", rest[1:].strip()
    value, _, comment = rest.partition("  #")
    return value.strip(), comment.strip()


def unknowns(path: Path) -> list[tuple[str, str, str]]:
    """(key, value, reason) of each value a profile marks [P]: by its own
    comment if that has a mark, else by the comment block that precedes it
    (which also covers the unmarked values after it, until the next block,
    inside one mapping; a top-level key has only its own).  C{[P]} and
    C{[P: why]} both count."""
    rows, block, carried, parents = [], [], {}, []
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and lines[0].startswith("#"):  # the file's header describes it, and marks nothing
        lines.pop(0)
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append((len(line) - len(line.lstrip()), stripped.lstrip("#").strip()))
            continue
        match = _KEY.match(line)
        if match is None:
            block = []
            continue
        depth = len(match["indent"])
        parents = [(d, k) for d, k in parents if d < depth]
        value, comment = _split(match["rest"])
        scope = tuple(k for _, k in parents)
        # The comments right above, at the key's own indentation, are its block.
        own = []
        for indent, text in reversed(block):
            if indent != depth:
                break
            own.insert(0, text)
        if own:
            carried[scope] = " ".join(own)
        elif not scope:  # a top-level key is marked by its own comments only
            carried.pop(scope, None)
        block = []
        if not value:
            parents.append((depth, match["key"]))
            continue
        mark = comment if _MARK.search(comment) else carried.get(scope, "")
        if _PLAUSIBLE.search(mark):
            key = ".".join((*scope, match["key"]))
            rows.append((key, value, mark))
    return rows


def _cell(text: str, limit: int = 0) -> str:
    if limit and len(text) > limit:
        text = text[:limit - 3].rstrip() + "..."
    return text.replace("|", "\\|").replace("`", "'")


def table() -> str:
    """The page's table, from the profiles as they are."""
    lines = ["| file | key | value | why [P] |\n", "|---|---|---|---|\n"]
    for path in sorted((ROOT / "profiles").glob("*.yaml")):
        for key, value, mark in unknowns(path):
            lines.append(f"| `{path.stem}` | {key} | `{_cell(value)}` | {_cell(mark, 240)} |\n")
    return "".join(lines)


def test_unknowns_page_lists_every_p_value_of_the_profiles():
    """The table in docs/unknowns.md equals the [P] values read from profiles/, no more, no fewer."""
    text = PAGE.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    expected = head + BEGIN + table() + END + tail
    if os.environ.get("UPDATE_GOLDEN"):
        PAGE.write_text(expected, encoding="utf-8")
    assert text == expected


def test_the_reader_finds_marks_where_the_profiles_put_them(tmp_path):
    """A trailing mark wins; a comment block marks the values after it in its mapping; [V] is not listed."""
    path = tmp_path / "p.yaml"
    path.write_text('# A header: [P] here says nothing about the keys.\n'
                    'name: p\n'
                    'version: "1"   # [P] unsourced\n'
                    'replies:\n'
                    '  # Limits: [P], no capture shows them.\n'
                    '  a: "500 A"\n'
                    '  b: "500 B"   # [V] KB Q1\n'
                    '  c: "500 C"\n'
                    'describes: "x"\n'
                    'tls:\n'
                    '  min_version: "TLSv1"   # [P: era]\n')
    assert unknowns(path) == [("version", '"1"', "[P] unsourced"),
                              ("replies.a", '"500 A"', "Limits: [P], no capture shows them."),
                              ("replies.c", '"500 C"', "Limits: [P], no capture shows them."),
                              ("tls.min_version", '"TLSv1"', "[P: era]")]
