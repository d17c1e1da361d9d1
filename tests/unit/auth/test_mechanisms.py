"""Transcript tests of AUTH and XAUTH (emulator/auth): exact bytes in, exact bytes out, and the auth events."""

import base64
import textwrap

import pytest
import spnego

from emulator.profiles import loader as profiles
from emulator.auth.ntlm import challenge_from_seed
from emulator.testing.harness import Harness
from emulator.core.connection import Server

EHLO_55 = (b"250-mail.example.test Hello [192.0.2.10]\r\n250-XEXCH50\r\n250-HELP\r\n250-ETRN\r\n250-DSN\r\n"
           b"250-SIZE 0\r\n250-AUTH LOGIN\r\n250-AUTH=LOGIN\r\n250 XAUTH\r\n")
# Microsoft KB Q262945: the NEGOTIATE an Exchange 5.5 IMS sent as its AUTH NTLM initial response.
KB_NEGOTIATE = b"TlRMTVNTUAABAAAAt5IAQAcABwAgAAAAAAAAAAAAAABUSU1EVU1QAAAAAAAAAAA="
PASSWORD = "Pa55-w0rd:unique"


def b64(data) -> bytes:
    return base64.b64encode(data.encode() if isinstance(data, str) else data)


def line(data) -> bytes:
    return b64(data) + b"\r\n"


def session(name="ims55sp4", **kwargs) -> Harness:
    """A connection that has been greeted and has said EHLO."""
    h = Harness(name, **kwargs)
    h.connect()
    h.send(b"EHLO client.example\r\n")
    return h


