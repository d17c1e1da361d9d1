"""
Profiles: one YAML file per product and version, loaded strictly.

A profile is data: identity, a reply catalogue, the verbs the product knew,
its EHLO keywords, limits, an ordered list of quirks and its sections (TLS,
authentication, a middlebox in front).  Loading resolves C{extends:}
(mappings merge key by key, everything else replaces), reads the result
with L{emulator.schema} against L{emulator.profiles.sections.Document} (every
key, type, range and choice; the quirks and sections are built there), then
checks what spans keys (verbs, keywords, replies), so that a profile that
loads is a profile that runs.  Every problem is a L{ProfileError} naming file
and key.

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

from emulator import quirks, schema
from emulator.auth.mechanisms import AuthSettings
from emulator.core import commands, replies
from emulator.core.relay import RelayRules
from emulator.middlebox import Middlebox
from emulator.profiles import sections
from emulator.profiles.sections import Limits
from emulator.schema import ProfileError
from emulator.tls.config import TLSConfig

__all__ = ["Limits", "Profile", "ProfileError", "SectionError", "check", "load", "names", "read_document",
           "resolve", "resolved_document", "search_path"]

_CHECKOUT_PROFILES = Path(__file__).resolve().parents[2] / "profiles"

#: A problem inside a section or an entry; C{key} is relative to it.
SectionError = schema.SchemaError


@dataclass(frozen=True)
class Profile:
    """A loaded, validated profile.

    @ivar tls: the C{tls:} section (L{emulator.tls.config}).
    @ivar auth: the C{auth:} section (L{emulator.auth.mechanisms}).
    @ivar middlebox: the C{middlebox:} section, or None (L{emulator.middlebox}).
    @ivar relay: the C{relay:} section, or None: every recipient is taken
        (L{emulator.core.relay}).
    @ivar handlers: the verb table of C{commands}: verb -> handler, MAIL
        gated by C{auth: required} (L{AuthSettings.adapt_verbs}).
    """

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
    helo_resets: bool = True
    xexch50: sections.Xexch50 = sections.Xexch50()
    quirks: tuple[quirks.Quirk, ...] = ()
    sources: tuple[str, ...] = ()
    notes: str = ""
    tls: TLSConfig = TLSConfig()
    auth: AuthSettings = AuthSettings()
    middlebox: Middlebox | None = None
    relay: RelayRules | None = None
    seed: int | None = None
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)
    hooks: Mapping[str, tuple] = field(default_factory=dict, repr=False)
    handlers: Mapping[str, Callable] = field(default_factory=dict, repr=False)


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
    """Parse one file with the safe loader and check its own keys (a
    mistake is named in the file that has it, not in one extending it)."""
    document = read_document(path)
    if document.get("role", "server") != "server":
        raise ProfileError(path, "role", f"a {document['role']} profile, not a server profile "
                                         "(sender personas: `emulator personas`)")
    try:
        schema.check(document, sections.Document, shallow=True)
    except schema.SchemaError as e:
        raise ProfileError(path, e.key, e.problem) from None
    if document.get("name") != path.stem:
        raise ProfileError(path, "name", f"must be present and equal the file name {path.stem!r}")
    return document


def _check_nodes(path: Path, node: yaml.Node, key: str, ancestors: frozenset = frozenset()) -> None:
    """Reject duplicate keys, recursive aliases, and reply texts that are not
    quoted (a plain YAML scalar loses trailing spaces and may turn into a number)."""
    if id(node) in ancestors:
        raise ProfileError(path, key or "(file)", "recursive YAML alias")
    inner = ancestors | {id(node)}
    # Scalars, most of the nodes, are checked in the loops rather than by a
    # call each (which cost a tenth of loading a profile).
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for k, v in node.value:
            name = f"{key}.{k.value}" if key else str(k.value)
            if not isinstance(k, yaml.ScalarNode):
                raise ProfileError(path, key or "(file)", "keys must be plain strings")
            if k.value in seen:
                raise ProfileError(path, name, "duplicate key")
            seen.add(k.value)
            if type(v) is not yaml.ScalarNode:
                _check_nodes(path, v, name, inner)
            elif v.style not in _QUOTED and name.startswith("replies."):
                raise ProfileError(path, name, "reply texts must be quoted")
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            if type(item) is not yaml.ScalarNode:
                _check_nodes(path, item, f"{key}[{i}]", inner)
            elif item.style not in _QUOTED and key.startswith("replies."):
                raise ProfileError(path, f"{key}[{i}]", "reply texts must be quoted")


_QUOTED = ('"', "'")


def _build(path: Path, doc: dict, partial: bool = False) -> Profile:
    for key in () if partial else sections.REQUIRED:
        if key not in doc:
            raise ProfileError(path, key, "is required")
    try:
        read = schema.read(doc, sections.Document, families=sections.FAMILIES)
        return _profile(path, doc, read, partial)
    except schema.SchemaError as e:
        raise ProfileError(path, e.key or "(file)", e.problem) from None


def _profile(path: Path, doc: dict, read: sections.Document, partial: bool) -> Profile:
    """The profile of a document that fits L{sections.Document}, after the
    checks across its keys; a problem is a L{schema.SchemaError}."""
    verbs = read.commands
    for i, verb in enumerate(verbs):
        if verb not in sections.VERBS:
            raise schema.invalid(f"commands[{i}]", f"no handler for {verb!r}; {schema.did_you_mean(verb, sections.VERBS)}"
                                                   f"known: {', '.join(sections.VERBS)}")
    for i, keyword in enumerate(read.ehlo_keywords):
        word = keyword.replace("=", " ").split(" ", 1)[0].upper()
        verb = commands.KEYWORD_VERBS.get(word)
        if verb and verb not in verbs:
            raise schema.invalid(f"ehlo_keywords[{i}]", f"advertises {word} but commands: lacks {verb}")
    catalogue = {}
    for name, text in read.replies.items():
        try:
            catalogue[name] = replies.parse(text)
        except replies.ReplyError as e:
            raise schema.invalid(f"replies.{name}", str(e)) from None
    limits = read.limits
    needed = (sections.replies_needed(verbs, read.xexch50) | ({"ehlo"} if "EHLO" in verbs else set())
              | limits.replies_needed())
    for name in () if partial else sorted(needed - catalogue.keys()):
        if name in limits.replies_needed():
            raise schema.invalid(f"replies.{name}", "is required by the limits (give it, or set that limit to 0)")
        raise schema.invalid(f"replies.{name}", "is required by the profile's commands")
    for key in ("tls", "auth"):
        try:
            getattr(read, key).validate(verbs, catalogue)
        except schema.SchemaError as e:
            raise e.within(key) from None
    if read.relay is not None and not partial:
        if "RCPT" not in verbs:
            raise schema.invalid("relay", "refuses recipients, but commands: lacks RCPT")
        if "relay_denied" not in catalogue:
            raise schema.invalid("relay", "needs a relay_denied reply in replies: (the product's refusal at RCPT)")
    doc = {"replies": {}, "commands": [], **doc}
    return Profile(
        name=read.name, path=path, product=read.product, version=read.version, describes=read.describes,
        hostname=read.hostname, commands=verbs, ehlo_keywords=read.ehlo_keywords, replies=catalogue,
        limits=limits, require_helo=read.require_helo, helo_resets=read.helo_resets, xexch50=read.xexch50,
        quirks=read.quirks, sources=read.sources, notes=read.notes, tls=read.tls, auth=read.auth,
        middlebox=read.middlebox, relay=read.relay, seed=read.seed,
        document=doc, hooks=_hooks(read.quirks),
        handlers=read.auth.adapt_verbs({verb: sections.VERBS[verb][0] for verb in verbs}),
    )


def _hooks(built) -> dict[str, tuple]:
    """For each hook, the quirks that override it, in profile order."""
    return quirks.hook_table(built)
