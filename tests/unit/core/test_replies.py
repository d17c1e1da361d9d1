"""The reply catalogue: parsing entries and rendering replies."""

import pytest

from emulator.core.replies import Reply, ReplyError, parse, render


def test_single_line_renders_with_crlf():
    """A one-line entry renders as code, space, text, CRLF."""
    assert render(parse("250 OK")) == b"250 OK\r\n"


def test_multi_line_uses_hyphen_on_all_but_the_last_line():
    """RFC 5321 4.2.1: 'code-' on continuation lines, 'code ' on the last."""
    reply = parse(["220-mail Microsoft SMTP MAIL ready", "220 ESMTP spoken here"])
    assert render(reply) == b"220-mail Microsoft SMTP MAIL ready\r\n220 ESMTP spoken here\r\n"


def test_trailing_spaces_are_kept():
    """Texts are byte-exact: a trailing space survives (the reason texts are quoted)."""
    assert render(parse("334 ")) == b"334 \r\n"


def test_bare_code_renders_without_space():
    """A line that is only a code renders as the code and CRLF."""
    assert render(parse("354")) == b"354\r\n"


def test_fields_are_filled():
    """Template fields are replaced by the values given."""
    reply = parse("250 OK - mail from <{sender}>").format({"sender": "a@b"})
    assert render(reply) == b"250 OK - mail from <a@b>\r\n"


def test_field_values_are_not_reinterpreted():
    """A value that looks like a template is inserted literally."""
    reply = parse("250 <{sender}>").format({"sender": "{hostname}"})
    assert reply == Reply(250, ("<{hostname}>",))


@pytest.mark.parametrize("entry, problem", [
    ("OK", "does not start with a reply code"),
    ("199 too low", "does not start with a reply code"),
    ("600 too high", "does not start with a reply code"),
    ("25 short", "does not start with a reply code"),
    ("250x", "does not start with a reply code"),
    (["250-a", "251 b"], "mixes reply codes"),
    ("250 {nosuch}", "unknown field {nosuch}"),
    ("250 {sender.__class__}", "unknown field"),
    ("250 {sender!r}", "unknown field"),
    ("250 {", "literal braces"),
    ("250 caf\u20ac", "outside Latin-1"),
    ([], "quoted string"),
    (250, "quoted string"),
])
def test_bad_entries_are_refused(entry, problem):
    """Every malformed entry is a ReplyError saying what is wrong."""
    with pytest.raises(ReplyError, match=problem.replace("{", r"\{").replace("(", r"\(")):
        parse(entry)
