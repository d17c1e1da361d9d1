"""Profile loading: every shipped profile runs, and every kind of bad profile is refused by file and key."""

import textwrap

import pytest
import yaml

from emulator.core import commands

from emulator.profiles import loader as profiles
from emulator.profiles.loader import ProfileError
from emulator.testing.harness import Harness

SHIPPED = profiles.names()


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads_and_greets(name):
    """A profile that loads is a profile that runs: it greets and answers EHLO/HELO."""
    h = Harness(name)
    assert h.connect()[:3] in (b"220", b"421", b"554")
    verb = b"EHLO" if "EHLO" in h.server.profile.commands else b"HELO"
    assert h.send(verb + b" client.example\r\n")[:1] in b"25"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_advertised_keyword_has_a_handler(name):
    """Every EHLO keyword that names a command has that command enabled."""
    p = profiles.load(name)
    for keyword in p.ehlo_keywords:
        verb = commands.KEYWORD_VERBS.get(keyword.replace("=", " ").split()[0].upper())
        assert verb is None or verb in p.commands, keyword


def test_every_shipped_file_checks(tmp_path):
    """Abstract bases check too (emulator check profiles/*.yaml is clean)."""
    for name in profiles.names(include_abstract=True):
        profiles.check(profiles.resolve(name))


def write(tmp_path, name, text):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


from profile_texts import GOOD  # noqa: E402 (the minimal profile other tests extend too)


def test_minimal_profile_loads(tmp_path):
    """The smallest complete profile loads from a path."""
    assert profiles.load(write(tmp_path, "mini", GOOD.format(name="mini"))).commands == ("HELO", "QUIT")


@pytest.mark.parametrize("patch, key, problem", [
    (("product: \"Test\"", "produkt: \"Test\""), "produkt", "unknown key"),
    (("version: \"1.0\"", "version: 5.5"), "version", "YAML reads 5.5 as a number"),
    (("helo: \"250 OK\"", "helo: 250 OK"), "replies.helo", "reply texts must be quoted"),
    (("helo: \"250 OK\"", "helo: \"OK\""), "replies.helo", "does not start with a reply code"),
    (("helo: \"250 OK\"", "helo: \"250 {nosuch}\""), "replies.helo", "unknown field"),
    (("quit: \"221 bye\"", "quit: \"221 bye\"\n  quit: \"221 again\""), "replies.quit", "duplicate key"),
    (("  quit: \"221 bye\"\n", ""), "replies.quit", "required by the profile's commands"),
    (("commands: [HELO, QUIT]", "commands: [HELO, QUIT, FROB]"), "commands[2]", "no handler for 'FROB'"),
    (("commands: [HELO, QUIT]", "commands: HELO"), "commands", "must be a list"),
    (("hostname: \"h.test\"\n", ""), "hostname", "is required"),
    (("name: mini", "name: other"), "name", "equal the file name"),
    (("commands: [HELO, QUIT]", "commands: [HELO, QUIT]\nlimits: {command_line: \"512\"}"),
     "limits.command_line", "must be an integer"),
    (("commands: [HELO, QUIT]", "commands: [HELO, QUIT]\nlimits: {bogus: 1}"), "limits.bogus", "unknown limit"),
    (("commands: [HELO, QUIT]", "commands: [HELO, QUIT]\nehlo_keywords: [\"ETRN\"]"),
     "ehlo_keywords[0]", "advertises ETRN but commands: lacks ETRN"),
    (("commands: [HELO, QUIT]", "commands: [HELO, QUIT]\nquirks: [{type: nosuch}]"),
     "quirks[0].type", "unknown quirk type 'nosuch'"),
    (("commands: [HELO, QUIT]", "commands: [HELO, QUIT]\nquirks: [{type: reply_override, attributes: {command: QUIT}}]"),
     "quirks[0].attributes.reply", "is required"),
    (("commands: [HELO, QUIT]", "commands: [HELO, QUIT]\nquirks: [{type: reply_override, attributes: {command: QUIT, reply: \"221 x\", times: \"2\"}}]"),
     "quirks[0].attributes.times", "must be an integer"),
    (("commands: [HELO, QUIT]", "commands: [HELO, QUIT]\nquirks: [{type: reply_override, attributes: {command: QUIT, reply: \"x\"}}]"),
     "quirks[0].attributes.reply", "does not start with a reply code"),
    (("commands: [HELO, QUIT]", "commands: [HELO, QUIT]\nquirks: [{type: reply_override, attributes: {command: QUIT, reply: \"221 x\", colour: red}}]"),
     "quirks[0].attributes.colour", "unknown attribute"),
    (("commands: [HELO, QUIT]", "commands: [HELO, QUIT]\nextends: nosuchparent"), "extends", "no profile named"),
    (("commands: [HELO, QUIT]", "commands: [HELO, QUIT]\n  - NOOP"), "line 7", "not valid YAML"),
])
def test_each_kind_of_error_names_file_and_key(tmp_path, patch, key, problem):
    """Each mistake is a ProfileError 'file:key: problem' and no server starts."""
    old, new = patch
    text = GOOD.format(name="mini")
    assert old in text
    path = write(tmp_path, "mini", text.replace(old, new, 1))
    with pytest.raises(ProfileError) as info:
        profiles.load(path)
    assert info.value.key == key
    assert problem in info.value.problem
    assert str(info.value).startswith(f"{path}:{key}: ")


