"""
Profiles: one YAML file per product and version, loaded strictly.

A profile is data: identity, a reply catalogue, the verbs the product knew,
its EHLO keywords, limits and an ordered list of quirks.  Loading resolves
C{extends:} (mappings merge key by key, everything else replaces), checks
every key and type, and builds the quirks, so that a profile that loads is a
profile that runs.  Every problem is a L{ProfileError} naming file and key.

Profiles are found by name in the C{emulator.profiles.shipped} package data (a normal
install) or in the checkout's top-level C{profiles/} folder; a path names a
file directly.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from emulator import quirks

from emulator.core import commands

from emulator.core import replies

_CHECKOUT_PROFILES = Path(__file__).resolve().parents[2] / "profiles"


class ProfileError(Exception):
    """A profile that cannot run.  C{str()} is C{file:key: problem}."""

    def __init__(self, path: str | Path, key: str, problem: str):
        super().__init__(f"{path}:{key}: {problem}")
        self.path, self.key, self.problem = str(path), key, problem


@dataclass(frozen=True)
class Limits:
    """Numeric limits, with RFC 5321 section 4.5.3 defaults.

    Every limit but the timeouts may be 0 for "no limit".

    @ivar command_line: longest command line in bytes, CRLF included (512,
        RFC 5321 4.5.3.1.4).
    @ivar text_line: longest line of message text in bytes, CRLF included
        (1000, 4.5.3.1.6); a message with a longer line is refused at its end.
    @ivar message_size: largest message in bytes (0: IMS's C{SIZE 0}).
    @ivar recipients: most recipients per message (RFC minimum 100, 4.5.3.1.8).
    @ivar commands: most commands in one session; then C{too_many_commands}
        and the connection closes.
    @ivar bad_commands: unknown, over-long or malformed commands before
        C{too_many_errors} and a close (Postfix's smtpd_hard_error_limit, 20).
    @ivar connections: most connections at once per listener; one more gets
        C{too_many_connections} and is closed.
    @ivar idle_timeout: seconds of silence between commands before the
        server gives up (5 minutes, 4.5.3.2.7).
    @ivar data_timeout: seconds of silence while a message is coming (3
        minutes, the data-block timeout of 4.5.3.2.5).
    """

    command_line: int = 512
    text_line: int = 1000
    message_size: int = 0
    recipients: int = 100
    commands: int = 10000
    bad_commands: int = 20
    connections: int = 1000
    idle_timeout: float = 300.0
    data_timeout: float = 180.0

    def replies_needed(self) -> set[str]:
        """Catalogue replies the enabled limits may send."""
        return {name for name, limit in (("data_line_too_long", self.text_line),
                                         ("too_many_commands", self.commands),
                                         ("too_many_errors", self.bad_commands),
                                         ("too_many_connections", self.connections)) if limit}


@dataclass(frozen=True)
class Profile:
    """A loaded, validated profile."""

    name: str
    path: Path
    product: str
    version: str
    describes: str
    hostname: str
    commands: tuple[str, ...]
    ehlo_keywords: tuple[str, ...]
    replies: Mapping[str, replies.Reply]
    limits: Limits = Limits()
    require_helo: bool = True
    quirks: tuple[quirks.Quirk, ...] = ()
    sources: tuple[str, ...] = ()
    notes: str = ""
    sections: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)
    hooks: Mapping[str, tuple] = field(default_factory=dict, repr=False)


# Sections owned by feature modules (tls:, auth:, ...): key -> parser.  A
# parser takes the resolved value (or None when the profile has none) and
# returns the section's object, raising SectionError(key, problem) with the
# key below the section that is at fault.
SECTIONS: dict[str, Callable[[Any], Any]] = {}
_SECTION_MODULES = ("emulator.tls.config", "emulator.auth.mechanisms", "emulator.middlebox")


class SectionError(ValueError):
    """A problem inside a section; C{key} is relative to the section."""

    def __init__(self, key: str, problem: str):
        super().__init__(problem)
        self.key = key


def section(key: str):
    """Decorator: register C{parser} for the top-level profile key C{key}."""

    def register(parser):
        SECTIONS[key] = parser
        return parser

    return register


def _load_sections() -> None:
    import importlib

    for module in _SECTION_MODULES:
        importlib.import_module(module)


# key -> (expected type(s), description) for one profile file
_SCHEMA = {
    "name": (str, "a quoted string"),
    "abstract": (bool, "true or false"),
    "extends": (str, "a profile name"),
    "product": (str, "a quoted string"),
    "version": (str, "a quoted string (YAML reads 5.5 as a number)"),
    "describes": (str, "a quoted string"),
    "notes": (str, "a string"),
    "sources": (list, "a list of strings"),
    "hostname": (str, "a quoted string"),
    "commands": (list, "a list of verbs"),
    "ehlo_keywords": (list, "a list of quoted strings"),
    "replies": (dict, "a mapping of reply names to quoted texts"),
    "limits": (dict, "a mapping"),
    "require_helo": (bool, "true or false"),
    "quirks": (list, "a list of {type, attributes}"),
    "role": (str, "server (the default; role: client marks a sender persona, emulator.sender.profile)"),
    "seed": (int, "an integer (the seed of the quirks' probabilities)"),
}
_REQUIRED = ("product", "version", "describes", "hostname", "commands", "replies")


def search_path() -> list[Path]:
    """Where profiles are found by name: the installed package data, then a
    source checkout's C{profiles/} folder."""
    # emulator.profiles.shipped is a namespace package (data only), so ask for its
    # folders rather than a module file.
    spec = importlib.util.find_spec("emulator.profiles.shipped")
    dirs = [Path(d) for d in (spec.submodule_search_locations or [])] if spec else []
    dirs.append(_CHECKOUT_PROFILES)
    return [d for d in dirs if d.is_dir()]


def resolve(name_or_path: str | Path) -> Path:
    """The file of a profile given by name (C{ims55sp4}) or by path."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise ProfileError(path, "(file)", "no such file")
        return path
    for folder in search_path():
        path = folder / f"{text}.yaml"
        if path.is_file():
            return path
    raise ProfileError(text, "(name)", f"no profile of that name; known: {', '.join(names())}")


def names(include_abstract: bool = False, role: str = "server") -> list[str]:
    """Names of the profiles on the search path: server profiles, or with
    C{role="client"} the sender personas (L{emulator.sender.profile})."""
    found = {}
    for folder in search_path():
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    documents = {n: read_document(p) for n, p in found.items()}
    return sorted(n for n, d in documents.items()
                  if d.get("role", "server") == role and (include_abstract or not d.get("abstract")))


def load(name_or_path: str | Path) -> Profile:
    """Load, resolve and validate a profile, or raise L{ProfileError}."""
    path = resolve(name_or_path)
    document = _resolve(path, ())
    if document.get("abstract"):
        raise ProfileError(path, "abstract", "an abstract profile only serves as a base for extends:")
    return _build(path, document)


def check(path: str | Path) -> Profile | None:
    """Validate a profile file; an abstract one (a base for C{extends:}) is
    checked for everything but completeness, and gives None."""
    path = resolve(path)
    document = _resolve(path, ())
    if document.get("abstract"):
        _build(path, document, partial=True)
        return None
    return _build(path, document)


def resolved_document(name_or_path: str | Path) -> dict:
    """The profile's mapping after C{extends:} is resolved (for C{emulator show})."""
    path = resolve(name_or_path)
    document = _resolve(path, ())
    _build(path, document)
    return document


def _resolve(path: Path, seen: tuple[Path, ...], read: Callable[[Path], dict] | None = None) -> dict:
    if path.resolve() in seen:
        chain = " -> ".join(p.stem for p in seen + (path,))
        raise ProfileError(path, "extends", f"inheritance loop: {chain}")
    document = (read or _read)(path)
    parent_name = document.get("extends")
    if parent_name is None:
        return document
    sibling = path.parent / f"{parent_name}.yaml"
    try:
        parent_path = sibling if sibling.is_file() else resolve(parent_name)
    except ProfileError:
        raise ProfileError(path, "extends", f"no profile named {parent_name!r}") from None
    parent = _resolve(parent_path, seen + (path.resolve(),), read)
    parent.pop("abstract", None)
    return _merge(parent, document)


def _merge(base: dict, over: dict) -> dict:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# libyaml's parser when PyYAML has it (about 10 times faster: a third of start-up otherwise).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_document(path: Path) -> dict:
    """Parse one profile file of any role with the safe loader: a mapping,
    no duplicate keys, quoted reply texts.  The role's loader checks the rest."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(path, "(file)", f"cannot read: {e}") from None
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            raise ProfileError(path, "(file)", "empty file")
        _check_nodes(path, node, "")
        document = loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ProfileError(path, where, f"not valid YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(document, dict):
        raise ProfileError(path, "(file)", "must be a mapping of keys to values")
    return document


def _read(path: Path) -> dict:
    """Parse one file with the safe loader and check its shape."""
    document = read_document(path)
    if document.get("role", "server") != "server":
        raise ProfileError(path, "role", f"a {document['role']} profile, not a server profile "
                                         "(sender personas: `emulator personas`)")
    _load_sections()
    for key, value in document.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ProfileError(path, key, "must be a mapping")
            continue
        if key not in _SCHEMA:
            known = ", ".join([*_SCHEMA, *SECTIONS])
            raise ProfileError(path, str(key), f"unknown key; known keys: {known}")
        kind, description = _SCHEMA[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ProfileError(path, key, f"must be {description}, not {value!r}")
    if document.get("name") != path.stem:
        raise ProfileError(path, "name", f"must be present and equal the file name {path.stem!r}")
    return document


def _check_nodes(path: Path, node: yaml.Node, key: str, ancestors: frozenset = frozenset()) -> None:
    """Reject duplicate keys, recursive aliases, and reply texts that are not
    quoted (a plain YAML scalar loses trailing spaces and may turn into a number)."""
    if id(node) in ancestors:
        raise ProfileError(path, key or "(file)", "recursive YAML alias")
    inner = ancestors | {id(node)}
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for k, v in node.value:
            name = f"{key}.{k.value}" if key else str(k.value)
            if not isinstance(k, yaml.ScalarNode):
                raise ProfileError(path, key or "(file)", "keys must be plain strings")
            if k.value in seen:
                raise ProfileError(path, name, "duplicate key")
            seen.add(k.value)
            _check_nodes(path, v, name, inner)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_nodes(path, item, f"{key}[{i}]", inner)
    elif key.startswith("replies.") and node.style not in ('"', "'"):
        raise ProfileError(path, key, "reply texts must be quoted")


def _build(path: Path, doc: dict, partial: bool = False) -> Profile:
    for key in () if partial else _REQUIRED:
        if key not in doc:
            raise ProfileError(path, key, "is required")
    doc = {"replies": {}, "commands": [], **doc}
    verbs = tuple(_strings(path, doc, "commands"))
    for i, verb in enumerate(verbs):
        if verb not in commands.VERBS:
            raise ProfileError(path, f"commands[{i}]", f"no handler for {verb!r}; known: {', '.join(commands.VERBS)}")
    keywords = tuple(_strings(path, doc, "ehlo_keywords"))
    for i, keyword in enumerate(keywords):
        word = keyword.replace("=", " ").split(" ", 1)[0].upper()
        verb = commands.KEYWORD_VERBS.get(word)
        if verb and verb not in verbs:
            raise ProfileError(path, f"ehlo_keywords[{i}]", f"advertises {word} but commands: lacks {verb}")
    catalogue = {}
    for name, text in doc["replies"].items():
        try:
            catalogue[name] = replies.parse(text)
        except replies.ReplyError as e:
            raise ProfileError(path, f"replies.{name}", str(e)) from None
    limits = _limits(path, doc.get("limits", {}))
    needed = commands.replies_needed(verbs) | ({"ehlo"} if "EHLO" in verbs else set()) | limits.replies_needed()
    for name in () if partial else sorted(needed - catalogue.keys()):
        if name in limits.replies_needed():
            raise ProfileError(path, f"replies.{name}", "is required by the limits (give it, or set that limit to 0)")
        raise ProfileError(path, f"replies.{name}", "is required by the profile's commands")
    built = []
    for i, entry in enumerate(doc.get("quirks", [])):
        if not isinstance(entry, dict):
            raise ProfileError(path, f"quirks[{i}]", "must be a mapping with type and attributes")
        try:
            built.append(quirks.build(entry))
        except quirks.QuirkError as e:
            raise ProfileError(path, f"quirks[{i}].{e.key}", str(e)) from None
    sections = {}
    for key, parser in SECTIONS.items():
        try:
            sections[key] = parser(doc.get(key))
            validate = getattr(sections[key], "validate", None)
            if validate:
                validate(verbs, catalogue)
        except SectionError as e:
            raise ProfileError(path, f"{key}.{e.key}" if e.key else key, str(e)) from None
    return Profile(
        name=doc["name"], path=path, product=doc.get("product", ""), version=doc.get("version", ""),
        describes=doc.get("describes", ""), hostname=doc.get("hostname", ""), commands=verbs,
        ehlo_keywords=keywords, replies=catalogue, limits=limits,
        require_helo=doc.get("require_helo", True), quirks=tuple(built),
        sources=tuple(_strings(path, doc, "sources")), notes=doc.get("notes", ""),
        sections=sections, seed=doc.get("seed"), document=doc, hooks=_hooks(built),
    )


def _strings(path: Path, doc: dict, key: str) -> list[str]:
    values = doc.get(key, [])
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise ProfileError(path, f"{key}[{i}]", f"must be a quoted string, not {value!r}")
    return values


def _limits(path: Path, values: dict) -> Limits:
    defaults = Limits()
    for key, value in values.items():
        if not hasattr(defaults, key):
            raise ProfileError(path, f"limits.{key}", f"unknown limit; known: {', '.join(vars(defaults))}")
        want = type(getattr(defaults, key))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (want is int and not isinstance(value, int)):
            raise ProfileError(path, f"limits.{key}", f"must be {'an integer' if want is int else 'a number'}")
        if value < 0:
            raise ProfileError(path, f"limits.{key}", "must not be negative")
    return Limits(**values)


def _hooks(built: list[quirks.Quirk]) -> dict[str, tuple]:
    """For each hook, the quirks that override it, in profile order."""
    return quirks.hook_table(built)