def custom(tmp_path, name, text) -> profiles.Profile:
    """Load a profile written for one test (it may extend a shipped one)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return profiles.load(path)


def auth_events(h):
    return [r.fields for r in h.transcript.events("auth")]


def ntlm_client(user="EXAMPLE\\tester", password="secret"):
    return spnego.client(user, password, hostname="mail.example.test", protocol="ntlm",
                         options=spnego.NegotiateOptions.use_ntlm)


def challenge_of(reply: bytes) -> bytes:
    """The NTLM CHALLENGE in a '334 <base64>' reply."""
    assert reply.startswith(b"334 ") and reply.endswith(b"\r\n"), reply
    return base64.b64decode(reply[4:-2])


@pytest.fixture
def seeded(tmp_path):
    """ims55sp2 with challenge_seed "tests": NTLM challenges are challenge_from_seed("tests", n)."""
    return custom(tmp_path, "seeded", """\
        name: seeded
        extends: ims55sp2
        auth: {challenge_seed: "tests"}
    """)


# -- AUTH LOGIN -------------------------------------------------------------

def test_ehlo_advertises_auth_login_and_xauth():
    """Post-fix 5.5 lists Q262945's AUTH LOGIN and AUTH=LOGIN, then XAUTH (KB Q195201); SP2, which
    advertises STARTTLS without a certificate (Q237327), lists it after them (docs/sources.md §2.3)."""
    h = Harness("ims55sp4")
    h.connect()
    assert h.send(b"EHLO client.example\r\n") == EHLO_55
    h = Harness("ims55sp2")
    h.connect()
    assert h.send(b"EHLO client.example\r\n") == EHLO_55[:-len(b"250 XAUTH\r\n")] + b"250-XAUTH\r\n250 STARTTLS\r\n"


def test_login_success():
    """AUTH LOGIN: the base64 Username:/Password: prompts and the success text of KB Q173656."""
    h = session()
    assert h.send(b"AUTH LOGIN\r\n") == b"334 VXNlcm5hbWU6\r\n"
    assert h.send(line("tester")) == b"334 UGFzc3dvcmQ6\r\n"
    assert h.send(line("secret")) == b"235 LOGIN authentication successful\r\n"
    assert h.conn.session.auth_user == "tester"
    assert auth_events(h) == [{"verb": "AUTH", "mechanism": "LOGIN", "user": "tester", "outcome": "success"}]


def test_login_with_initial_response_and_lower_case():
    """'auth login <b64 user>' (Q173656 typed it in lower case; smtplib sends the user as initial response)."""
    h = session()
    assert h.send(b"auth login " + line("EXAMPLE\\tester")) == b"334 UGFzc3dvcmQ6\r\n"
    assert h.send(line("secret")) == b"235 LOGIN authentication successful\r\n"
    assert h.conn.session.auth_user == "EXAMPLE\\tester"


def test_login_pipelined_in_one_segment():
    """The command and both responses in one read are answered in order."""
    h = session()
    out = h.send(b"AUTH LOGIN\r\n" + line("tester") + line("secret") + b"NOOP\r\n")
    assert out == b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 LOGIN authentication successful\r\n250 OK\r\n"


@pytest.mark.parametrize("user, password, reason", [
    ("tester", "wrong", "wrong password"),
    ("nobody", "secret", "unknown user"),
    ("OTHER\\tester", "secret", "domain does not match account"),
])
def test_login_failure(user, password, reason):
    """Bad credentials get 535 [P]; the event says why, and the session goes on unauthenticated."""
    h = session()
    h.send(b"AUTH LOGIN\r\n" + line(user))
    assert h.send(line(password)) == b"535 Authentication unsuccessful\r\n"
    assert auth_events(h) == [{"verb": "AUTH", "mechanism": "LOGIN", "user": user, "outcome": "failure",
                               "reason": reason}]
    assert h.conn.session.auth_user is None
    assert h.send(b"NOOP\r\n") == b"250 OK\r\n"


@pytest.mark.parametrize("steps", [
    [b"AUTH LOGIN\r\n", b"not*base64!\r\n"],
    [b"AUTH LOGIN\r\n", line("tester"), b"c2Vjcm=V0\r\n"],
    [b"AUTH LOGIN dGVz!GVy\r\n"],
])
def test_login_garbage_base64(steps):
    """A response (or initial response) that is not base64 gets 501 (RFC 4954) and ends the exchange."""
    h = session()
    for step in steps[:-1]:
        h.send(step)
    assert h.send(steps[-1]) == b"501 Cannot decode response\r\n"
    assert auth_events(h)[0]["outcome"] == "bad_base64"
    assert h.send(b"NOOP\r\n") == b"250 OK\r\n"


@pytest.mark.parametrize("before", [[], [line("tester")]])
def test_login_cancelled_with_star(before):
    """A client may cancel at any prompt with '*': 501 (RFC 4954 section 4), and commands are read again."""
    h = session()
    h.send(b"AUTH LOGIN\r\n")
    for step in before:
        h.send(step)
    assert h.send(b"*\r\n") == b"501 Authentication cancelled\r\n"
    assert auth_events(h)[0]["outcome"] == "cancelled"
    assert h.send(b"NOOP\r\n") == b"250 OK\r\n"


def test_login_over_long_response_line():
    """A response over 12288 bytes fails the exchange with 500 (RFC 4954 section 4) and never crashes."""
    h = session()
    h.send(b"AUTH LOGIN\r\n" + line("tester"))
    assert h.send(b"A" * 13000 + b"\r\n") == b"500 Line too long\r\n"
    assert auth_events(h) == [{"verb": "AUTH", "mechanism": "LOGIN", "user": "tester",
                               "outcome": "line_too_long"}]
    assert h.send(b"NOOP\r\n") == b"250 OK\r\n"


def test_login_over_long_response_without_line_end():
    """An over-long response still arriving (no CRLF yet) is answered once, dropped to its end, and ends AUTH."""
    h = session()
    h.send(b"AUTH LOGIN\r\n")
    assert h.send(b"A" * 13000) == b"500 Line too long\r\n"
    assert h.send(b"A" * 13000) == b""
    assert h.send(b"\r\nNOOP\r\n") == b"250 OK\r\n"
    assert auth_events(h)[0]["outcome"] == "line_too_long"


def test_response_longer_than_a_command_line_is_accepted():
    """Responses may exceed the 512-byte command limit (NTLMv2 tokens do); up to 12288 bytes."""
    h = session()
    h.send(b"AUTH LOGIN\r\n")
    assert h.send(line("x" * 3000)) == b"334 UGFzc3dvcmQ6\r\n"


def test_second_auth_after_success_is_503():
    """After a successful login any further AUTH or XAUTH gets 503 (RFC 4954 section 4)."""
    h = session()
    h.send(b"AUTH LOGIN\r\n" + line("tester") + line("secret"))
    assert h.send(b"AUTH LOGIN\r\n") == b"503 Bad sequence of commands\r\n"
    assert h.send(b"XAUTH NTLM\r\n") == b"503 Bad sequence of commands\r\n"
    assert [e["outcome"] for e in auth_events(h)] == ["success", "already_authenticated", "already_authenticated"]
    assert h.conn.session.auth_user == "tester"


@pytest.mark.parametrize("command, reply, outcome", [
    (b"AUTH\r\n", b"501 Syntax error in parameters or arguments\r\n", "syntax"),
    (b"AUTH CRAM-MD5\r\n", b"504 Unrecognized authentication type\r\n", "unknown_mechanism"),
    (b"AUTH PLAIN AHRlc3RlcgBzZWNyZXQ=\r\n", b"504 Unrecognized authentication type\r\n", "unknown_mechanism"),
    (b"XAUTH LOGIN\r\n", b"504 Unrecognized authentication type\r\n", "unknown_mechanism"),
])
def test_refused_auth_commands(command, reply, outcome):
    """No mechanism is a syntax error; a mechanism the verb does not take gets 504 [P] (5.5 had no PLAIN)."""
    h = session()
    assert h.send(command) == reply
    assert auth_events(h)[0]["outcome"] == outcome


def test_auth_before_ehlo_and_during_a_transaction():
    """AUTH needs a HELO/EHLO first, and is refused inside a mail transaction (RFC 4954: 503)."""
    h = Harness("ims55sp4")
    h.connect()
    assert h.send(b"AUTH LOGIN\r\n") == b"503 Bad sequence of commands\r\n"
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\n")
    assert h.send(b"AUTH LOGIN\r\n") == b"503 Bad sequence of commands\r\n"
    assert [e["outcome"] for e in auth_events(h)] == ["need_helo", "bad_sequence"]


def test_accounts_argument_adds_accounts():
    """Harness(accounts=...) adds 'DOMAIN\\\\user:password' accounts to the profile's, as --account does."""
    h = session(accounts=["CORP\\alice:pa:ss"])
    h.send(b"AUTH LOGIN\r\n" + line("CORP\\alice"))
    assert h.send(line("pa:ss")) == b"235 LOGIN authentication successful\r\n"
    h = session(accounts=["CORP\\alice:pa:ss"])
    h.send(b"AUTH LOGIN\r\n" + line("tester"))
    assert h.send(line("secret")) == b"235 LOGIN authentication successful\r\n"


