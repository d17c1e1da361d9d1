"""The IIS 5.0/6.0 SMTP service and Exchange 2000/2003 personas in memory: greeting, EHLO list and the
main replies byte for byte (docs/sources.md §6), AUTH with GSSAPI, NTLM, LOGIN and X-EXPS, XEXCH50
before a login, and MAIL before STARTTLS on ex2003-tls-required."""

import base64

import pytest
import spnego

from emulator.core.connection import Server, ServerConnection
from emulator.profiles import loader as profiles
from emulator.testing.harness import DATE, Harness

TLS_INFO = {"version": "TLSv1.2", "cipher": "ECDHE-RSA-AES128-GCM-SHA256", "bits": 128, "sni": None}
PERSONAS = ["iis5-smtp", "iis6-smtp", "iis6-smtp-cert", "ex2000", "ex2003", "ex2003-tls-required"]
VERSIONS = {"iis5-smtp": "5.0.2195.6713", "iis6-smtp": "6.0.3790.3959", "iis6-smtp-cert": "6.0.3790.3959",
            "ex2000": "5.0.2195.2966", "ex2003": "6.0.3790.3959", "ex2003-tls-required": "6.0.3790.3959"}
# The documented lists (Exchange 2003 documentation; KB 153119's later revision).
IIS_LIST = ["TURN", "ATRN", "SIZE 2097152", "ETRN", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "8bitmime",
            "BINARYMIME", "CHUNKING", "VRFY", "AUTH GSSAPI NTLM"]
EXCHANGE_LIST = ["TURN", "ATRN", "SIZE", "ETRN", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "8bitmime", "BINARYMIME",
                 "CHUNKING", "VRFY", "X-EXPS GSSAPI NTLM LOGIN", "X-EXPS=LOGIN", "AUTH GSSAPI NTLM LOGIN", "AUTH=LOGIN",
                 "X-LINK2STATE", "XEXCH50"]
WITH_CERTIFICATE = {"iis6-smtp-cert", "ex2003-tls-required"}


def session(name: str, **options) -> Harness:
    h = Harness(name, tls_available=name in WITH_CERTIFICATE, **options)
    h.connect()
    return h


def ehlo_bytes(name: str, host: str) -> bytes:
    keywords = EXCHANGE_LIST if name.startswith("ex") else IIS_LIST
    tls = ["TLS", "STARTTLS"] if name in WITH_CERTIFICATE else []
    lines = [f"{host} Hello [192.0.2.10]", *keywords, *tls]
    return b"".join(f"250-{line}\r\n".encode() for line in lines) + b"250 OK\r\n"


@pytest.mark.parametrize("name", PERSONAS)
def test_greeting_and_ehlo_list_byte_for_byte(name):
    """The banner has two spaces after 'ready at' (KB 254560); EHLO gives the documented list in its order,
    ending in '250 OK', with TLS and STARTTLS just before it only where a certificate is bound."""
    host = profiles.load(name).hostname
    h = Harness(name, tls_available=name in WITH_CERTIFICATE)
    assert h.connect() == (f"220 {host} Microsoft ESMTP MAIL Service, Version: {VERSIONS[name]} "
                           f"ready at  {DATE}\r\n").encode()
    assert h.send(b"EHLO client.example\r\n") == ehlo_bytes(name, host)


def test_banner_day_of_month_is_not_zero_padded():
    """Windows wrote 'Tue, 3 Mar 2026' where RFC 5322 formatting gives 'Tue, 03 Mar 2026' ({date_unpadded});
    the persona with {date} keeps the host's form."""
    dated = "Tue, 03 Mar 2026 10:00:00 -0800"
    iis = ServerConnection(Server(profiles.load("iis5-smtp")), date=dated)
    assert iis.connect()[0].data.endswith(b"ready at  Tue, 3 Mar 2026 10:00:00 -0800\r\n")
    assert Server(profiles.load("iis5-smtp")).uses_date
    two_digits = ServerConnection(Server(profiles.load("iis6-smtp")), date="Mon, 23 Nov 2026 10:00:00 +0000")
    assert two_digits.connect()[0].data.endswith(b"ready at  Mon, 23 Nov 2026 10:00:00 +0000\r\n")
    iis4 = ServerConnection(Server(profiles.load("iis4-smtp-128bit")), date=dated)
    assert b"ready at Tue, 03 Mar 2026" in iis4.connect()[0].data


