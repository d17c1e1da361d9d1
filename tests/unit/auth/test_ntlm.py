"""
Tests for L{emulator.auth.ntlm}: real exchanges with pyspnego's NTLM client, failure
reasons, hostile tokens, determinism and a known Exchange 5.5 vector.
"""

import base64
import hashlib
import struct

import pytest
import spnego
from hypothesis import example, given
from hypothesis import strategies as st

from emulator.auth.ntlm import Account, NTLMAcceptor, NTLMError, NTLMResult, challenge_from_seed

PASSWORD = "Corr3ct-Horse!"
ACCOUNTS = [Account("alice", "EXAMPLE", PASSWORD), Account("bob", "", "b0b-pass"), Account("carol", "*", "c4rol")]
CHALLENGE = challenge_from_seed("tests", 0)
# Microsoft KB Q262945: client NEGOTIATE sent to an Exchange 5.5 server.
KB_Q262945_NEGOTIATE = base64.b64decode("TlRMTVNTUAABAAAAt5IAQAcABwAgAAAAAAAAAAAAAABUSU1EVU1QAAAAAAAAAAA=")
# Eric Glass's "minimal" 16-byte type-1: signature, type, flags (OEM, request target, NTLM).
MINIMAL_NEGOTIATE = bytes.fromhex("4e544c4d535350000100000006020000")
SIG = b"NTLMSSP\x00"


def exchange(acceptor, username, password, monkeypatch, lm_compat=None):
    """Run a full pyspnego client exchange against C{acceptor}; return the result and the AUTHENTICATE token."""
    monkeypatch.setenv("NETBIOS_COMPUTER_NAME", "WS01")
    if lm_compat is None:
        monkeypatch.delenv("LM_COMPAT_LEVEL", raising=False)
    else:
        monkeypatch.setenv("LM_COMPAT_LEVEL", str(lm_compat))  # read when the client is created
    client = spnego.client(
        username, password, hostname="mail.example.test", protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm
    )
    authenticate = client.step(acceptor.challenge_for(client.step()))
    return acceptor.verify(authenticate), authenticate


def type3(lm=b"", nt=b"", domain="", user="", workstation="", flags=0x00000001):
    """Pack an AUTHENTICATE by hand (no version or MIC; str names in UTF-16) for cases pyspnego's client won't make."""
    fields, payload = b"", b""
    names = [n.encode("utf-16-le") if isinstance(n, str) else n for n in (domain, user, workstation)]
    for value in (lm, nt, *names, b""):
        fields += struct.pack("<HHI", len(value), len(value), 64 + len(payload))
        payload += value
    return SIG + struct.pack("<I", 3) + fields + struct.pack("<I", flags) + payload


def av_pairs(challenge_token):
    """Decode the TargetInfo AV pairs of a CHALLENGE into {AvId: raw value}."""
    length, _, offset = struct.unpack_from("<HHI", challenge_token, 40)
    blob, pairs = challenge_token[offset : offset + length], {}
    while blob:
        av_id, av_len = struct.unpack_from("<HH", blob)
        pairs[av_id] = blob[4 : 4 + av_len]
        blob = blob[4 + av_len :]
    return pairs


def genuine_authenticate():
    """A genuine NTLMv2 AUTHENTICATE from pyspnego for alice (with version, workstation and MIC) for L{CHALLENGE}."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        acceptor = NTLMAcceptor(ACCOUNTS, challenge=CHALLENGE, timestamp=133_000_000_000_000_000)
        return exchange(acceptor, "EXAMPLE\\alice", PASSWORD, monkeypatch)[1]


REAL_AUTHENTICATE = genuine_authenticate()


def challenged():
    """An acceptor over L{ACCOUNTS} that has already answered the KB negotiate."""
    acceptor = NTLMAcceptor(ACCOUNTS, challenge=CHALLENGE)
    acceptor.challenge_for(KB_Q262945_NEGOTIATE)
    return acceptor


@pytest.mark.parametrize("timestamp", [None, 133_000_000_000_000_000])
def test_pyspnego_ntlmv2_client(monkeypatch, timestamp):
    """pyspnego's default (NTLMv2) client authenticates, with and without MsvAvTimestamp in the challenge."""
    acceptor = NTLMAcceptor(ACCOUNTS, challenge=CHALLENGE, timestamp=timestamp)
    result, _ = exchange(acceptor, "EXAMPLE\\alice", PASSWORD, monkeypatch)
    assert result == NTLMResult(True, "alice", "EXAMPLE", "WS01", "NTLMv2", "")