def test_delivered_message_carries_the_authenticated_user():
    """The envelope of a message sent after AUTH names the user."""
    h = session()
    h.send(b"AUTH LOGIN\r\n" + line("tester") + line("secret"))
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n")
    assert h.messages[0].auth_user == "tester"


def test_tls_forgets_the_login():
    """After STARTTLS the server forgets what the client told it, the login included (RFC 3207 4.2)."""
    h = session(tls_available=True)
    h.send(b"AUTH LOGIN\r\n" + line("tester") + line("secret") + b"STARTTLS\r\n")
    h.handshake()
    assert h.conn.session.auth_user is None


# -- AUTH PLAIN -------------------------------------------------------------

@pytest.fixture
def plain(tmp_path):
    """ims55sp4 with PLAIN added (no Exchange 5.x offered it: a persona for client tests)."""
    return custom(tmp_path, "plainbox", """\
        name: plainbox
        extends: ims55sp4
        ehlo_keywords: ["SIZE 0", "AUTH LOGIN PLAIN"]
        replies:
          auth_ok_plain: "235 PLAIN authentication successful"
        auth:
          mechanisms: [LOGIN, PLAIN, NTLM]
    """)


def test_plain_with_initial_response(plain):
    """AUTH PLAIN <b64(authzid NUL user NUL password)> logs in at once."""
    h = session(plain)
    assert h.send(b"AUTH PLAIN " + line("\0tester\0secret")) == b"235 PLAIN authentication successful\r\n"
    assert auth_events(h) == [{"verb": "AUTH", "mechanism": "PLAIN", "user": "tester", "outcome": "success"}]


