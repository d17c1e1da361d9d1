"""The auth: profile section: its shape, and every kind of mistake refused by file and key."""

import textwrap

import pytest

from emulator.profiles import loader as profiles
from emulator.auth.mechanisms import AuthSettings
from emulator.auth.ntlm import Account
from emulator.profiles.loader import ProfileError

from profile_texts import GOOD as MINIMAL

# The minimal profile of test_profiles, with AUTH and what it needs.
GOOD = MINIMAL.format(name="mini").replace("commands: [HELO, QUIT]", "commands: [HELO, QUIT, AUTH]") + """\
  need_helo: "503 helo first"
  bad_sequence: "503 sequence"
  syntax_auth: "501 syntax"
  auth_unknown_mechanism: "504 unknown"
  auth_failed: "535 no"
  auth_cancelled: "501 cancelled"
  auth_bad_base64: "501 base64"
  auth_already: "503 already"
  auth_username: "334 VXNlcm5hbWU6"
  auth_password: "334 UGFzc3dvcmQ6"
  auth_ok_login: "235 yes"
auth:
  mechanisms: [LOGIN]
  accounts:
    - {user: "tester", domain: "EXAMPLE", password: "secret"}
"""


def added(line: str) -> tuple[str, str]:
    """A (old, new) patch of GOOD that adds C{line} to its auth: section."""
    return "  mechanisms: [LOGIN]", "  mechanisms: [LOGIN]\n  " + line


def load(tmp_path, text):
    path = tmp_path / "mini.yaml"
    path.write_text(text)
    return profiles.load(path)


def test_minimal_auth_profile_loads(tmp_path):
    """The smallest profile with AUTH LOGIN loads into AuthSettings with its defaults."""
    settings = load(tmp_path, GOOD).auth
    assert settings == AuthSettings(mechanisms=("LOGIN",), accounts=(Account("tester", "EXAMPLE", "secret"),))
    assert (settings.required, settings.challenge_seed, settings.ntlm_versions, settings.line_limit) == (
        False, None, ("NTLMv1", "NTLMv2"), 12288)


def test_every_key_is_read(tmp_path):
    """Each documented key reaches AuthSettings; mechanism names are case-insensitive."""
    text = GOOD.replace("  mechanisms: [LOGIN]\n", textwrap.indent(textwrap.dedent("""\
        mechanisms: [login]
        required: true
        challenge_seed: "seed"
        ntlm_versions: [NTLMv2]
        ntlm_domain: "CORP"
        line_limit: 4096
    """), "  ")).replace('  auth_ok_login: "235 yes"\n', '  auth_ok_login: "235 yes"\n  auth_required: "530 log in"\n')
    settings = load(tmp_path, text).auth
    assert (settings.mechanisms, settings.required, settings.challenge_seed, settings.ntlm_versions,
            settings.ntlm_domain, settings.line_limit) == (("LOGIN",), True, "seed", ("NTLMv2",), "CORP", 4096)


def test_profile_without_auth_section_gets_defaults(tmp_path):
    """A profile with neither auth: nor AUTH loads, with an empty AuthSettings."""
    text = GOOD.replace("commands: [HELO, QUIT, AUTH]", "commands: [HELO, QUIT]")
    text = text[:text.index("auth:\n")]
    assert load(tmp_path, text).auth == AuthSettings()