def test_iis5_full_session(golden):
    """iis5-smtp: the main replies with enhanced codes (KB Q304897 texts), HELP, the [P] texts of NOOP,
    VRFY, ETRN, TURN and ATRN, an unknown verb, and QUIT."""
    h = session("iis5-smtp")
    assert h.send(b"HELO client.example\r\n") == b"250 iis5.example.test Hello [192.0.2.10]\r\n"
    h.send(b"EHLO client.example\r\n")
    assert h.send(b"MAIL FROM:<a@example.org> SIZE=100\r\n") == b"250 2.1.0 a@example.org....Sender OK\r\n"
    assert h.send(b"RCPT TO:<b@example.test>\r\n") == b"250 2.1.5 b@example.test\r\n"
    assert h.send(b"DATA\r\n") == b"354 Start mail input; end with <CRLF>.<CRLF>\r\n"
    assert h.send(b"Subject: hi\r\n\r\nhello\r\n.\r\n") == \
        b"250 2.6.0 <s1.1@iis5.example.test> Queued mail for delivery\r\n"
    assert h.send(b"RSET\r\n") == b"250 2.0.0 Resetting\r\n"
    assert h.send(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
    assert h.send(b"VRFY user@example.test\r\n") == \
        b"252 2.1.5 Cannot VRFY user, but will take message for <user@example.test>\r\n"
    assert h.send(b"ETRN example.org\r\n") == b"250 2.0.0 Queuing for example.org started\r\n"
    assert h.send(b"TURN\r\n") == b"530 5.7.0 Authentication required\r\n"
    assert h.send(b"ATRN example.org\r\n") == b"530 5.7.0 Authentication required\r\n"
    assert h.send(b"HELP\r\n") == (b"214-This server supports the following commands:\r\n"
                                   b"214 HELO EHLO STARTTLS RCPT DATA RSET MAIL QUIT HELP AUTH TURN ETRN BDAT VRFY\r\n")
    assert h.send(b"EXPN staff\r\n") == b"500 5.3.3 Unrecognized command\r\n"
    assert h.send(b"STARTTLS\r\n") == b"554 5.7.3 Unable to initialize security subsystem\r\n"
    assert h.send(b"QUIT\r\n") == b"221 2.0.0 iis5.example.test Service closing transmission channel\r\n"
    assert h.messages[0].data == b"Subject: hi\r\n\r\nhello\r\n"
    golden("iis5-smtp/full-session", h.human())


def test_iis6_pipelined_group_and_sequence_errors(golden):
    """iis6-smtp (PIPELINING): a group sent in one write gets its replies in order, the message is taken;
    RCPT before MAIL and a second MAIL get the [P] 503 5.5.2 texts."""
    h = session("iis6-smtp")
    h.send(b"EHLO client.example\r\n")
    assert h.send(b"RCPT TO:<b@example.test>\r\n") == b"503 5.5.2 Need mail command\r\n"
    assert h.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\n"
                  b"DATA\r\n") == (b"250 2.1.0 a@example.org....Sender OK\r\n250 2.1.5 b@example.test\r\n"
                                   b"250 2.1.5 c@example.test\r\n354 Start mail input; end with <CRLF>.<CRLF>\r\n")
    h.send(b"Subject: piped\r\n\r\nx\r\n.\r\nMAIL FROM:<c@example.org>\r\nMAIL FROM:<a@example.org>\r\nQUIT\r\n")
    assert len(h.messages) == 1 and h.messages[0].recipients == (b"b@example.test", b"c@example.test")
    golden("iis6-smtp/pipelined-session", h.human())


def test_size_limit_of_the_iis_personas():
    """SIZE 2097152 is enforced: a MAIL announcing more gets the [P] 552 5.3.4 text; Exchange's bare SIZE
    has no limit."""
    h = session("iis6-smtp")
    h.send(b"EHLO client.example\r\n")
    assert h.send(b"MAIL FROM:<a@example.org> SIZE=2097153\r\n") == \
        b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    ex = session("ex2003")
    ex.send(b"EHLO client.example\r\n")
    assert ex.send(b"MAIL FROM:<a@example.org> SIZE=50000000\r\n") == b"250 2.1.0 a@example.org....Sender OK\r\n"


