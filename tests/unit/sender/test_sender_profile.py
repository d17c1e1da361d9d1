"""Client profiles (sender personas): told apart from server profiles by
role: client, loaded strictly, listed by `emulator personas`."""

from __future__ import annotations

import re

import pytest
import yaml
from twisted.python import usage

from emulator import cli

from emulator.sender import profile as clientprofile

from emulator.profiles import loader as profiles

from emulator import tap
from emulator.profiles.loader import ProfileError

GOOD = """\
role: client
name: {name}
product: "Test sender"
version: "1.0"
describes: "a test persona"
sources: ["KB Q195201"]
helo_name: "client.example.org"
"""


def write(tmp_path, extra: str = "", name: str = "mine"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(GOOD.format(name=name) + extra)
    return path


def run(capsys, *argv):
    status = cli.main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_every_shipped_persona_loads_and_names_its_kb_article():
    """Each persona loads and cites a KB article in sources (the project's rule)."""
    names = clientprofile.names()
    assert {"ex50-sender", "ims55sp1-sender", "ims55sp2-sender", "ims55sp3-w2k-sender", "ims55sp4-w2k-sender",
            "outlook98"} <= set(names)
    for name in names:
        persona = clientprofile.load(name)
        assert any(re.search(r"\bQ\d{6}\b", source) for source in persona.sources), name


def test_profiles_and_personas_are_listed_apart(capsys):
    """`emulator profiles` lists servers only; `emulator personas` clients only."""
    _, servers, _ = run(capsys, "profiles")
    _, clients, _ = run(capsys, "personas")
    assert "ims55sp4 " in servers and "sender" not in servers and "outlook98" not in servers
    assert clients.splitlines()[0].split() == ["NAME", "PRODUCT", "VERSION", "DESCRIPTION"]
    assert any(line.startswith("outlook98 ") and "Q218430" in line for line in clients.splitlines())
    assert "ims55sp4 " not in clients and "exchange55-sender" not in clients  # abstract bases are not listed


def test_the_server_loader_refuses_a_client_profile_and_vice_versa():
    """Each loader names the other role, so a persona given as a server (or back) is a clear error."""
    with pytest.raises(ProfileError, match=r"outlook98.yaml:role: a client profile, not a server profile"):
        profiles.load("outlook98")
    with pytest.raises(ProfileError, match=r"ims55sp4.yaml:role: must be client"):
        clientprofile.load("ims55sp4")


def test_twistd_refuses_a_client_profile():
    """twistd emulator --profile with a persona stops at option parsing."""
    with pytest.raises(usage.UsageError, match="a client profile"):
        tap.Options().parseOptions(["--profile", "outlook98"])


def test_extends_resolves_and_overrides(tmp_path):
    """A persona inherits its base's keys; mappings merge key by key (tls.check_name only)."""
    persona = clientprofile.load("ims55sp3-w2k-sender")
    base = clientprofile.load("ims55sp2-sender")
    assert persona.tls.check_name == "dialled" and base.tls.check_name == "fqdn"
    assert persona.tls.starttls == base.tls.starttls == "when_advertised"
    assert persona.mail_parameters == base.mail_parameters and persona.auth == base.auth


def test_a_minimal_persona_takes_the_defaults(tmp_path):
    """Only identity is required; the dialogue defaults to plain EHLO without TLS or authentication."""
    persona = clientprofile.load(write(tmp_path))
    assert (persona.hello, persona.port, persona.tls.starttls, persona.auth.methods) == ("EHLO", 25, "never", ())


@pytest.mark.parametrize("extra, key, problem", [
    ("colour: blue\n", "colour", "unknown key"),
    ("hello: GREET\n", "hello", "must be one of EHLO, HELO"),
    ("port: 99999\n", "port", "must be a TCP port"),
    ("port: \"25\"\n", "port", "must be an integer"),
    ("tls: {check_nam: fqdn}\n", "tls.check_nam", "unknown key"),
    ("tls: {check_name: ip}\n", "tls.check_name", "must be one of fqdn, dialled, none"),
    ("tls: {implicit: yes please}\n", "tls.implicit", "must be true or false"),
    ("tls: {max_version: \"SSLv3\"}\n", "tls.max_version", "must be one of null, TLSv1"),
    ("auth: {methods: [{keyword: XAUTH}]}\n", "auth.methods[0].command", "is required"),
    ("auth: {credentials: {user: \"u\", password: \"p\"}}\n", "auth.credentials", "never used"),
    ("reports: {crashed: \"oops\"}\n", "reports.crashed", "unknown failure kind"),
    ("mail_parameters: [{keyword: SIZE, text: 5}]\n", "mail_parameters[0].text", "must be a quoted string"),
])
def test_problems_name_file_and_key(tmp_path, extra, key, problem):
    """Every problem is file:key: problem, down to nested keys and list items."""
    path = write(tmp_path, extra)
    with pytest.raises(ProfileError) as caught:
        clientprofile.load(path)
    assert caught.value.key == key and problem in caught.value.problem


def test_identity_is_required(tmp_path):
    """product, version, describes, sources and helo_name are required; sources must not be empty."""
    path = tmp_path / "bare.yaml"
    path.write_text("role: client\nname: bare\n")
    with pytest.raises(ProfileError, match="bare.yaml:product: is required"):
        clientprofile.load(path)
    empty = tmp_path / "nosources.yaml"
    empty.write_text(GOOD.format(name="nosources").replace('sources: ["KB Q195201"]', "sources: []"))
    with pytest.raises(ProfileError, match="nosources.yaml:sources: must name at least one source"):
        clientprofile.load(empty)


def test_check_and_show_handle_client_profiles(capsys, tmp_path):
    """emulator check validates a persona file by its role; show prints it resolved, itself loadable."""
    bad = write(tmp_path, "tls: {starttls: always}\n", name="bad")
    status, out, _ = run(capsys, "check", str(profiles.resolve("exchange55-sender")), str(profiles.resolve("outlook98")),
                         str(bad))
    assert status == 1
    assert "exchange55-sender.yaml: ok (abstract)" in out and "outlook98.yaml: ok" in out
    assert f"{bad}:tls.starttls: must be one of never, when_advertised, not 'always'" in out
    status, out, _ = run(capsys, "show", "ims55sp3-w2k-sender")
    assert status == 0 and "extends" not in yaml.safe_load(out)
    copy = tmp_path / "ims55sp3-w2k-sender.yaml"
    copy.write_text(out)
    assert clientprofile.load(copy).tls == clientprofile.load("ims55sp3-w2k-sender").tls


def test_passwords_stay_out_of_repr(tmp_path):
    """A persona's account password does not show in a printed persona (no shipped persona has
    one: they authenticate only when given an account, so a local file gives it)."""
    path = tmp_path / "with-account.yaml"
    path.write_text(clientprofile.resolve("ex50-sender").read_text().replace(
        "name: ex50-sender", "name: with-account").replace(
        '  on_failure: "quit"     # [P]\n',
        '  on_failure: "quit"\n  credentials: {user: "tester", domain: "EXAMPLE", password: "secret"}\n'))
    persona = clientprofile.load(path)
    assert persona.auth.credentials.password == "secret" and "secret" not in repr(persona)


def test_no_sender_persona_has_a_default_account():
    """One rule for every sender persona: it authenticates only when given an account (--user),
    as the IMS did only when its connector was set up to (KB Q195201's "configured" sender)."""
    for name in clientprofile.names():
        assert clientprofile.load(name).auth.credentials is None, name
