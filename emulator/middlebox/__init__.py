"""
Middleboxes: SMTP-inspecting firewalls between the client and the server.

A middlebox is not a server profile.  It rewrites bytes in both directions
and wraps any profile, or a real server (Toxiproxy's upstream/downstream),
so "Exchange 5.5 SP2 behind a PIX" is a composition of two existing things:

    middlebox:                       # in a profile, or alone in a file
      type: pix-mailguard
      attributes: {dotcrlf_bug: true}

A middlebox type is a small record (L{emulator.middlebox.base.Middlebox})
whose fields are its attributes and whose hooks the sans-IO relay of
L{emulator.middlebox.relay} calls; L{MIDDLEBOXES} lists every type, and
L{build} makes one from C{{type, attributes}} through L{emulator.schema}, as
quirks are made.  The Twisted edge is L{emulator.host.middlebox}.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from emulator import schema
from emulator.middlebox import asa, pix, starttls
from emulator.middlebox.base import Middlebox
from emulator.schema import ProfileError, SchemaError

__all__ = ["MIDDLEBOXES", "Middlebox", "build", "load", "types_"]

#: Every middlebox type by name, listed here and nowhere else.
MIDDLEBOXES = schema.Family("middlebox", Middlebox, (pix.PIXMailguard, pix.PIXMailguardNoop, asa.ASAInspectESMTP,
                                                     starttls.StartTLSIntercept, starttls.StartTLSStrip))


def types_() -> dict[str, type[Middlebox]]:
    """Every middlebox type, by name."""
    return dict(MIDDLEBOXES.types)


def build(entry) -> Middlebox:
    """Build a middlebox from C{{type, attributes}}, or raise
    L{SchemaError<emulator.schema.SchemaError>} naming the key at fault."""
    return MIDDLEBOXES.build(entry)


def load(name_or_path: str | Path) -> Middlebox:
    """A middlebox from the command line: a type name (C{pix-mailguard}, all
    attributes at their defaults) or a YAML file holding C{type} and
    C{attributes}; a problem is a L{ProfileError} naming file and key."""
    text = str(name_or_path)
    if not text.endswith((".yaml", ".yml")) and "/" not in text:
        if text not in MIDDLEBOXES.types:
            known = sorted(MIDDLEBOXES.types)
            raise ProfileError(text, "(name)", f"no middlebox type of that name; {schema.did_you_mean(text, known)}"
                                               f"known: {', '.join(known)}")
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
    except SchemaError as e:
        raise ProfileError(path, e.key or "(file)", str(e)) from None
