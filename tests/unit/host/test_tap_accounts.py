"""Accounts from outside the profile: --account of twistd emulator, and parse_account."""

import pytest
from twisted.python import usage

from emulator.auth.mechanisms import parse_account
from emulator.auth.ntlm import Account
from emulator.tap import Options


@pytest.mark.parametrize("text, account", [
    ("bob:pw", Account("bob", "", "pw")),
    ("CORP\\alice:pa:ss", Account("alice", "CORP", "pa:ss")),
    ("carol:", Account("carol", "", "")),
])
def test_parse_account(text, account):
    """user:password or DOMAIN\\\\user:password; the password keeps any colons; no domain matches any."""
    assert parse_account(text) == account
    assert parse_account(text).password == account.password


def test_account_option_adds_to_the_profiles_accounts():
    """--account is repeatable and adds to the profile's own accounts (tester stays)."""
    options = Options()
    options.parseOptions(["--profile", "ims55sp4", "--account", "CORP\\alice:one", "--account", "bob:two"])
    accounts = options["loaded_profile"].auth.accounts
    assert [(a.user, a.domain, a.password) for a in accounts] == [
        ("tester", "EXAMPLE", "secret"), ("alice", "CORP", "one"), ("bob", "", "two")]


@pytest.mark.parametrize("text", ["hunter2", ":hunter2", "CORP\\:hunter2"])
def test_bad_account_option_never_echoes_it(text):
    """A malformed --account is a usage error that does not repeat the argument (it may be a password)."""
    with pytest.raises(usage.UsageError) as info:
        Options().parseOptions(["--account", text])
    assert "hunter2" not in str(info.value)
    assert str(info.value).startswith("--account: expected USER:PASSWORD")


def test_account_option_needs_a_profile_that_authenticates(tmp_path):
    """--account with a profile that has neither AUTH nor XAUTH is refused (nobody could log in)."""
    path = tmp_path / "noauth.yaml"
    path.write_text('name: noauth\nextends: ims55sp4\ncommands: [HELO, EHLO, MAIL, RCPT, DATA, QUIT]\n'
                    'ehlo_keywords: []\nauth: {mechanisms: [], xauth_mechanisms: []}\n')
    with pytest.raises(usage.UsageError, match="has no AUTH or XAUTH"):
        Options().parseOptions(["--profile", str(path), "--account", "bob:pw"])
    Options().parseOptions(["--profile", str(path)])


def test_help_documents_the_account_option():
    """twistd emulator --help lists --account."""
    assert "--account=" in str(Options())