@pytest.mark.parametrize("lm_compat, ess", [(0, False), (1, True), (2, True)])
def test_pyspnego_ntlmv1_client(monkeypatch, lm_compat, ess):
    """LM_COMPAT_LEVEL 0-2 makes pyspnego send NTLMv1; level 0 drops extended session security, 1-2 keep it."""
    acceptor = NTLMAcceptor(ACCOUNTS, challenge=CHALLENGE)
    result, token = exchange(acceptor, "EXAMPLE\\alice", PASSWORD, monkeypatch, lm_compat)
    assert bool(struct.unpack_from("<I", token, 60)[0] & 0x00080000) is ess
    assert (result.ok, result.version, result.reason) == (True, "NTLMv1", "")


def test_ntlmv1_refused_when_disabled(monkeypatch):
    """allow_v1=False rejects a correct NTLMv1 response."""
    acceptor = NTLMAcceptor(ACCOUNTS, challenge=CHALLENGE, allow_v1=False)
    result, _ = exchange(acceptor, "EXAMPLE\\alice", PASSWORD, monkeypatch, lm_compat=2)
    assert (result.ok, result.version, result.reason) == (False, "NTLMv1", "NTLMv1 not allowed")


def test_ntlmv2_refused_when_disabled(monkeypatch):
    """allow_v2=False rejects a correct NTLMv2 response."""
    acceptor = NTLMAcceptor(ACCOUNTS, challenge=CHALLENGE, allow_v2=False)
    result, _ = exchange(acceptor, "EXAMPLE\\alice", PASSWORD, monkeypatch)
    assert (result.ok, result.version) == (False, "NTLMv2")


@pytest.mark.parametrize("username", ["example\\ALICE", "Example\\Alice"])
def test_names_case_insensitive(monkeypatch, username):
    """User and domain match accounts case-insensitively; the result reports them as the client sent them."""
    result, _ = exchange(NTLMAcceptor(ACCOUNTS, challenge=CHALLENGE), username, PASSWORD, monkeypatch)
    assert result.ok and f"{result.domain}\\{result.user}" == username


@pytest.mark.parametrize(
    "username, password", [("ANYDOM\\bob", "b0b-pass"), ("bob", "b0b-pass"), ("X\\carol", "c4rol")]
)
def test_wildcard_domain(monkeypatch, username, password):
    """An account with domain "" or "*" accepts any domain, including none."""
    result, _ = exchange(NTLMAcceptor(ACCOUNTS, challenge=CHALLENGE), username, password, monkeypatch)
    assert result.ok


@pytest.mark.parametrize(
    "username, password, reason",
    [
        ("EXAMPLE\\alice", "wrong-" + PASSWORD, "wrong password"),
        ("EXAMPLE\\mallory", PASSWORD, "unknown user"),
        ("OTHER\\alice", PASSWORD, "domain does not match account"),
    ],
)
@pytest.mark.parametrize("lm_compat", [None, 0, 2])
def test_failures_give_reason_without_password(monkeypatch, username, password, reason, lm_compat):
    """Bad password, unknown user and wrong domain fail with a reason that, like the repr, hides the password."""
    result, _ = exchange(NTLMAcceptor(ACCOUNTS, challenge=CHALLENGE), username, password, monkeypatch, lm_compat)
    assert (result.ok, result.reason) == (False, reason)
    assert PASSWORD not in result.reason and PASSWORD not in repr(result)


def test_account_repr_hides_password():
    """Logging an Account does not leak its password."""
    assert PASSWORD not in repr(ACCOUNTS[0]) and "alice" in repr(ACCOUNTS[0])


def test_password_as_hashes(monkeypatch):
    """A password written LMHASH:NTHASH is used as the hashes (pyspnego's convention), so no clear text is needed."""
    hashes = "00000000000000000000000000000000:" + "8846f7eaee8fb117ad06bdd830b7586c"  # NT hash of "password"
    acceptor = NTLMAcceptor([Account("dave", "", hashes)], challenge=CHALLENGE)
    assert exchange(acceptor, "dave", "password", monkeypatch)[0].ok


@pytest.mark.parametrize("lm", [b"", b"\x00"])
def test_anonymous(lm):
    """Empty responses are an anonymous logon: refused, version "anonymous"."""
    result = challenged().verify(type3(lm=lm))
    assert (result.ok, result.version, result.user) == (False, "anonymous", "")


def test_lm_only_response_refused():
    """A 24-byte LM response with no NT response is not accepted and has no recognised version."""
    result = challenged().verify(type3(lm=bytes(24), user="alice", domain="EXAMPLE", workstation="W"))
    assert (result.ok, result.version, result.user, result.workstation) == (False, "", "alice", "W")


