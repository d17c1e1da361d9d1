"""Test-local server profiles for the sender personas' tests.

This branch's server profiles predate authentication (issue 5 adds the AUTH
and XAUTH verbs, the ex50 and ims55sp1 profiles, and XAUTH on the post-fix
5.5 profiles).  Until it is merged, the tests use stand-ins written to
tmp_path: a shipped profile's resolved document with its own EHLO keywords
and the test-only quirk below, which answers AUTH NTLM and/or XAUTH NTLM
with L{emulator.auth.ntlm}'s acceptor and the emulator's default account
(EXAMPLE\\tester, secret).  The XAUTH form is the one issue 5 models:
C{XAUTH NTLM [initial-response]}, then the 334 exchange of AUTH NTLM.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from pathlib import Path

import yaml

from emulator import quirks

from emulator.profiles import loader as profiles
from emulator.auth.ntlm import Account, NTLMAcceptor, NTLMError, challenge_from_seed
from emulator.core.replies import Reply

ACCOUNT = Account("tester", "EXAMPLE", "secret")
STUB = "test_ntlm_stub"


@dataclasses.dataclass(frozen=True)
class NTLMStub(quirks.Quirk):
    """Answer C{AUTH NTLM} / C{XAUTH NTLM} (the verbs in C{verbs}) and add
    C{advertise} to the EHLO keywords."""

    verbs: list[str] = dataclasses.field(default_factory=lambda: ["AUTH"])
    advertise: list[str] = dataclasses.field(default_factory=list)

    def ehlo_keywords(self, conn, keywords):
        return keywords + list(self.advertise)

    def before_command(self, conn, verb: str, arg: bytes) -> bool:
        if verb not in self.verbs:
            return False
        mechanism, _, initial = arg.partition(b" ")
        if mechanism.upper() != b"NTLM":
            conn.send_reply(Reply(504, ("Unrecognized authentication type",)))
            return True
        acceptor = NTLMAcceptor([ACCOUNT], challenge=challenge_from_seed("test", conn.session.counts[verb]))

        def fail(conn, text: str) -> None:
            conn.event("auth", verb=verb, outcome="failed", reason=text)
            conn.send_reply(Reply(535, ("Authentication unsuccessful",)))

        def verify(conn, line: bytes) -> None:
            try:
                result = acceptor.verify(base64.b64decode(line, validate=True))
            except (binascii.Error, NTLMError) as e:
                return fail(conn, str(e))
            if not result.ok:
                return fail(conn, result.reason)
            conn.session.auth_user = f"{result.domain}\\{result.user}"
            conn.event("auth", verb=verb, outcome="ok", user=result.user)
            conn.send_reply(Reply(235, ("ntlm authentication successful",)))

        def negotiate(conn, line: bytes) -> None:
            try:
                challenge = acceptor.challenge_for(base64.b64decode(line, validate=True))
            except (binascii.Error, NTLMError) as e:
                return fail(conn, str(e))
            conn.send_reply(Reply(334, (base64.b64encode(challenge).decode("ascii"),)))
            conn.expect_line(verify)

        if initial:
            negotiate(conn, initial)
        else:
            conn.send_reply(Reply(334, ("ntlm supported",)))
            conn.expect_line(negotiate)
        return True


class _Dumper(yaml.SafeDumper):
    """Quote every string: reply texts must be quoted in a profile."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style='"'))


NTLMStub.type = STUB


def register() -> None:
    """File the stub under its type name (undone by L{unregister})."""
    quirks.types_()  # the built-in quirks first
    quirks.QUIRKS.types[STUB] = NTLMStub


def unregister() -> None:
    quirks.QUIRKS.types.pop(STUB, None)


def write_profile(folder: Path, name: str, *, base: str = "ims55sp4", auth_verbs=(), advertise=(),
                  **overrides) -> Path:
    """A standalone server profile C{folder/name.yaml}: C{base} resolved,
    without any AUTH/XAUTH of its own, plus the stub for C{auth_verbs}
    advertising C{advertise}; C{overrides} replace top-level keys."""
    document = profiles.resolved_document(base)
    document.pop("extends", None)
    document.pop("auth", None)
    document["name"] = name
    document["commands"] = [v for v in document["commands"] if v not in ("AUTH", "XAUTH")]
    document["ehlo_keywords"] = [k for k in document["ehlo_keywords"]
                                 if k.replace("=", " ").split()[0].upper() not in ("AUTH", "XAUTH")]
    if auth_verbs:
        document["quirks"] = [*document.get("quirks", []),
                              {"type": STUB, "attributes": {"verbs": list(auth_verbs), "advertise": list(advertise)}}]
    document.update(overrides)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.dump(document, Dumper=_Dumper, sort_keys=False), encoding="utf-8")
    return path


def ims55sp1_like(folder: Path) -> Path:
    """Exchange 5.5 before the KB Q195201 fix: AUTH (LOGIN listed, NTLM
    accepted, as in Q262945), no XAUTH.  Stands in for issue 5's ims55sp1."""
    return write_profile(folder, "local-ims55sp1", auth_verbs=["AUTH"], advertise=["AUTH LOGIN", "AUTH=LOGIN"])


def ims55_fixed_like(folder: Path, base: str = "ims55sp2") -> Path:
    """Exchange 5.5 after the fix: AUTH and XAUTH.  Stands in for issue 5's ims55sp2."""
    return write_profile(folder, f"local-{base}", base=base, auth_verbs=["AUTH", "XAUTH"],
                         advertise=["AUTH LOGIN", "AUTH=LOGIN", "XAUTH"])


def ex50_like(folder: Path) -> Path:
    """Exchange 5.0: NTLM through XAUTH only; AUTH is unknown ("500 command
    not recognized", KB Q195201).  Stands in for issue 5's ex50."""
    document = profiles.resolved_document("ims55sp4")
    replies = {**document["replies"], "unknown": "500 command not recognized"}
    return write_profile(folder, "local-ex50", auth_verbs=["XAUTH"], advertise=["XAUTH"], replies=replies,
                         version="5.0.1460.8", product="Microsoft Exchange Server 5.0 Internet Mail Service")