def test_plain_without_initial_response(plain):
    """Without an initial response the server sends an empty challenge, '334 ' (RFC 4954)."""
    h = session(plain)
    assert h.send(b"AUTH PLAIN\r\n") == b"334 \r\n"
    assert h.send(line("tester\0tester\0secret")) == b"235 PLAIN authentication successful\r\n"


@pytest.mark.parametrize("response, outcome", [
    ("\0tester\0wrong", "failure"),
    ("admin\0tester\0secret", "failure"),
    ("tester secret", "malformed"),
])
def test_plain_refusals(plain, response, outcome):
    """Wrong password, a different authorization identity or a malformed message: 535."""
    h = session(plain)
    assert h.send(b"AUTH PLAIN " + line(response)) == b"535 Authentication unsuccessful\r\n"
    assert auth_events(h)[0]["outcome"] == outcome


def test_plain_empty_initial_response(plain):
    """'=' is an empty initial response (RFC 4954), which PLAIN refuses."""
    h = session(plain)
    assert h.send(b"AUTH PLAIN =\r\n") == b"535 Authentication unsuccessful\r\n"


# -- AUTH NTLM --------------------------------------------------------------

# The CHALLENGE the seeded server sends to the KB Q262945 NEGOTIATE (regression vector).
KB_CHALLENGE_LINE = (
    b"334 TlRMTVNTUAACAAAADgAOADAAAAC1goFAbm7KL9V2EOQAAAAAAAAAAGQAZAA+AAAARQBYAEEATQBQAEwARQABAAgATQBBAEkATAACAA4A"
    b"RQBYAEEATQBQAEwARQADACIAbQBhAGkAbAAuAGUAeABhAG0AcABsAGUALgB0AGUAcwB0AAQAGABlAHgAYQBtAHAAbABlAC4AdABlAHMAdAAA"
    b"AAAA\r\n")


def test_ntlm_with_initial_response_kb_negotiate(seeded):
    """AUTH NTLM <KB Q262945 NEGOTIATE>: the seeded server's exact 334 CHALLENGE, with the seed's challenge."""
    h = session(seeded)
    out = h.send(b"AUTH NTLM " + KB_NEGOTIATE + b"\r\n")
    assert out == KB_CHALLENGE_LINE
    assert challenge_of(out)[24:32] == challenge_from_seed("tests", 0)


def test_ntlm_with_initial_response_logs_in(seeded):
    """pyspnego's NEGOTIATE as initial response, then its AUTHENTICATE: 235 ntlm authentication successful."""
    h = session(seeded)
    client = ntlm_client()
    challenge = challenge_of(h.send(b"AUTH NTLM " + line(client.step())))
    assert h.send(line(client.step(challenge))) == b"235 ntlm authentication successful\r\n"
    assert h.conn.session.auth_user == "EXAMPLE\\tester"
    assert auth_events(h) == [{"verb": "AUTH", "mechanism": "NTLM", "user": "tester", "outcome": "success",
                               "domain": "EXAMPLE", "version": "NTLMv2"}]


def test_ntlm_without_initial_response(seeded):
    """AUTH NTLM alone gets '334 ntlm supported' [P, MS-SMTPNTLM], then the same exchange."""
    h = session(seeded)
    client = ntlm_client()
    assert h.send(b"AUTH NTLM\r\n") == b"334 ntlm supported\r\n"
    challenge = challenge_of(h.send(line(client.step())))
    assert h.send(line(client.step(challenge))) == b"235 ntlm authentication successful\r\n"


