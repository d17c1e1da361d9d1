"""
Quirks: small named classes that bend the core's behaviour, configured by the
profile's ordered C{quirks:} list in Toxiproxy's shape::

    quirks:
      - type: reply_override
        attributes: {command: RCPT, reply: "452 Too many recipients", times: 2}

A quirk's dataclass fields are its attributes; L{register} files it under its
snake_case type name, and L{build} makes one from a profile entry, checking
every attribute's type, so that a profile that loads is a profile that runs.

The hooks (see L{Quirk}) are called in list order and each may leave the
default alone by returning C{None} (or what it was given).  Only quirks that
override a hook are ever called for it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import ClassVar

_REGISTRY: dict[str, type["Quirk"]] = {}

HOOKS = ("on_connect", "before_command", "ehlo_keywords", "transform_reply", "on_starttls", "after_tls",
         "before_data_end", "shape_reply")


class Quirk:
    """Base class of every quirk.  Subclasses are frozen dataclasses.

    Per-connection state never lives on the quirk (one instance serves every
    connection of a profile); use C{conn.session.counts} or C{conn.shared}.
    """

    type: ClassVar[str] = ""
    #: True if the quirk's output depends on how input is split into
    #: segments; such quirks opt out of the chunking-invariance property.
    boundary_sensitive: ClassVar[bool] = False

    def on_connect(self, conn) -> bool:
        """Before the greeting.  Return True if the quirk answered instead."""
        return False

    def before_command(self, conn, verb: str, arg: bytes) -> bool:
        """Before the handler of C{verb} runs (its count already includes this
        occurrence).  Return True if the quirk answered instead."""
        return False

    def ehlo_keywords(self, conn, keywords: list[str]) -> list[str]:
        """The EHLO keyword lines about to be sent; return the ones to send."""
        return keywords

    def transform_reply(self, conn, name: str, reply):
        """The catalogue reply C{name} about to be sent; return the one to send."""
        return reply

    def on_starttls(self, conn, pending: bytes) -> bytes:
        """Plaintext that followed STARTTLS in the same read; return what is
        processed after the handshake (by default nothing: RFC 3207 section 6)."""
        return b""

    def after_tls(self, conn) -> None:
        """The handshake has completed and the session was reset; the quirk
        may change C{conn.session} (for example C{tls_secure})."""

    def before_data_end(self, conn, data: bytes) -> bool:
        """The message C{data} is complete (end of DATA), before it is
        delivered.  Return True if the quirk answered instead: the message is
        then not delivered."""
        return False

    def shape_reply(self, conn, name: str, actions: list) -> list:
        """The actions that send one reply (at first a single C{Send}); return
        the actions to queue instead: the bytes split over several writes with
        C{Delay}s between them, say, or held back for a later write.  Not
        called for the reply after DATA, which the host writes once the
        message is stored."""
        return actions


def hook_table(built) -> dict[str, tuple]:
    """For each hook, the quirks that override it, in order."""
    return {
        hook: tuple(q for q in built if getattr(type(q), hook) is not getattr(Quirk, hook))
        for hook in HOOKS
    }


def attribute(f: dataclasses.Field) -> str:
    """The profile name of a dataclass field: C{from_} is C{from} (a Python keyword)."""
    return f.name[:-1] if f.name.endswith("_") else f.name


def register(name: str, registry: dict | None = None):
    """Class decorator: make a frozen dataclass of the class and file it as
    C{name} (in the quirk registry, or in C{registry})."""

    def decorate(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        cls.type = name
        (_REGISTRY if registry is None else registry)[name] = cls
        return cls

    return decorate


def types_() -> dict[str, type[Quirk]]:
    """Every registered quirk type, by name."""
    _load_builtin()
    return dict(_REGISTRY)


class QuirkError(ValueError):
    """A quirk entry that cannot be built; C{key} is the attribute at fault."""

    def __init__(self, key: str, problem: str):
        super().__init__(problem)
        self.key = key


def build(entry: dict, registry: dict | None = None, kind: str = "quirk") -> Quirk:
    """Build a quirk from C{{type, attributes}}, or raise L{QuirkError}.

    Another registry of attribute dataclasses (middleboxes) is built the same
    way by passing it, with the noun its messages use."""
    _load_builtin()
    registry = _REGISTRY if registry is None else registry
    unknown = set(entry) - {"type", "attributes"}
    if unknown:
        raise QuirkError(sorted(unknown)[0], f"unknown key (a {kind} has 'type' and 'attributes')")
    name = entry.get("type")
    cls = registry.get(name) if isinstance(name, str) else None
    if cls is None:
        raise QuirkError("type", f"unknown {kind} type {name!r}; known: {', '.join(sorted(registry))}")
    attributes = entry.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise QuirkError("attributes", "must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {attribute(f): f for f in dataclasses.fields(cls)}
    for key, value in attributes.items():
        if key not in fields:
            raise QuirkError(f"attributes.{key}", f"unknown attribute of {name}; known: {', '.join(fields)}")
        if not _is_instance(value, hints[fields[key].name]):
            raise QuirkError(f"attributes.{key}", f"must be {_describe(hints[fields[key].name])}, not {value!r}")
    missing = [n for n, f in fields.items() if n not in attributes and _required(f)]
    if missing:
        raise QuirkError(f"attributes.{missing[0]}", "is required")
    try:
        return cls(**{fields[key].name: value for key, value in attributes.items()})
    except ValueError as e:
        key = getattr(e, "key", None)
        raise QuirkError(f"attributes.{key}" if key else "attributes", str(e)) from None


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _is_instance(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1] or (object,)
        return isinstance(value, list) and all(_is_instance(v, item) for v in value)
    return isinstance(value, origin or hint)


def _describe(hint) -> str:
    names = {str: "a quoted string", int: "an integer", float: "a number", bool: "true or false"}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) in (list, tuple):
        return f"a list of {_describe(typing.get_args(hint)[0])}s"
    return names.get(hint, "null" if hint is type(None) else getattr(hint, "__name__", str(hint)))


def _load_builtin() -> None:
    # Importing the modules registers their quirks; done late to avoid cycles.
    from emulator.quirks import faults, replies, tls  # noqa: F401
