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
