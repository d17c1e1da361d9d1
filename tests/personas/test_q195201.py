"""KB Q195201: Exchange 5.0 (XAUTH) and 5.5 (AUTH NTLM) senders against 5.0, pre-fix 5.5 and fixed 5.5 servers.

The two clients below behave as the KB describes the senders: a 5.0 IMS quits
when the server's EHLO list has no XAUTH; a 5.5 IMS sends AUTH NTLM whatever
the list says.  Both log in with real NTLM (pyspnego).
"""

import base64

import pytest
import spnego

from emulator.testing.harness import Harness


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def ntlm_login(h: Harness, command: bytes) -> bytes:
    """Run '<command> <NEGOTIATE>' and, on a 334, the AUTHENTICATE; return the final reply."""
    client = spnego.client("EXAMPLE\\tester", "secret", hostname="mail.example.test", protocol="ntlm",
                           options=spnego.NegotiateOptions.use_ntlm)
    reply = h.send(command + b" " + b64(client.step()) + b"\r\n")
    if not reply.startswith(b"334 "):
        return reply
    return h.send(b64(client.step(base64.b64decode(reply[4:-2]))) + b"\r\n")


def ehlo_keywords(reply: bytes) -> list[bytes]:
    return [line[4:] for line in reply.split(b"\r\n")[1:] if line]


def exchange50_sender(h: Harness) -> bytes:
    """A 5.0 IMS as sender: EHLO; no XAUTH listed -> QUIT (the KB's failure); else XAUTH NTLM."""
    h.connect()
    if b"XAUTH" not in ehlo_keywords(h.send(b"EHLO ex50.example.org\r\n")):
        return h.send(b"QUIT\r\n")
    return ntlm_login(h, b"XAUTH NTLM")


def exchange55_sender(h: Harness) -> bytes:
    """A 5.5 IMS as sender: EHLO, then AUTH NTLM with the NEGOTIATE as initial response (as in Q262945)."""
    h.connect()
    h.send(b"EHLO ims55.example.org\r\n")
    return ntlm_login(h, b"AUTH NTLM")


def test_50_sender_quits_on_prefix_55():
    """5.0 -> 5.5 SP1 (before 5.5.2394.0): no XAUTH in the EHLO list, so the 5.0 sender quits (KB Q195201)."""
    h = Harness("ims55sp1")
    assert exchange50_sender(h) == b"221 closing connection\r\n"
    assert h.closed == "close"
    assert h.transcript.events("auth") == []
    assert b"XAUTH" not in h.transcript.client_bytes()


def test_50_sender_authenticates_on_fixed_55():
    """5.0 -> 5.5 SP2 (after the fix): XAUTH is listed, and XAUTH NTLM logs in."""
    h = Harness("ims55sp2")
    assert exchange50_sender(h) == b"235 ntlm authentication successful\r\n"
    assert h.conn.session.auth_user == "EXAMPLE\\tester"


def test_55_sender_gets_500_from_50():
    """5.5 -> 5.0: AUTH NTLM is answered '500 command not recognized' (KB Q195201; text [P])."""
    h = Harness("ex50")
    assert exchange55_sender(h) == b"500 command not recognized\r\n"


@pytest.mark.parametrize("profile, from_50, from_55", [
    ("ex50", b"235 ntlm authentication successful\r\n", b"500 command not recognized\r\n"),
    ("ims55sp1", b"221 closing connection\r\n", b"235 ntlm authentication successful\r\n"),
    ("ims55sp2", b"235 ntlm authentication successful\r\n", b"235 ntlm authentication successful\r\n"),
    ("ims55sp3", b"235 ntlm authentication successful\r\n", b"235 ntlm authentication successful\r\n"),
    ("ims55sp4", b"235 ntlm authentication successful\r\n", b"235 ntlm authentication successful\r\n"),
])
def test_q195201_matrix(profile, from_50, from_55):
    """The table of docs/authentication.md: each server's last reply to a 5.0 sender and to a 5.5 sender."""
    assert exchange50_sender(Harness(profile)) == from_50
    assert exchange55_sender(Harness(profile)) == from_55
