"""
Faults from text: the C{--fault} syntax, and the catalogue that
C{emulator faults} prints.

    STEP:TYPE[=VALUE][:ATTRIBUTE=VALUE]...

    rcpt:reply=452 4.5.3 Too many recipients:times=2
    data_end:reply=451 4.3.0 Try again later:times=2:scope=peer
    ehlo:split=lines
    connect:delay=2:jitter=0.5:probability=0.3

C{STEP} is C{connect}, a verb, C{data_end} (or C{.}) or C{*}; C{TYPE=VALUE}
sets the fault's main attribute (the reply of C{reply}, the seconds of
C{delay}, ...).  A colon starts a new attribute only where a name and C{=}
follow it, so reply texts may hold colons; C{\\:} is a literal colon in any
case, C{|} separates the lines of a multi-line reply (C{\\|} is a literal
one), C{,} the numbers of a list, and C{\\\\} is a backslash.

L{parse} gives the same quirk that the profile entry C{{type, attributes}}
gives, through the same checks (L{emulator.schema}); its errors are one
line.  This module reads only the text: what each piece means is checked
where the profile's entries are.
"""

from __future__ import annotations

import re
import types as _types
import typing

from emulator import quirks, schema
from emulator.quirks.faults import Fault

_ESCAPES = {"\\\\": "\ue000", "\\:": "\ue001", "\\|": "\ue002"}
_RESTORE = {v: k[1] for k, v in _ESCAPES.items()}
_BREAK = re.compile(r":(?=[a-z_]+(?:=|:|\Z))")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class FaultError(ValueError):
    """A fault spec that cannot be built; C{str()} is one line."""


def types() -> dict[str, type[Fault]]:
    """Every fault type, by name, in the order they are documented."""
    return {name: cls for name, cls in quirks.types_().items() if issubclass(cls, Fault)}


def parse(spec: str | dict) -> quirks.Quirk:
    """A quirk from C{--fault} text or from a profile entry C{{type, attributes}}."""
    if isinstance(spec, dict):
        try:
            return quirks.build(spec)
        except quirks.QuirkError as e:
            raise FaultError(f"{e.key}: {e}") from None
    if not isinstance(spec, str):
        raise FaultError(f"a fault is text or a mapping, not {spec!r}")
    return _build(spec)


def _build(spec: str) -> quirks.Quirk:
    entry = _entry(spec)
    try:
        return quirks.build(entry)
    except quirks.QuirkError as e:
        key = e.key.removeprefix("attributes.")
        raise FaultError(f"fault {spec!r}: {key}: {e}") from None


def _entry(spec: str) -> dict:
    """The profile entry that C{spec} stands for."""
    text = spec
    for escape, placeholder in _ESCAPES.items():
        text = text.replace(escape, placeholder)
    parts = _BREAK.split(text)
    if len(parts) < 2 or not parts[0]:
        raise FaultError(f"fault {spec!r}: write STEP:TYPE[=VALUE][:ATTRIBUTE=VALUE]..., "
                         "e.g. rcpt:reply=452 4.5.3 Too many recipients:times=2")
    step, (name, _, value), rest = parts[0], parts[1].partition("="), parts[2:]
    cls = types().get(name)
    if cls is None:
        raise FaultError(f"fault {spec!r}: unknown fault type {name!r}; known: {', '.join(types())}")
    fields = schema.keys(cls)
    raw = {"command": step}
    if _ or value:
        if cls.primary is None:
            raise FaultError(f"fault {spec!r}: {name} takes no value; write {step}:{name}")
        raw[cls.primary] = value
    for part in rest:
        key, equals, value = part.partition("=")
        if not equals:
            raise FaultError(f"fault {spec!r}: {key!r} needs a value ({key}=...)")
        if key not in fields:
            raise FaultError(f"fault {spec!r}: unknown attribute {key!r} of {name}; known: {', '.join(fields)}")
        if key in raw:
            raise FaultError(f"fault {spec!r}: {key} is given twice")
        raw[key] = value
    hints = typing.get_type_hints(cls)
    attributes = {}
    for key, value in raw.items():
        try:
            attributes[key] = _convert(value, hints[fields[key]])
        except ValueError:
            attributes[key] = _restore(value)  # quirks.build says what it should be
    return {"type": name, "attributes": attributes}


def _restore(text: str) -> str:
    for placeholder, char in _RESTORE.items():
        text = text.replace(placeholder, char)
    return text


def _convert(text: str, hint):
    """Text from the command line as the attribute's type, or ValueError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, _types.UnionType) and set(typing.get_args(hint)) == {int, float}:
        return float(text)  # a number (schema.number): written as text, it was always a float
    if origin in (typing.Union, _types.UnionType):
        options = typing.get_args(hint)
        if str in options and "|" not in text:  # one line of text stays text
            options = tuple(o for o in options if typing.get_args(o) != (str,))
        for option in sorted(options, key=lambda h: h is str):  # str last: it takes anything
            try:
                return _convert(text, option)
            except ValueError:
                continue
        raise ValueError(text)
    if origin is list:
        (item,) = typing.get_args(hint)
        separator = "|" if item is str else ","
        return [_convert(piece, item) for piece in text.split(separator)]
    if hint is type(None):
        if text in ("", "none", "null"):
            return None
        raise ValueError(text)
    if hint is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError(text)
    if hint in (int, float):
        return hint(text)
    return _restore(text)


# -- the catalogue ------------------------------------------------------------


def attributes(cls) -> list[tuple[str, str, str]]:
    """(name, default, description) of each attribute of C{cls} that it
    adds to those of L{Fault}, in declaration order, from its docstring."""
    docs = _ivars(cls.__doc__ or "")
    common = set(schema.keys(Fault))
    rows = []
    for f in schema.fields(cls):
        if cls is not Fault and f.key in common:
            continue
        default = "required" if f.default is schema.REQUIRED else repr(f.default)
        rows.append((f.key, default, docs.get(f.key, "")))
    return rows


def summary(cls) -> str:
    """The first paragraph of a fault's docstring, as one line."""
    first = (cls.__doc__ or "").strip().split("\n\n")[0]
    return _plain(" ".join(first.split()))


def _ivars(doc: str) -> dict[str, str]:
    found, name = {}, None
    for line in doc.splitlines():
        match = re.match(r"\s*@ivar (\w+):\s*(.*)", line)
        if match:
            name = match.group(1)
            found[name] = match.group(2).strip()
        elif name and line.strip() and not line.strip().startswith("@"):
            found[name] += " " + line.strip()
        else:
            name = None
    return {k: _plain(v) for k, v in found.items()}


def _plain(text: str) -> str:
    """Epytext markup (C{x}, L{x}) as plain text."""
    return re.sub(r"[CL]\{((?:[^{}]|\{[^{}]*\})*)\}", r"\1", text)


def catalogue() -> str:
    """What C{emulator faults} prints: every fault type with its attributes."""
    out = ["Every fault has these attributes (STEP is the first field of --fault):"]
    out += _rows(attributes(Fault))
    for name, cls in types().items():
        value = f"={cls.primary.upper()}" if cls.primary else ""
        out += ["", f"{name}  (--fault 'STEP:{name}{value}[:ATTRIBUTE=VALUE]...')", f"    {summary(cls)}"]
        out += _rows(attributes(cls))
    return "\n".join(out) + "\n"


def _rows(rows) -> list[str]:
    return [f"    {name:<12} {description} [default: {default}]" for name, default, description in rows]
