"""The pages hold together: persona tables match profiles/, links and
citations resolve inside the repository, every page is reachable, and
nothing points outside the project."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from docpages import DOCS, ROOT, anchors, links, pages, relative

from emulator.profiles import loader as profiles

README = ROOT / "README.md"
SOURCES = DOCS / "sources.md"
CITATION = re.compile(r"§(\d+(?:\.\d+)*)")
KB = re.compile(r"\b(?:Q|KB )(\d{6})\b")


def _table_names(text: str, column: str) -> list[str]:
    """The backticked names in the first cells of the tables whose header starts with C{column}."""
    names, in_table = [], False
    for line in text.splitlines():
        if line.startswith(f"| {column} |"):
            in_table = True
        elif not line.startswith("|"):
            in_table = False
        elif in_table and not line.startswith("|---"):
            names += re.findall(r"`([^`]+)`", line.split("|")[1])
    return names


def test_readme_tables_list_every_server_persona():
    """Every server profile has one row in the README's profile tables, and every row names a real profile."""
    names = _table_names(README.read_text(), "profile")
    assert sorted(names) == sorted(profiles.names())


def test_readme_table_lists_every_sender_persona():
    """Every sender persona has one row in the README's persona table, and every row names a real one."""
    names = _table_names(README.read_text(), "persona")
    assert sorted(names) == sorted(profiles.names(role="client"))


def test_docs_tables_name_only_real_personas():
    """A profile or persona named in a table of docs/ exists."""
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        for name in _table_names(text, "profile"):
            assert name in profiles.names(), f"{relative(page)}: {name}"
        for name in _table_names(text, "persona"):
            assert name in profiles.names(role="client"), f"{relative(page)}: {name}"


def test_relative_links_resolve():
    """Every relative link of the README and docs/ names a file of the repository, and an anchor it has."""
    for page in pages():
        for line, target in links(page):
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists() and file.is_relative_to(ROOT), f"{relative(page)}:{line}: {target}"
            if anchor:
                assert file.suffix == ".md" and anchor in anchors(file), f"{relative(page)}:{line}: {target}"


def test_every_docs_page_is_linked_from_the_index_and_the_readme():
    """A newcomer reaches each page from docs/index.md and from the README."""
    index = {target.partition("#")[0] for _, target in links(DOCS / "index.md")}
    readme = {target.partition("#")[0] for _, target in links(README)}
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "index.md":
            assert page.name in index, page.name
        assert f"docs/{page.name}" in readme, page.name


def _sections() -> dict[str, str]:
    """The numbered sections of docs/sources.md: anchor number -> heading."""
    text = SOURCES.read_text()
    found = re.findall(r'<a id="s([\d.]+)"></a>\n#+ (.+)', text)
    assert len(found) == text.count('<a id="s'), "every section anchor stands right before its heading"
    return dict(found)


def test_sources_sections_are_numbered_as_their_anchors():
    """Each anchor sN.M of docs/sources.md is followed by the heading numbered N.M, once."""
    sections = _sections()
    for number, heading in sections.items():
        assert heading.split()[0] == number, (number, heading)
    assert "1" in sections and "13" in sections


def _cited_files() -> list[Path]:
    return [*pages(), *ROOT.glob("profiles/*.yaml"), *ROOT.glob("emulator/**/*.py"), *ROOT.glob("emulator/**/*.yaml"),
            *ROOT.glob("tests/**/*.py")]


def test_every_citation_of_sources_resolves():
    """Every "§N" in the pages, profiles, code and tests names a section of docs/sources.md."""
    sections = _sections()
    cited = 0
    for path in _cited_files():
        for number in CITATION.findall(path.read_text(encoding="utf-8")):
            assert number in sections, f"{relative(path)}: §{number}"
            cited += 1
    assert cited > 50


def test_every_kb_article_cited_by_a_persona_is_in_the_index():
    """Each KB article a profile or the matrix catalogue cites has an entry in docs/sources.md."""
    index = anchors(SOURCES)
    files = [*ROOT.glob("profiles/*.yaml"), ROOT / "emulator" / "sender" / "matrix.yaml", README]
    for path in files:
        for number in KB.findall(path.read_text(encoding="utf-8")):
            assert f"q{number}" in index, f"{relative(path)}: KB {number}"


def _repository_files() -> list[Path]:
    """The files a clone has (tracked, or new and not ignored)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def test_nothing_points_outside_the_project():
    """No file cites the references beside the project (their folder or their file
    names): a clone must stand alone, so facts are cited as docs/sources.md."""
    outside = re.compile("(?<![\\w-])" + "shar" + "ed/" + "|" + "legacy-" + "behaviour")
    for path in _repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        assert not outside.search(text), f"{relative(path)}: {outside.search(text).group(0)}"


def test_license_is_mit_as_the_metadata_says():
    """LICENSE holds the MIT licence with the project's copyright line, as setup.cfg declares."""
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the legacy-smtp emulator developers\n")
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text
    assert re.search(r"^license = MIT$", (ROOT / "setup.cfg").read_text(), re.M)