def test_iis6_cert_starttls_session(golden):
    """iis6-smtp-cert: TLS and STARTTLS listed, '220 2.0.0 SMTP server ready', and inside TLS neither is listed
    again (RFC 3207 4.2) while '250 OK' still ends the list."""
    h = session("iis6-smtp-cert")
    h.send(b"EHLO client.example\r\n")
    assert h.send(b"STARTTLS\r\n") == b"220 2.0.0 SMTP server ready\r\n"
    h.handshake(**TLS_INFO)
    assert h.send(b"EHLO client.example\r\n") == ehlo_bytes("iis6-smtp", "iis6.example.test")
    h.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: tls\r\n\r\nx\r\n.\r\nQUIT\r\n")
    assert h.messages[0].tls is True
    golden("iis6-smtp-cert/starttls-session", h.human())


def test_ex2003_tls_required_session(golden):
    """KB 329061: MAIL before STARTTLS gets '530 5.7.0 Must issue a start TLS command first'; after the
    handshake and a new EHLO the same MAIL is taken and the message delivered."""
    h = session("ex2003-tls-required")
    h.send(b"EHLO client.example\r\n")
    assert h.send(b"MAIL FROM:<a@example.org>\r\n") == b"530 5.7.0 Must issue a start TLS command first\r\n"
    assert h.send(b"STARTTLS\r\n") == b"220 2.0.0 SMTP server ready\r\n"
    h.handshake(**TLS_INFO)
    h.send(b"EHLO client.example\r\n")
    assert h.send(b"MAIL FROM:<a@example.org>\r\n") == b"250 2.1.0 a@example.org....Sender OK\r\n"
    h.send(b"RCPT TO:<b@example.test>\r\nDATA\r\nSubject: tls\r\n\r\nx\r\n.\r\nQUIT\r\n")
    assert len(h.messages) == 1 and h.messages[0].tls is True
    golden("ex2003-tls-required/mail-before-tls", h.human())


def test_ex2000_exchange_verbs_and_auth(golden):
    """ex2000: XEXCH50 before a login gets '504 Need to authenticate first' (KB 843106); GSSAPI through
    X-EXPS and AUTH always fails with 535 5.7.3 (no Kerberos); AUTH LOGIN with a wrong password gets 535
    5.7.3, with the right one 235 2.7.0; a second AUTH gets 503."""
    h = session("ex2000")
    h.send(b"EHLO client.example\r\n")
    assert h.send(b"XEXCH50 2 2\r\n") == b"504 Need to authenticate first\r\n"
    assert h.send(b"X-EXPS GSSAPI\r\n") == b"334 \r\n"
    assert h.send(b"YIIBhgYJKoZIhvcSAQICAQBu\r\n") == b"535 5.7.3 Authentication unsuccessful\r\n"
    assert h.send(b"AUTH GSSAPI YIIBhgYJKoZIhvcSAQICAQBu\r\n") == b"535 5.7.3 Authentication unsuccessful\r\n"
    assert h.send(b"AUTH CRAM-MD5\r\n") == b"504 5.7.4 Unrecognized authentication type\r\n"
    assert h.send(b"AUTH LOGIN\r\n") == b"334 VXNlcm5hbWU6\r\n"
    assert h.send(base64.b64encode(b"tester") + b"\r\n") == b"334 UGFzc3dvcmQ6\r\n"
    assert h.send(base64.b64encode(b"wrong") + b"\r\n") == b"535 5.7.3 Authentication unsuccessful\r\n"
    assert h.send(b"AUTH LOGIN " + base64.b64encode(b"tester") + b"\r\n") == b"334 UGFzc3dvcmQ6\r\n"
    assert h.send(base64.b64encode(b"secret") + b"\r\n") == b"235 2.7.0 Authentication successful\r\n"
    assert h.send(b"X-EXPS LOGIN\r\n") == b"503 5.5.2 Already authenticated\r\n"
    h.send(b"QUIT\r\n")
    outcomes = [(r.fields["verb"], r.fields["mechanism"], r.fields["outcome"]) for r in h.transcript.events("auth")]
    assert outcomes == [("X-EXPS", "GSSAPI", "failure"), ("AUTH", "GSSAPI", "failure"),
                        ("AUTH", "CRAM-MD5", "unknown_mechanism"), ("AUTH", "LOGIN", "failure"),
                        ("AUTH", "LOGIN", "success"), ("X-EXPS", "LOGIN", "already_authenticated")]
    golden("ex2000/exchange-verbs-and-auth", h.human())


