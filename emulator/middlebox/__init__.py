"""
Middleboxes: SMTP-inspecting firewalls between the client and the server.

A middlebox is not a server profile.  It rewrites bytes in both directions
and wraps any profile, or a real server (Toxiproxy's upstream/downstream),
so "Exchange 5.5 SP2 behind a PIX" is a composition of two existing things:

    middlebox:                       # in a profile, or alone in a file
      type: pix-mailguard
      attributes: {dotcrlf_bug: true}

A middlebox type is a small frozen dataclass registered with L{register},
whose fields are its attributes and whose hooks (see L{Middlebox}) the
sans-IO relay of L{emulator.middlebox.relay} calls; L{build} makes one from
C{{type, attributes}}, checking every attribute as quirks are checked.  The
Twisted edge is L{emulator.host.middlebox}.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import yaml

from emulator import quirks
from emulator.profiles.loader import ProfileError, SectionError, section

_REGISTRY: dict[str, type["Middlebox"]] = {}


class Middlebox:
    """Base class of every middlebox type.  Subclasses are frozen dataclasses.

    One instance serves every connection; per-connection state lives on the
    relay (C{relay.notes}).  Each hook gets the relay and returns what passes.
    """

    type: ClassVar[str] = ""
    #: True if what passes depends on how input is split into segments.
    boundary_sensitive: ClassVar[bool] = False

    def on_greeting(self, relay, reply: bytes) -> bytes:
        """The server's greeting (all its lines); return what the client gets."""
        return reply

    def on_command(self, relay, verb: str, line: bytes) -> bytes | None:
        """A command line from the client, CRLF included, and its upper-cased
        verb; return the bytes passed to the server, or None to pass nothing
        (the middlebox may have answered with C{relay.answer})."""
        return line

    def on_reply(self, relay, command: str, reply: bytes) -> bytes:
        """The server's reply (all its lines) to C{command} (the verb as the
        server received it); return what the client gets."""
        return reply

    def on_split_terminator(self, relay, segment: bytes, lone: bool) -> bool:
        """A segment completes the end of data (CRLF.CRLF) that began in an
        earlier segment; C{lone} when it starts with the whole C{.CRLF}.
        Return True to drop the segment instead of passing it."""
        return False


def register(name: str):
    """Class decorator: make a frozen dataclass of the class and file it as
    C{name} among the middlebox types (as quirks are filed)."""
    return quirks.register(name, _REGISTRY)


def types_() -> dict[str, type[Middlebox]]:
    """Every registered middlebox type, by name."""
    _load_builtin()
    return dict(_REGISTRY)


def build(entry) -> Middlebox:
    """Build a middlebox from C{{type, attributes}}, or raise L{SectionError}
    naming the key at fault (the checks are the quirks' own)."""
    _load_builtin()
    if not isinstance(entry, dict):
        raise SectionError("", "must be a mapping with type and attributes")
    try:
        return quirks.build(entry, _REGISTRY, "middlebox")
    except quirks.QuirkError as e:
        raise SectionError(e.key, str(e)) from None


def invalid(key: str, problem: str) -> ValueError:
    """The error a middlebox's C{__post_init__} raises for attribute C{key}."""
    error = ValueError(problem)
    error.key = key
    return error


@section("middlebox")
def parse(value: dict | None) -> Middlebox | None:
    """The profile section: None when the profile has none."""
    return None if value is None else build(value)


def load(name_or_path: str | Path) -> Middlebox:
    """A middlebox from the command line: a type name (C{pix-mailguard}, all
    attributes at their defaults) or a YAML file holding C{type} and
    C{attributes}; a problem is a L{ProfileError} naming file and key."""
    text = str(name_or_path)
    if not text.endswith((".yaml", ".yml")) and "/" not in text:
        if text not in types_():
            raise ProfileError(text, "(name)", f"no middlebox type of that name; known: {', '.join(sorted(_REGISTRY))}")
        return build({"type": text})
    path = Path(text)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ProfileError(path, "(file)", f"cannot read: {e}") from None
    except yaml.YAMLError as e:
        raise ProfileError(path, "(file)", f"not valid YAML: {getattr(e, 'problem', e)}") from None
    try:
        return build(document)
    except SectionError as e:
        raise ProfileError(path, e.key or "(file)", str(e)) from None


def _load_builtin() -> None:
    # Importing the modules registers their types; done late to avoid cycles.
    from emulator.middlebox import pix, starttls  # noqa: F401