def test_forged_ntlmv2_refused():
    """An NTLMv2-shaped response with a made-up NTProofStr fails as a wrong password."""
    result = challenged().verify(type3(nt=bytes(16) + b"\x01\x01" + bytes(30), user="alice", domain="EXAMPLE"))
    assert (result.ok, result.version, result.reason) == (False, "NTLMv2", "wrong password")


def test_challenge_from_seed_deterministic():
    """Same seed and counter give the same 8 bytes; another counter or seed gives others."""
    assert challenge_from_seed("s", 1) == challenge_from_seed("s", 1) == hashlib.sha256(b"s:1").digest()[:8]
    assert len(challenge_from_seed(7, 1)) == 8
    assert len({challenge_from_seed("s", 1), challenge_from_seed("s", 2), challenge_from_seed("t", 1)}) == 3


@pytest.mark.parametrize("timestamp", [None, 133_000_000_000_000_000])
def test_challenge_token_deterministic(timestamp):
    """Two acceptors with the same challenge answer the same NEGOTIATE byte for byte."""
    first, second = (NTLMAcceptor([], challenge=CHALLENGE, timestamp=timestamp) for _ in "ab")
    assert first.challenge_for(KB_Q262945_NEGOTIATE) == second.challenge_for(KB_Q262945_NEGOTIATE)


def test_kb_q262945_negotiate():
    """The Exchange 5.5 client NEGOTIATE from KB Q262945 gets a Unicode CHALLENGE carrying our challenge and names."""
    token = NTLMAcceptor([], challenge=CHALLENGE).challenge_for(KB_Q262945_NEGOTIATE)
    flags = struct.unpack_from("<I", token, 20)[0]
    assert token[:12] == SIG + b"\x02\x00\x00\x00" and token[24:32] == CHALLENGE
    assert flags & 0x1 and not flags & 0x2 and flags & 0x00800000  # Unicode, not OEM, target info
    pairs = av_pairs(token)
    assert pairs[1] == "MAIL".encode("utf-16-le") and pairs[2] == "EXAMPLE".encode("utf-16-le")
    assert pairs[3] == "mail.example.test".encode("utf-16-le") and pairs[4] == "example.test".encode("utf-16-le")
    assert 7 not in pairs


def test_timestamp_av_pair():
    """A given FILETIME is sent verbatim as MsvAvTimestamp."""
    token = NTLMAcceptor([], challenge=CHALLENGE, timestamp=133_000_000_000_000_123).challenge_for(KB_Q262945_NEGOTIATE)
    assert av_pairs(token)[7] == struct.pack("<Q", 133_000_000_000_000_123)


def test_minimal_oem_negotiate():
    """A 16-byte OEM-only NEGOTIATE is accepted and answered in OEM."""
    token = NTLMAcceptor([], challenge=CHALLENGE).challenge_for(MINIMAL_NEGOTIATE)
    length, _, offset = struct.unpack_from("<HHI", token, 12)
    assert struct.unpack_from("<I", token, 20)[0] & 0x3 == 0x2 and token[offset : offset + length] == b"EXAMPLE"


@pytest.mark.parametrize("challenge", [b"", bytes(7), bytes(9)])
def test_challenge_must_be_8_bytes(challenge):
    """A server challenge that is not 8 bytes is a ValueError at construction."""
    with pytest.raises(ValueError):
        NTLMAcceptor([], challenge=challenge)


@pytest.mark.parametrize("timestamp", [-1, 2**63, 2**64])
def test_timestamp_out_of_range(timestamp):
    """A FILETIME that is negative or beyond year 9999 is a ValueError at construction."""
    with pytest.raises(ValueError):
        NTLMAcceptor([], challenge=CHALLENGE, timestamp=timestamp)


@pytest.mark.parametrize(
    "token",
    [
        b"",
        SIG,
        MINIMAL_NEGOTIATE[:15],
        KB_Q262945_NEGOTIATE[:-15],  # domain buffer runs past the end
        KB_Q262945_NEGOTIATE[:20],  # cut inside the domain buffer header
        SIG + b"\x02\x00\x00\x00" + bytes(40),  # a CHALLENGE
        type3(),  # an AUTHENTICATE
        b"NTLMSSP\x01" + KB_Q262945_NEGOTIATE[8:],  # bad signature
    ],
)
def test_challenge_for_rejects(token):
    """Garbage, truncated and wrong-type tokens given to challenge_for raise NTLMError."""
    with pytest.raises(NTLMError):
        NTLMAcceptor([], challenge=CHALLENGE).challenge_for(token)