def test_ntlm_wrong_password():
    """A wrong password gets 535 and the event's reason, never the password."""
    h = session("ims55sp3")
    client = ntlm_client(password=PASSWORD)
    challenge = challenge_of(h.send(b"AUTH NTLM " + line(client.step())))
    assert h.send(line(client.step(challenge))) == b"535 Authentication unsuccessful\r\n"
    assert auth_events(h) == [{"verb": "AUTH", "mechanism": "NTLM", "user": "tester", "outcome": "failure",
                               "domain": "EXAMPLE", "version": "NTLMv2", "reason": "wrong password"}]


def test_ntlm_v1(monkeypatch):
    """An NTLMv1 client (LM_COMPAT_LEVEL 1) logs in; the event says NTLMv1."""
    monkeypatch.setenv("LM_COMPAT_LEVEL", "1")
    h = session("ims55sp2")
    client = ntlm_client()
    challenge = challenge_of(h.send(b"AUTH NTLM " + line(client.step())))
    assert h.send(line(client.step(challenge))) == b"235 ntlm authentication successful\r\n"
    assert auth_events(h)[0]["version"] == "NTLMv1"


def test_ntlm_versions_setting_refuses_v1(monkeypatch, tmp_path):
    """auth: ntlm_versions: [NTLMv2] refuses an NTLMv1 response with 535."""
    monkeypatch.setenv("LM_COMPAT_LEVEL", "1")
    only_v2 = custom(tmp_path, "v2only", """\
        name: v2only
        extends: ims55sp4
        auth: {ntlm_versions: [NTLMv2]}
    """)
    h = session(only_v2)
    client = ntlm_client()
    challenge = challenge_of(h.send(b"AUTH NTLM " + line(client.step())))
    assert h.send(line(client.step(challenge))) == b"535 Authentication unsuccessful\r\n"
    assert auth_events(h)[0]["reason"] == "NTLMv1 not allowed"


@pytest.mark.parametrize("steps, reply, outcome", [
    ([b"AUTH NTLM " + line("not an NTLM message")], b"535 Authentication unsuccessful\r\n", "malformed"),
    ([b"AUTH NTLM " + KB_NEGOTIATE + b"\r\n", line("NTLMSSP\0 garbage")], b"535 Authentication unsuccessful\r\n",
     "malformed"),
    ([b"AUTH NTLM " + KB_NEGOTIATE + b"\r\n", b"%%%\r\n"], b"501 Cannot decode response\r\n", "bad_base64"),
    ([b"AUTH NTLM " + KB_NEGOTIATE + b"\r\n", b"*\r\n"], b"501 Authentication cancelled\r\n", "cancelled"),
    ([b"AUTH NTLM\r\n", b"*\r\n"], b"501 Authentication cancelled\r\n", "cancelled"),
])
def test_ntlm_bad_tokens_and_cancel(steps, reply, outcome):
    """Tokens that are not NTLMSSP get 535, bad base64 501, '*' 501; the session carries on."""
    h = session()
    for step in steps[:-1]:
        h.send(step)
    assert h.send(steps[-1]) == reply
    assert auth_events(h)[0]["outcome"] == outcome
    assert h.send(b"NOOP\r\n") == b"250 OK\r\n"


def test_seeded_challenges_count_attempts_per_connection(seeded):
    """With a seed, the n-th AUTH/XAUTH of a connection (from 0) gets challenge_from_seed(seed, n);
    a new connection starts again at 0."""
    h = session(seeded)
    first = challenge_of(h.send(b"AUTH NTLM " + KB_NEGOTIATE + b"\r\n"))
    h.send(b"*\r\n")
    second = challenge_of(h.send(b"XAUTH NTLM " + KB_NEGOTIATE + b"\r\n"))
    assert first[24:32] == challenge_from_seed("tests", 0)
    assert second[24:32] == challenge_from_seed("tests", 1)
    again = challenge_of(session(seeded).send(b"AUTH NTLM " + KB_NEGOTIATE + b"\r\n"))
    assert again == first


