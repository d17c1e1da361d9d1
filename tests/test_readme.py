"""The README's example test files run, unchanged, in a fresh pytest session."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLE = re.compile(r"```python\n# (test_\w+\.py)\n(.*?)```", re.S)


def examples() -> dict[str, str]:
    """The README's complete test files: python blocks whose first line names one."""
    return dict(EXAMPLE.findall(README.read_text(encoding="utf-8")))


def test_readme_has_the_smtplib_and_aiosmtplib_examples():
    """Both documented clients have an example file, each using the legacy_smtp fixture."""
    found = examples()
    assert set(found) == {"test_smtplib_client.py", "test_aiosmtplib_client.py"}
    assert "import aiosmtplib" in found["test_aiosmtplib_client.py"]
    assert all("(legacy_smtp)" in text for text in found.values())


def test_readme_examples_pass(pytester):
    """Every example test in the README passes, none skipped, with the plugin loaded from its entry point."""
    found = examples()
    pytester.makepyfile(**{name[:-3]: text for name, text in found.items()})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    outcomes = result.parseoutcomes()
    functions = sum(text.count("\ndef test_") for text in found.values())
    assert result.ret == 0, result.stdout.str()
    assert set(outcomes) == {"passed"} and outcomes["passed"] >= functions


def _table_names(text: str, heading: str, column: str) -> set[str]:
    """The backticked first cells of the tables under C{heading} whose header starts with C{column}."""
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    names, in_table = set(), False
    for line in section.splitlines():
        if line.startswith(f"| {column} |"):
            in_table = True
        elif not line.startswith("|"):
            in_table = False
        elif in_table and line.startswith("| `"):
            names.add(line.split("`")[1])
    return names


def test_readme_profile_tables_match_profiles():
    """Every server profile has a row in the README's profile tables, and every row names a real profile."""
    from emulator.profiles import loader as profiles

    text = (Path(__file__).parent.parent / "README.md").read_text()
    assert _table_names(text, "Profiles", "profile") == set(profiles.names())


def test_readme_persona_table_matches_client_profiles():
    """Every sender persona has a row in the README's persona table, and every row names a real one."""
    from emulator.profiles import loader as profiles

    text = (Path(__file__).parent.parent / "README.md").read_text()
    assert _table_names(text, "Sender personas", "persona") == set(profiles.names(role="client"))