def test_iis_without_basic_authentication_refuses_login():
    """The SMTP service alone lists AUTH GSSAPI NTLM: LOGIN is an unknown mechanism (504), X-EXPS an unknown verb."""
    h = session("iis6-smtp")
    h.send(b"EHLO client.example\r\n")
    assert h.send(b"AUTH LOGIN\r\n") == b"504 5.7.4 Unrecognized authentication type\r\n"
    assert h.send(b"X-EXPS NTLM\r\n") == b"500 5.3.3 Unrecognized command\r\n"


def ntlm_client(password: str):
    return spnego.client("EXAMPLE\\tester", password, hostname="client.example", protocol="ntlm",
                         options=spnego.NegotiateOptions.use_ntlm)


@pytest.mark.parametrize("verb", ["AUTH", "X-EXPS"])
def test_ntlm_in_memory_logs_in_through_auth_and_x_exps(verb):
    """The real NTLMSSP exchange of MS-SMTPNTLM: '334 ntlm supported', the CHALLENGE, then '235 2.7.0
    Authentication successful'; X-EXPS runs the same exchange (KB 812455)."""
    h = session("ex2003")
    h.send(b"EHLO client.example\r\n")
    client = ntlm_client("secret")
    assert h.send(verb.encode() + b" NTLM\r\n") == b"334 ntlm supported\r\n"
    challenge = h.send(base64.b64encode(client.step()) + b"\r\n")
    assert challenge.startswith(b"334 ") and challenge.endswith(b"\r\n")
    answer = client.step(base64.b64decode(challenge[4:-2]))
    assert h.send(base64.b64encode(answer) + b"\r\n") == b"235 2.7.0 Authentication successful\r\n"
    assert h.conn.session.auth_user == "EXAMPLE\\tester"
    (event,) = h.transcript.events("auth")
    assert (event.fields["verb"], event.fields["mechanism"], event.fields["outcome"]) == (verb, "NTLM", "success")


def test_ntlm_in_memory_wrong_password_gets_the_product_text():
    """A wrong NTLM password gets MS-SMTPNTLM's '535 5.7.3 Authentication unsuccessful'; no login."""
    h = session("ex2003")
    h.send(b"EHLO client.example\r\n")
    client = ntlm_client("wrong")
    challenge = h.send(b"AUTH NTLM " + base64.b64encode(client.step()) + b"\r\n")
    answer = client.step(base64.b64decode(challenge[4:-2]))
    assert h.send(base64.b64encode(answer) + b"\r\n") == b"535 5.7.3 Authentication unsuccessful\r\n"
    assert h.conn.session.auth_user is None


def test_relay_denied_text_is_in_every_catalogue():
    """Each persona carries KB Q304897's relay refusal for the relay mechanism, the recipient without brackets."""
    for name in PERSONAS:
        reply = profiles.load(name).replies["relay_denied"].format({"recipient": "relaytest@contoso.net"})
        assert (reply.code, reply.lines) == (550, ("5.7.1 Unable to relay for relaytest@contoso.net",))


def _extended(tmp_path, text: str):
    (tmp_path / "mine.yaml").write_text("name: mine\nextends: ex2003\n" + text)
    return profiles.load(tmp_path / "mine.yaml")


