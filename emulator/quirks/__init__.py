"""
Quirks: small named classes that bend the core's behaviour, configured by the
profile's ordered C{quirks:} list in Toxiproxy's shape::

    quirks:
      - type: reply_override
        attributes: {command: RCPT, reply: "452 Too many recipients", times: 2}

A quirk type is a record (L{emulator.core.hooks.Quirk}) whose fields are
its attributes; the families below are every quirk type there is, and
L{build} makes one from a profile entry through L{emulator.schema}, checking
every attribute, so that a profile that loads is a profile that runs.
L{emulator.quirks.spec} reads the same quirks from C{--fault} text.

The hooks (see L{Quirk}) are called in list order and each may leave the
default alone by returning C{None} (or what it was given).  Only quirks that
override a hook are ever called for it.
"""

from __future__ import annotations

import dataclasses

from emulator import schema
from emulator.quirks import faults, replies, tls
from emulator.core.hooks import HOOKS, Quirk, hook_table

__all__ = ["HOOKS", "QUIRKS", "Quirk", "QuirkError", "build", "hook_table", "register", "types_"]

#: Every quirk type by its profile name: the families, listed here and
#: nowhere else (faults first: C{emulator faults} documents them in this order).
QUIRKS = schema.Family("quirk", Quirk, (*faults.TYPES, *replies.TYPES, *tls.TYPES))

#: A quirk entry that cannot be built; C{key} is the key at fault (C{attributes.times}).
QuirkError = schema.SchemaError


def types_() -> dict[str, type[Quirk]]:
    """Every quirk type, by name."""
    return dict(QUIRKS.types)


def build(entry: dict) -> Quirk:
    """Build a quirk from C{{type, attributes}}, or raise L{QuirkError}."""
    return QUIRKS.build(entry)


def register(name: str):
    """Class decorator for a quirk of one's own (a test suite's, say): make a
    frozen dataclass of the class and add it to L{QUIRKS} as C{name}.  The
    emulator's own quirks are listed in L{QUIRKS} instead."""

    def decorate(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        cls.type = name
        QUIRKS.types[name] = cls
        return cls

    return decorate