def test_unseeded_challenge_comes_from_the_servers_random_bytes():
    """Without a seed the challenge is Server.random_bytes(8): the host's randomness, injectable."""
    server = Server(profiles.load("ims55sp4"), random_bytes=lambda n: bytes(range(1, n + 1)))
    h = Harness(None, server=server)
    h.connect()
    h.send(b"EHLO c\r\n")
    assert challenge_of(h.send(b"AUTH NTLM " + KB_NEGOTIATE + b"\r\n"))[24:32] == bytes(range(1, 9))


# -- XAUTH (Exchange 5.0) and AUTH where it is unknown -----------------------

def test_ex50_greets_and_lists_xauth():
    """ex50: the post-SP banner [P] and an EHLO list with XAUTH and no AUTH [P]."""
    h = Harness("ex50")
    assert h.connect() == (b"220 mail.example.test ESMTP Server (Microsoft Exchange Internet Mail Service "
                           b"5.0.1460.8) ready\r\n")
    assert h.send(b"EHLO c\r\n") == b"250-mail.example.test Hello [192.0.2.10]\r\n250-XAUTH\r\n250 SIZE 0\r\n"


def test_xauth_ntlm_on_ex50():
    """XAUTH NTLM <NEGOTIATE>, 334 CHALLENGE, AUTHENTICATE, 235 (modelled on AUTH NTLM [P])."""
    h = session("ex50")
    client = ntlm_client()
    challenge = challenge_of(h.send(b"XAUTH NTLM " + line(client.step())))
    assert h.send(line(client.step(challenge))) == b"235 ntlm authentication successful\r\n"
    assert auth_events(h) == [{"verb": "XAUTH", "mechanism": "NTLM", "user": "tester", "outcome": "success",
                               "domain": "EXAMPLE", "version": "NTLMv2"}]


def test_auth_on_ex50_is_500():
    """Exchange 5.0 does not know AUTH: '500 command not recognized' (KB Q195201's words, [P])."""
    h = session("ex50")
    assert h.send(b"AUTH NTLM " + KB_NEGOTIATE + b"\r\n") == b"500 command not recognized\r\n"
    assert h.send(b"AUTH LOGIN\r\n") == b"500 command not recognized\r\n"
    assert auth_events(h) == []


def test_xauth_on_ims55sp1_is_500():
    """5.5 before the Q195201 fix does not know XAUTH: 500 Unrecognized command (Q295725 text)."""
    h = session("ims55sp1")
    assert h.send(b"XAUTH NTLM " + KB_NEGOTIATE + b"\r\n") == b"500 Unrecognized command\r\n"


# -- auth required ----------------------------------------------------------

@pytest.fixture
def required(tmp_path):
    """ims55sp4 with auth: required: true."""
    return custom(tmp_path, "required", """\
        name: required
        extends: ims55sp4
        auth: {required: true}
    """)


def test_mail_before_auth_is_refused_when_required(required):
    """With required: true, MAIL before a login gets 505 [P, code from Q181481]; after AUTH it is accepted."""
    h = session(required)
    assert h.send(b"MAIL FROM:<a@b>\r\n") == b"505 Authentication is required\r\n"
    assert h.send(b"RCPT TO:<c@d>\r\n") == b"503 Bad sequence of commands\r\n"
    h.send(b"AUTH LOGIN\r\n" + line("tester") + line("secret"))
    assert h.send(b"MAIL FROM:<a@b>\r\n") == b"250 OK - mail from <a@b>\r\n"


def test_mail_is_not_gated_by_default():
    """Shipped profiles do not require a login (required: false)."""
    h = session("ims55sp4")
    assert h.send(b"MAIL FROM:<a@b>\r\n") == b"250 OK - mail from <a@b>\r\n"


# -- events and secrets -----------------------------------------------------