def test_x_exps_takes_the_auth_mechanisms_and_needs_them(tmp_path):
    """X-EXPS takes AUTH's list; enabled with an empty one it is refused naming auth.mechanisms, and its
    keyword needs the verb."""
    with pytest.raises(profiles.ProfileError) as info:
        _extended(tmp_path, "commands: [HELO, EHLO, MAIL, QUIT, X-EXPS]\nehlo_keywords: []\nauth: {mechanisms: []}\n")
    assert (info.value.key, info.value.problem) == (
        "auth.mechanisms", "commands: enables X-EXPS but no mechanism is listed")
    loaded = _extended(tmp_path, "commands: [HELO, EHLO, MAIL, QUIT, X-EXPS]\nehlo_keywords: [\"X-EXPS NTLM\"]\n")
    assert loaded.auth.offered("X-EXPS") == ("GSSAPI", "NTLM", "LOGIN")
    with pytest.raises(profiles.ProfileError) as info:
        _extended(tmp_path, "commands: [HELO, EHLO, MAIL, QUIT]\nehlo_keywords: [\"X-EXPS NTLM\"]\n"
                            "auth: {mechanisms: []}\n")
    assert (info.value.key, info.value.problem) == (
        "ehlo_keywords[0]", "advertises X-EXPS but commands: lacks X-EXPS")


def test_bdat_chunks_and_last_on_iis6(golden):
    """CHUNKING (RFC 3030): BDAT chunks are counted bytes, CRLF.CRLF inside them is data; an intermediate
    chunk gets the [P] bdat_ok text, BDAT ... LAST the end-of-data text; DATA after a chunk is bdat_sequence."""
    h = session("iis6-smtp")
    h.send(b"EHLO client.example\r\nMAIL FROM:<a@example.org> BODY=BINARYMIME\r\nRCPT TO:<b@example.test>\r\n")
    assert h.send(b"BDAT 12\r\nSubject: x\r\n") == b"250 2.0.0 12 bytes received\r\n"
    assert h.send(b"DATA\r\n") == b"503 5.5.2 Bad sequence of commands\r\n"
    assert h.send(b"BDAT 8 LAST\r\n\r\n.\r\nx\r\n") == \
        b"250 2.6.0 <s1.1@iis6.example.test> Queued mail for delivery\r\n"
    assert h.send(b"BDAT ten\r\n") == b"501 5.5.4 Invalid arguments\r\n"
    h.send(b"QUIT\r\n")
    assert h.messages[0].data == b"Subject: x\r\n\r\n.\r\nx\r\n"
    golden("iis6-smtp/bdat-session", h.human())


def test_second_helo_keeps_the_envelope_kb251581():
    """KB 251581: helo, mail from:, helo, rcpt to: and the RCPT still succeeds (the envelope is kept)."""
    h = session("ex2000")
    assert h.send(b"HELO client\r\n") == b"250 ex2000.example.test Hello [192.0.2.10]\r\n"
    assert h.send(b"mail from:Test@msft.com\r\n") == b"250 2.1.0 Test@msft.com....Sender OK\r\n"
    assert h.send(b"HELO client\r\n") == b"250 ex2000.example.test Hello [192.0.2.10]\r\n"
    assert h.send(b"rcpt to:User@passport.com\r\n") == b"250 2.1.5 User@passport.com\r\n"


def test_xexch50_blob_after_a_login_and_x_link2state(golden):
    """KB 843106/812455 on ex2003: X-LINK2STATE and XEXCH50 before a login get 504 Need to authenticate first;
    after AUTH LOGIN, XEXCH50 <bytes> 2 in a transaction gets 354 Send binary data, the blob of that size is
    read (not taken for commands) and answered with the [P] 250 2.0.0 OK; the message then goes through."""
    h = session("ex2003")
    h.send(b"EHLO client.example\r\n")
    assert h.send(b"X-LINK2STATE LAST CHUNK=1 DONE\r\n") == b"504 Need to authenticate first\r\n"
    assert h.send(b"XEXCH50 4 2\r\n") == b"504 Need to authenticate first\r\n"
    h.send(b"AUTH LOGIN " + base64.b64encode(b"tester") + b"\r\n")
    assert h.send(base64.b64encode(b"secret") + b"\r\n") == b"235 2.7.0 Authentication successful\r\n"
    h.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n")
    assert h.send(b"XEXCH50 4 2\r\n") == b"354 Send binary data\r\n"
    assert h.send(b"QUIT") == b"250 2.0.0 OK\r\n"  # four bytes of blob, not a command
    assert h.send(b"DATA\r\nSubject: x\r\n\r\ny\r\n.\r\nQUIT\r\n").startswith(b"354 Start mail input")
    assert len(h.messages) == 1 and h.messages[0].auth_user == "tester"
    golden("ex2003/xexch50-after-login", h.human())
