"""
Learned profile data (L{emulator.learn.infer.Learned}) as a profile file:
the keys of the README's "Writing a profile", every text quoted and marked
C{# [V] captured from <server> on <date>}, and a head comment listing what
the sessions never showed (left to the C{extends:} base) and what no
profile key could say.  Written as text, not through a YAML dumper, for
the comments; every scalar is a JSON string, which YAML reads as a
double-quoted one.
"""

from __future__ import annotations

import json
import textwrap

from emulator.learn.infer import Learned


def _q(value) -> str:
    """A YAML flow value: strings double-quoted, lists and mappings in flow style."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_q(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_q(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _comment(text: str, indent: str = "", first: str = "") -> list[str]:
    return [f"{indent}# {first}{line}" if i == 0 else f"{indent}#   {line}"
            for i, line in enumerate(textwrap.wrap(text, 96 - len(indent)) or [""])]


def render(learned: Learned, name: str) -> str:
    """The profile file C{name}.yaml."""
    mark = f"[V] {learned.source()}"
    out = [f"# Learned by `emulator learn` from {learned.sessions} session(s) {learned.source()}.",
           "# [V] marks texts the server sent, with {fields} where the bytes were the host name,",
           "# the client's address or words, a date or a queue id.  Regenerate rather than edit.",
           "#",
           f"# Never exercised by these sessions, so left to the base profile {learned.base}:"]
    for key, items in learned.untouched.items():
        if items:
            out += _comment(f"{key}: {', '.join(items)}", first="  ")
    if learned.notes:
        out.append("# What the sessions showed that this profile cannot say, or said twice:")
        for note in learned.notes:
            out += _comment(note, first="  - ")
    out.append(f"name: {_q(name)}")
    out.append(f"extends: {_q(learned.base)}")
    host = learned.hostname or "the server"
    out.append(f"product: {_q('Learned persona of ' + host)}")
    if learned.version:
        out.append(f"version: {_q(learned.version)}   # {mark} (the greeting)")
    else:
        out.append(f"version: {_q('unknown')}   # the greeting shows no version")
    out.append(f"describes: {_q(f'{host}, learned from {learned.sessions} session(s)')}")
    if learned.hostname:
        out.append(f"hostname: {_q(learned.hostname)}   # {mark} ({learned.why.get('hostname', '')})")
    out.append("sources:")
    out.append(f"  - {_q(f'{learned.source()} (emulator learn, {learned.sessions} session(s))')}")
    if learned.commands is not None:
        out += _comment(learned.commands_why)
        out.append(f"commands: {_q(learned.commands)}")
    if learned.ehlo_keywords is not None:
        out.append(f"ehlo_keywords: {_q(learned.ehlo_keywords)}   # {mark}, in its order")
    if learned.require_helo is not None:
        out.append(f"require_helo: {_q(learned.require_helo)}   # {mark}: {learned.why['require_helo']}")
    if learned.limits:
        out.append("limits:")
        for key, value in learned.limits.items():
            out.append(f"  {key}: {_q(value)}   # {mark}: {learned.why.get('limits', '')}")
    out.append("replies:")
    for key, lines in learned.replies.items():
        value = lines[0] if len(lines) == 1 else lines
        out.append(f"  {key}: {_q(value)}   # {mark} (reply to {learned.sources[key]})")
    if learned.tls:
        out += _comment(f"{mark}: {learned.why.get('tls', '')}")
        out.append("tls:")
        out += [f"  {key}: {_q(value)}" for key, value in learned.tls.items()]
    if learned.auth:
        out += _comment(f"{mark}: {learned.why.get('auth', 'AUTH answered as unknown or not listed')}")
        out.append("auth:")
        out += [f"  {key}: {_q(value)}" for key, value in learned.auth.items()]
    if learned.quirks:
        out.append("quirks:")
        for quirk in learned.quirks:
            out += _comment(f"{mark}: {quirk['why']}", indent="  ")
            out.append(f"  - type: {_q(quirk['type'])}")
            out.append(f"    attributes: {_q(quirk['attributes'])}")
    return "\n".join(out) + "\n"