def test_not_a_mapping(tmp_path):
    """A file that is not a mapping is refused."""
    with pytest.raises(ProfileError, match="must be a mapping"):
        profiles.load(write(tmp_path, "x", "- a\n- b\n"))


def test_unsafe_yaml_tags_are_refused(tmp_path):
    """The safe loader refuses Python object tags."""
    with pytest.raises(ProfileError, match="not valid YAML"):
        profiles.load(write(tmp_path, "x", "name: !!python/object/apply:os.system ['true']\n"))


def test_extends_merges_mappings_and_replaces_lists(tmp_path):
    """A child inherits its parent's replies key by key and replaces its lists."""
    write(tmp_path, "base", GOOD.format(name="base") + "abstract: true\n")
    child = write(tmp_path, "child", """\
        name: child
        extends: base
        commands: [HELO, QUIT, NOOP]
        replies:
          noop: "250 fine"
    """)
    p = profiles.load(child)
    assert p.commands == ("HELO", "QUIT", "NOOP")
    assert p.replies["helo"].lines == ("OK",) and p.replies["noop"].lines == ("fine",)


def test_extends_loop_is_refused(tmp_path):
    """a extends b extends a is an error, not a hang."""
    write(tmp_path, "a", "name: a\nextends: b\n")
    path_b = write(tmp_path, "b", "name: b\nextends: a\n")
    with pytest.raises(ProfileError, match="inheritance loop"):
        profiles.load(path_b)


def test_abstract_profile_cannot_run():
    """A base profile serves only for extends:."""
    with pytest.raises(ProfileError, match="abstract"):
        profiles.load("exchange55")


def test_unknown_name_lists_the_known_ones():
    """A typo in a profile name says which names exist."""
    with pytest.raises(ProfileError, match="ims55sp4"):
        profiles.load("ims55sp9")


@pytest.mark.parametrize("loader", [yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)],
                         ids=["python", "libyaml"])
def test_both_yaml_parsers_read_profiles_alike(monkeypatch, tmp_path, loader):
    """libyaml (fast start-up) and PyYAML's own parser give every shipped
    profile the same document, and the same 'line N' error for a bad file."""
    for path in sorted(p for folder in profiles.search_path() for p in folder.glob("*.yaml")):
        monkeypatch.setattr(profiles, "_Loader", yaml.SafeLoader)
        expected = profiles.read_document(path)
        monkeypatch.setattr(profiles, "_Loader", loader)
        assert profiles.read_document(path) == expected, path.name
    bad = write(tmp_path, "mini", GOOD.format(name="mini").replace("commands: [HELO, QUIT]",
                                                                  "commands: [HELO, QUIT]\n  - NOOP", 1))
    with pytest.raises(ProfileError) as info:
        profiles.load(bad)
    assert (info.value.key, info.value.problem.split(":")[0]) == ("line 7", "not valid YAML")