@pytest.mark.parametrize("old, new, key, problem", [
    (*added("colour: red"), "auth.colour", "unknown key; known keys: mechanisms"),
    ("auth:\n  mechanisms: [LOGIN]\n  accounts:\n    - {user: \"tester\", domain: \"EXAMPLE\", password: \"secret\"}",
     "auth: [LOGIN]", "auth", "must be a mapping"),
    ("mechanisms: [LOGIN]", "mechanisms: LOGIN", "auth.mechanisms", "must be a list of names"),
    ("mechanisms: [LOGIN]", "mechanisms: [LOGIN, CRAM-MD5]", "auth.mechanisms[1]", "unknown name 'CRAM-MD5'"),
    ("mechanisms: [LOGIN]", "mechanisms: [LOGIN, login]", "auth.mechanisms[1]", "LOGIN is listed twice"),
    ("mechanisms: [LOGIN]", "mechanisms: [LOGIN, 7]", "auth.mechanisms[1]", "must be a quoted string"),
    ("  accounts:\n    - {user: \"tester\", domain: \"EXAMPLE\", password: \"secret\"}", "  accounts: tester",
     "auth.accounts", "must be a list"),
    ("    - {user: \"tester\", domain: \"EXAMPLE\", password: \"secret\"}", "    - tester",
     "auth.accounts[0]", "must be a mapping"),
    ("password: \"secret\"}", "password: \"secret\", pin: 1}", "auth.accounts[0].pin", "unknown key"),
    (", password: \"secret\"}", "}", "auth.accounts[0].password", "is required"),
    ("{user: \"tester\", ", "{", "auth.accounts[0].user", "is required"),
    ("password: \"secret\"}", "password: 123456}", "auth.accounts[0].password", "must be a quoted string"),
    ("user: \"tester\"", "user: \"EXAMPLE\\\\tester\"", "auth.accounts[0].user", "without a domain"),
    (*added("required: \"yes\""), "auth.required", "must be true or false"),
    (*added("challenge_seed: 42"), "auth.challenge_seed",
     "must be a quoted string"),
    (*added("ntlm_versions: [LM]"), "auth.ntlm_versions[0]",
     "unknown name 'LM'"),
    (*added("ntlm_versions: []"), "auth.ntlm_versions",
     "at least one NTLM version"),
    (*added("ntlm_domain: [A]"), "auth.ntlm_domain",
     "must be a quoted string"),
    (*added("line_limit: true"), "auth.line_limit", "must be an integer"),
    (*added("line_limit: 0"), "auth.line_limit", "must be an integer"),
    ("mechanisms: [LOGIN]", "mechanisms: []", "auth.mechanisms", "commands: enables AUTH but no mechanism"),
    (*added("xauth_mechanisms: [NTLM]"), "auth.xauth_mechanisms",
     "lists mechanisms for XAUTH, which commands: lacks"),
    ("mechanisms: [LOGIN]", "mechanisms: [LOGIN, NTLM]", "auth.mechanisms[1]",
     "NTLM needs replies: auth_ntlm_prompt, auth_challenge, auth_ok_ntlm"),
    ("  auth_username: \"334 VXNlcm5hbWU6\"\n", "", "auth.mechanisms[0]", "LOGIN needs replies: auth_username"),
    (*added("required: true"), "auth.required",
     "needs replies: auth_required"),
    ("  syntax_auth: \"501 syntax\"\n", "", "replies.syntax_auth", "required by the profile's commands"),
    ("commands: [HELO, QUIT, AUTH]", "commands: [HELO, QUIT]\nehlo_keywords: [\"AUTH LOGIN\"]",
     "ehlo_keywords[0]", "advertises AUTH but commands: lacks AUTH"),
])
def test_each_kind_of_auth_error_names_file_and_key(tmp_path, old, new, key, problem):
    """Each mistake in or around auth: is a ProfileError 'file:key: problem', and no server starts."""
    assert old in GOOD
    with pytest.raises(ProfileError) as info:
        load(tmp_path, GOOD.replace(old, new, 1))
    assert (info.value.key, problem in info.value.problem) == (key, True), str(info.value)


def test_required_needs_a_way_to_log_in(tmp_path):
    """required: true without AUTH or XAUTH in commands could never let MAIL through."""
    text = GOOD.replace("commands: [HELO, QUIT, AUTH]", "commands: [HELO, QUIT]")
    text = text.replace("  mechanisms: [LOGIN]\n", "  required: true\n")
    with pytest.raises(ProfileError) as info:
        load(tmp_path, text)
    assert (info.value.key, info.value.problem) == ("auth.required", "needs AUTH or XAUTH in commands:")


def test_account_errors_never_show_the_password(tmp_path):
    """A mistyped password value is named by key only, never echoed."""
    with pytest.raises(ProfileError) as info:
        load(tmp_path, GOOD.replace("password: \"secret\"}", "password: 918273645}"))
    assert "918273645" not in str(info.value)


def test_abstract_base_is_cross_checked_too(tmp_path):
    """The loader cross-checks abstract bases as well: mechanisms without their replies are refused there."""
    path = tmp_path / "base.yaml"
    path.write_text("name: base\nabstract: true\ncommands: [AUTH]\nauth: {mechanisms: [NTLM]}\n")
    with pytest.raises(ProfileError) as info:
        profiles.check(path)
    assert info.value.key == "auth.mechanisms[0]"
