"""
Sans-IO NTLMSSP acceptor (server side) for C{AUTH NTLM} (Exchange 5.5) and
C{XAUTH} (Exchange 5.0).

L{NTLMAcceptor} answers a NEGOTIATE with a CHALLENGE and checks the
AUTHENTICATE against accounts given as data. It does no I/O, reads neither
clock nor environment and draws no randomness (see L{challenge_from_seed}).
NTLMv2 and NTLMv1 (including the NTLM2 session response) are checked on the
NT response; LM-only responses are refused. The MIC is not checked: SMTP AUTH
neither signs nor seals, and Exchange 5.x predates the MIC.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Sequence, TypeVar

# pyspnego keeps its NTLM primitives in the private package spnego._ntlm_raw.
# Every import from it lives here and nowhere else in the project. These names
# exist in pyspnego 0.6.3 to 0.12.4; require pyspnego>=0.11,<0.13.
from spnego._ntlm_raw.crypto import compute_response_v1, hmac_md5, lmowfv1, ntowfv1, ntowfv2
from spnego._ntlm_raw.messages import Authenticate, AvId, Challenge, Negotiate, TargetInfo, Version
from spnego._ntlm_raw.messages import NegotiateFlags as F

from emulator.auth.accounts import Account

_Message = TypeVar("_Message", Negotiate, Authenticate)

_SIGNATURE = b"NTLMSSP\x00"
# Client-requested flags the acceptor grants; anything else is dropped.
_GRANTED = F.unicode | F.oem | F.sign | F.seal | F.always_sign | F.lm_key | F.extended_session_security
_GRANTED |= F.version | F.key_128 | F.key_exch | F.key_56
_ALWAYS = F.request_target | F.ntlm | F.target_info | F.target_type_domain
# Windows 2000 (build 2195), sent only to clients that set NTLMSSP_NEGOTIATE_VERSION.
_SERVER_VERSION = Version(major=5, minor=0, build=2195)


@dataclass(frozen=True)
class NTLMResult:
    """
    Outcome of L{NTLMAcceptor.verify}. C{user}, C{domain} and C{workstation}
    are as the client sent them. C{version} is C{"NTLMv1"}, C{"NTLMv2"},
    C{"anonymous"}, or C{""} for an unrecognised response. C{reason} is C{""}
    on success, else a short reason for logs that never holds a password.
    """

    ok: bool
    user: str
    domain: str
    workstation: str
    version: str
    reason: str


class NTLMError(ValueError):
    """A token is malformed, of the wrong message type, or out of order."""


def challenge_from_seed(seed: str | int, counter: int) -> bytes:
    """Deterministic 8-byte server challenge: SHA-256 of C{f"{seed}:{counter}"}, first 8 bytes."""
    return hashlib.sha256(f"{seed}:{counter}".encode()).digest()[:8]


def _parse(token: bytes, kind: type[_Message], minimum: int, header: int, buffers: Sequence[int]) -> _Message:
    """
    Check signature, message type and that each security buffer (at offsets
    C{buffers}) lies after the header and inside the token; unpack with
    pyspnego. Tokens of C{minimum} bytes or more are zero-padded up to
    C{header} (Eric Glass documents a 16-byte minimal NEGOTIATE).
    """
    if len(token) < minimum or token[:8] != _SIGNATURE or token[8:12] != struct.pack("<I", kind.MESSAGE_TYPE):
        raise NTLMError(f"not an NTLMSSP {kind.__name__} message")
    padded = token.ljust(header, b"\x00")
    for at in buffers:
        length, _, offset = struct.unpack_from("<HHI", padded, at)
        if length and (offset < header or offset + length > len(token)):
            raise NTLMError(f"{kind.__name__} security buffer at {at} lies outside the payload")
    return kind.unpack(padded)


class NTLMAcceptor:
    """
    One NTLMSSP exchange, server side: call L{challenge_for} once, then
    L{verify} once. Make a new acceptor, with a fresh challenge, per exchange.
    """

    def __init__(
        self,
        accounts: Sequence[Account],
        *,
        challenge: bytes,
        target_name: str = "EXAMPLE",
        netbios_computer: str = "MAIL",
        dns_computer: str = "mail.example.test",
        dns_domain: str = "example.test",
        allow_v1: bool = True,
        allow_v2: bool = True,
        timestamp: int | None = None,
    ) -> None:
        """
        @param challenge: the 8-byte server challenge.
        @param target_name: NetBIOS domain, sent as TargetName and MsvAvNbDomainName.
        @param timestamp: Windows FILETIME for MsvAvTimestamp, which is omitted
            when C{None}. With it, modern clients add a MIC (not checked).
        @raise ValueError: C{challenge} is not 8 bytes, or C{timestamp} is out of range.
        """
        if len(challenge) != 8:
            raise ValueError("challenge must be 8 bytes")
        self._accounts = tuple(accounts)
        self._challenge = bytes(challenge)
        self._target_name = target_name
        self._allow = {"NTLMv1": allow_v1, "NTLMv2": allow_v2}
        self._target_info = TargetInfo()
        self._target_info[AvId.nb_computer_name] = netbios_computer
        self._target_info[AvId.nb_domain_name] = target_name
        self._target_info[AvId.dns_computer_name] = dns_computer
        self._target_info[AvId.dns_domain_name] = dns_domain
        if timestamp is not None:
            try:
                self._target_info[AvId.timestamp] = struct.pack("<Q", timestamp)
            except (struct.error, OverflowError) as e:
                raise ValueError("timestamp is not a representable FILETIME") from e
        self._stage = "negotiate"

    def challenge_for(self, negotiate_token: bytes) -> bytes:
        """
        Answer a NEGOTIATE (type 1) message with a CHALLENGE (type 2).

        @raise NTLMError: the token is not a well-formed NEGOTIATE, or a
            NEGOTIATE was already processed.
        """
        if self._stage != "negotiate":
            raise NTLMError("NEGOTIATE out of order")
        negotiate = _parse(negotiate_token, Negotiate, 16, 32, (16, 24))
        flags = (negotiate.flags & _GRANTED) | _ALWAYS
        flags = flags & ~F.oem if flags & F.unicode else flags | F.oem
        if flags & F.extended_session_security:
            flags &= ~F.lm_key
        challenge = Challenge(
            flags,
            self._challenge,
            target_name=self._target_name,
            target_info=self._target_info,
            version=_SERVER_VERSION if flags & F.version else None,
        )
        self._stage = "authenticate"
        return challenge.pack()

    def verify(self, authenticate_token: bytes) -> NTLMResult:
        """
        Check an AUTHENTICATE (type 3) message against the accounts. Only one
        attempt is allowed per challenge.

        @raise NTLMError: the token is not a well-formed AUTHENTICATE, or
            L{challenge_for} has not been called, or L{verify} already was.
        """
        if self._stage != "authenticate":
            raise NTLMError("AUTHENTICATE out of order")
        self._stage = "done"
        auth = _parse(authenticate_token, Authenticate, 64, 64, (12, 20, 28, 36, 44, 52))
        try:
            user, domain, workstation = auth.user_name or "", auth.domain_name or "", auth.workstation or ""
        except ValueError as e:
            raise NTLMError(f"undecodable name in Authenticate: {e}") from e
        lm, nt = auth.lm_challenge_response or b"", auth.nt_challenge_response or b""

        def result(version: str, reason: str) -> NTLMResult:
            return NTLMResult(not reason, user, domain, workstation, version, reason)

        if not nt and lm in (b"", b"\x00"):
            return result("anonymous", "anonymous logon refused")
        if len(nt) < 24:
            return result("", "no NT response (LM-only) or malformed NT response")
        version = "NTLMv1" if len(nt) == 24 else "NTLMv2"
        if not self._allow[version]:
            return result(version, f"{version} not allowed")
        candidates = [a for a in self._accounts if a.user.casefold() == user.casefold()]
        if not candidates:
            return result(version, "unknown user")
        candidates = [a for a in candidates if a.domain in ("", "*") or a.domain.casefold() == domain.casefold()]
        if not candidates:
            return result(version, "domain does not match account")
        if any(self._response_matches(a.password, user, domain, auth.flags, lm, nt) for a in candidates):
            return result(version, "")
        return result(version, "wrong password")

    def _response_matches(self, password: str, user: str, domain: str, flags: int, lm: bytes, nt: bytes) -> bool:
        """
        Recompute the NT response for C{password} and compare in constant time.

        NTLMv2 checks NTProofStr = HMAC-MD5(NTOWFv2, server challenge + blob),
        with the user and domain exactly as the client sent them. NTLMv1 uses
        the client challenge from the LM field when the AUTHENTICATE sets
        extended session security (NTLM2 session response).
        """
        nt_hash = ntowfv1(password)
        if len(nt) > 24:
            proof = hmac_md5(ntowfv2(user, nt_hash, domain), self._challenge + nt[16:])
            return hmac.compare_digest(proof, nt[:16])
        expected = compute_response_v1(flags, nt_hash, lmowfv1(password), self._challenge, lm[:8])[0]
        return hmac.compare_digest(expected, nt)