def test_events_record_user_and_outcome_but_never_the_password(tmp_path):
    """Every kind of attempt leaves an auth event with the user and outcome; no event holds the
    password, plain or base64, though the raw client bytes do (they are what was on the wire)."""
    loaded = custom(tmp_path, "secrets", """\
        name: secrets
        extends: ims55sp4
        replies:
          auth_ok_plain: "235 PLAIN authentication successful"
        auth:
          mechanisms: [LOGIN, PLAIN, NTLM]
          challenge_seed: "s"
    """)
    account = f"EXAMPLE\\carol:{PASSWORD}"
    transcripts = []
    for steps in (
        [b"AUTH LOGIN\r\n", line("carol"), line(PASSWORD)],
        [b"AUTH LOGIN " + line("carol"), line(PASSWORD + "x")],
        [b"AUTH PLAIN " + line(f"\0carol\0{PASSWORD}")],
        [b"AUTH PLAIN " + line(f"\0carol\0{PASSWORD}!")],
        [b"AUTH LOGIN\r\n", line("carol"), b"*\r\n"],
    ):
        h = session(loaded, accounts=[account])
        for step in steps:
            h.send(step)
        transcripts.append(h)
    for password in (PASSWORD, PASSWORD + "!"):
        h = session(loaded, accounts=[account])
        client = ntlm_client("EXAMPLE\\carol", password)
        challenge = challenge_of(h.send(b"AUTH NTLM " + line(client.step())))
        h.send(line(client.step(challenge)))
        transcripts.append(h)
    outcomes = [[(e["user"], e["outcome"]) for e in auth_events(h)] for h in transcripts]
    assert outcomes == [[("carol", "success")], [("carol", "failure")], [("carol", "success")],
                        [("carol", "failure")], [("carol", "cancelled")], [("carol", "success")],
                        [("carol", "failure")]]
    secrets = [PASSWORD, b64(PASSWORD).decode(), PASSWORD + "!"]
    for h in transcripts:
        events = repr([(r.event, r.fields) for r in h.transcript.events()])
        assert not any(secret in events for secret in secrets)
        assert PASSWORD not in h.transcript.server_bytes().decode("latin-1")
    assert b64(PASSWORD) in transcripts[0].transcript.client_bytes()


def test_settings_repr_hides_passwords():
    """The loaded auth: section (and so the profile's repr) never shows a password."""
    loaded = profiles.load("ims55sp4")
    assert "secret" not in repr(loaded.auth)
    assert "secret" not in repr(loaded)


def test_exchange_is_independent_of_segmentation():
    """A LOGIN exchange fed one byte at a time gives the same bytes as fed in one piece."""
    client = b"EHLO c\r\nAUTH LOGIN\r\n" + line("tester") + line("wrong") + b"AUTH LOGIN " + line("tester") + b"*\r\n"
    whole, split = Harness("ims55sp4"), Harness("ims55sp4")
    expected = whole.connect() + whole.send(client)
    assert split.connect() + b"".join(split.send(client[i:i + 1]) for i in range(len(client))) == expected
    assert expected.endswith(b"535 Authentication unsuccessful\r\n334 UGFzc3dvcmQ6\r\n501 Authentication cancelled\r\n")


def test_reply_templates_may_name_the_user_and_mechanism(tmp_path):
    """Every AUTH reply may use {user} and {mechanism}; a hostile user name cannot break the reply line."""
    loaded = custom(tmp_path, "fields", """\
        name: fields
        extends: ims55sp4
        replies:
          auth_password: "334 UGFzc3dvcmQ6 {mechanism}"
          auth_failed: "535 {mechanism} login of {user} failed"
    """)
    h = session(loaded)
    h.send(b"AUTH LOGIN\r\n")
    assert h.send(line("eve\r\n250 OK\u00e9")) == b"334 UGFzc3dvcmQ6 LOGIN\r\n"
    assert h.send(line("x")) == b"535 LOGIN login of eve??250 OK? failed\r\n"