@pytest.mark.parametrize(
    "token",
    [
        b"",
        KB_Q262945_NEGOTIATE,
        type3(user="alice")[:-2],  # user buffer runs past the end
        type3(user="alice")[:63],
        type3(nt=bytes(24))[:-1],
        type3(lm=bytes(24)).replace(b"\x40\x00\x00\x00", b"\x08\x00\x00\x00", 1),  # buffer inside the header
        SIG + b"\x02\x00\x00\x00" + bytes(60),  # a CHALLENGE
    ],
)
def test_verify_rejects(token):
    """Garbage, truncated and wrong-type tokens given to verify raise NTLMError."""
    with pytest.raises(NTLMError):
        challenged().verify(token)


def test_odd_length_unicode_name():
    """A Unicode user name of odd byte length cannot be decoded: NTLMError."""
    token = type3(user="al")
    token = token[:36] + struct.pack("<HH", 3, 3) + token[40:]
    with pytest.raises(NTLMError):
        challenged().verify(token)


def test_out_of_order():
    """verify before challenge_for, a second challenge_for, and a second verify all raise NTLMError."""
    acceptor = NTLMAcceptor(ACCOUNTS, challenge=CHALLENGE)
    with pytest.raises(NTLMError):
        acceptor.verify(type3())
    acceptor.challenge_for(KB_Q262945_NEGOTIATE)
    with pytest.raises(NTLMError):
        acceptor.challenge_for(KB_Q262945_NEGOTIATE)
    assert acceptor.verify(type3()).version == "anonymous"
    with pytest.raises(NTLMError):
        acceptor.verify(type3())


@given(st.binary())
@example(b"")
@example(KB_Q262945_NEGOTIATE[:-1])
def test_challenge_for_any_bytes(token):
    """challenge_for on arbitrary bytes either answers with a CHALLENGE or raises NTLMError, nothing else."""
    try:
        assert NTLMAcceptor([], challenge=CHALLENGE).challenge_for(token)[:12] == SIG + b"\x02\x00\x00\x00"
    except NTLMError:
        pass


@given(st.binary().map(lambda tail: SIG + b"\x01\x00\x00\x00" + tail))
def test_challenge_for_any_type1_body(token):
    """A type-1 header followed by arbitrary bytes either gets a CHALLENGE or raises NTLMError."""
    try:
        NTLMAcceptor([], challenge=CHALLENGE).challenge_for(token)
    except NTLMError:
        pass


@given(st.binary())
@example(b"")
@example(type3()[:63])
def test_verify_any_bytes(token):
    """verify on arbitrary bytes either returns an NTLMResult or raises NTLMError, nothing else."""
    try:
        assert isinstance(challenged().verify(token), NTLMResult)
    except NTLMError:
        pass


@given(st.binary(min_size=52).map(lambda tail: SIG + b"\x03\x00\x00\x00" + tail))
def test_verify_any_type3_body(token):
    """A type-3 header followed by arbitrary bytes either gives an NTLMResult or raises NTLMError."""
    try:
        assert not challenged().verify(token).ok
    except NTLMError:
        pass


@given(
    st.binary(max_size=40),
    st.binary(max_size=120) | st.binary(min_size=24, max_size=24),
    st.lists(st.binary(max_size=12), min_size=3, max_size=3),
    st.integers(0, 2**32 - 1),
)
@example(bytes(24), bytes(24), [b"", b"alice", b"\x81"], 0x00080000)  # OEM name undecodable in cp1252
def test_verify_any_well_framed_type3(lm, nt, names, flags):
    """A well-framed AUTHENTICATE with arbitrary responses, names and flags gives a failed result or NTLMError."""
    try:
        assert not challenged().verify(type3(lm, nt, *names, flags=flags)).ok
    except NTLMError:
        pass


def test_genuine_token_verifies():
    """The genuine token used for mutation verifies against any acceptor holding the same challenge."""
    assert challenged().verify(REAL_AUTHENTICATE).ok


def test_replay_against_other_challenge_fails():
    """A genuine AUTHENTICATE replayed to an acceptor with another challenge fails as a wrong password."""
    acceptor = NTLMAcceptor(ACCOUNTS, challenge=challenge_from_seed("tests", 1))
    acceptor.challenge_for(KB_Q262945_NEGOTIATE)
    assert acceptor.verify(REAL_AUTHENTICATE).reason == "wrong password"


@given(st.data())
def test_verify_mutated_real_token(data):
    """Truncating or corrupting a genuine AUTHENTICATE never yields an exception other than NTLMError."""
    token = bytearray(REAL_AUTHENTICATE)
    index = data.draw(st.integers(0, len(token) - 1))
    if data.draw(st.booleans()):
        del token[index:]
    else:
        token[index] = data.draw(st.integers(0, 255))
    try:
        challenged().verify(bytes(token))
    except NTLMError:
        pass
