"""Faults and STARTTLS attack personas over real sockets on 127.0.0.1, with
stdlib smtplib and raw sockets: what reaches the wire, and what smtplib does."""

import smtplib
import socket
import ssl

import pytest

from emulator.quirks.spec import parse
from emulator.testing.harness import Harness, ReactorThread

pytestmark = pytest.mark.e2e

BANNER = b"220 mail.example.test ESMTP Server (Microsoft Exchange Internet Mail Service 5.5.2653.13) ready\r\n"


def _plain_ehlo():
    h = Harness("ims55sp4", peer=("127.0.0.1", 1))
    h.connect()
    return h.send(b"EHLO client.example\r\n")


EHLO = _plain_ehlo()  # the profile's own reply to a client on 127.0.0.1
LAST = EHLO.splitlines(keepends=True)[-1]


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    """One certificate store for the module: generated certificates are cached there."""
    return tmp_path_factory.mktemp("state")


@pytest.fixture
def faulty(serve, tmp_path, state_dir):
    """start(profile, *faults): a server with a Maildir and the faults added at run time."""

    def start(profile, *faults):
        server = serve(profile, maildir=tmp_path / "maildir", state_dir=state_dir)
        for spec in faults:
            server.emulation.add_fault(parse(spec))
        return server

    return start


def client(server, **kwargs):
    return smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10, **kwargs)


def tls_context(server):
    context = ssl.create_default_context(cafile=server.ca_path)
    context.check_hostname = False  # the certificate names the FQDN; the client dials 127.0.0.1
    return context


def read_until(sock, end: bytes) -> list[bytes]:
    """recv() until the data ends with C{end}; the chunks as recv() returned them."""
    chunks, data = [], b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        chunks.append(chunk)
        data += chunk
    return chunks


def session(server, event):
    return next(t for t in reversed(server.transcripts) if t.events(event))


# -- retries -----------------------------------------------------------------------


def test_smtplib_retries_until_the_third_delivery_is_accepted(faulty, tmp_path):
    """data_end 451 times=2 scope=peer: two connections are refused after DATA, the third is delivered once."""
    server = faulty("ims55sp4", "data_end:reply=451 4.3.0 Try again later:times=2:scope=peer")
    outcomes = []
    for _ in range(5):  # the client's retry loop, bounded
        with client(server) as smtp:
            try:
                smtp.sendmail("a@example.org", ["b@example.test"], b"Subject: retry\r\n\r\nhello\r\n")
            except smtplib.SMTPDataError as e:
                outcomes.append(e.smtp_code)
                continue
            outcomes.append("accepted")
            break
    assert outcomes == [451, 451, "accepted"]
    assert len(list((tmp_path / "maildir" / "new").iterdir())) == 1
    assert len(server.messages) == 1


# -- what reaches the socket ---------------------------------------------------------


class _SendSpy:
    """Stands in for a connection's socket and records each send() call."""

    def __init__(self, sock):
        self._sock, self.sent = sock, []

    def send(self, data, *flags):
        n = self._sock.send(data, *flags)
        self.sent.append(bytes(data[:n]))
        return n

    def __getattr__(self, name):
        return getattr(self._sock, name)


def spy_on_server_socket(server):
    def install():
        from twisted.internet import reactor, tcp

        (conn,) = [r for r in reactor.getReaders()
                   if isinstance(r, tcp.Server) and r.getHost().port == server.port]
        conn.socket = _SendSpy(conn.socket)
        return conn.socket

    return ReactorThread.call(install)


def test_split_lines_is_one_send_per_line_on_the_server_socket(faulty):
    """split=lines, pause 0: the EHLO reply leaves through six send() calls, one line each."""
    server = faulty("ims55sp4", "ehlo:split=lines")
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        assert read_until(sock, b"\r\n") == [BANNER]
        spy = spy_on_server_socket(server)
        sock.sendall(b"EHLO client.example\r\n")
        assert b"".join(read_until(sock, LAST)) == EHLO
    assert ReactorThread.call(lambda: list(spy.sent)) == EHLO.splitlines(keepends=True)


def test_split_lines_with_a_pause_gives_the_client_one_recv_per_line(faulty):
    """split=lines:pause=0.2: a client's recv() returns each EHLO line on its own (what one-recv scanners see)."""
    server = faulty("ims55sp4", "ehlo:split=lines:pause=0.2")
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        read_until(sock, b"\r\n")
        sock.sendall(b"EHLO client.example\r\n")
        assert read_until(sock, LAST) == EHLO.splitlines(keepends=True)


def test_smtplib_reads_a_split_ehlo_reply_whole(faulty):
    """smtplib reads line by line, so a split EHLO reply still gives it every keyword."""
    server = faulty("ims55sp4", "ehlo:split=lines:pause=0.05")
    with client(server) as smtp:
        code, _ = smtp.ehlo()
        assert code == 250 and smtp.has_extn("size") and smtp.has_extn("etrn")


def test_glue_sends_the_greeting_and_the_ehlo_reply_in_one_segment(faulty):
    """connect:glue: a client that sends EHLO at once gets banner and EHLO reply in its first recv()."""
    server = faulty("ims55sp4", "connect:glue")
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"EHLO client.example\r\n")
        assert read_until(sock, LAST) == [BANNER + EHLO]


@pytest.mark.parametrize("mode, expect", [
    ("reply", b"421 mail.example.test Service not available, closing transmission channel\r\n"),
    ("close", b""),
    ("reset", ConnectionResetError),
])
def test_disconnect_modes_on_the_wire(faulty, mode, expect):
    """disconnect at HELO: 421 then FIN, a bare FIN, or a TCP reset (recv raises ECONNRESET)."""
    server = faulty("ims55sp4", f"helo:disconnect={mode}")
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        read_until(sock, b"\r\n")
        sock.sendall(b"HELO client.example\r\n")
        if expect is ConnectionResetError:
            with pytest.raises(ConnectionResetError):
                sock.recv(1024)
            return
        data = b""
        while chunk := sock.recv(1024):
            data += chunk
        assert data == expect  # and then end of stream


def test_smtplib_sees_a_reset_as_a_disconnect(faulty):
    """smtplib turns a reset during MAIL into an exception; nothing is delivered."""
    server = faulty("ims55sp4", "mail:disconnect=reset")
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionResetError)):
        with client(server) as smtp:
            smtp.sendmail("a@example.org", ["b@example.test"], b"x\r\n")
    assert server.messages == []


# -- STARTTLS attack personas ------------------------------------------------------------


def test_starttls_inject_smtplib_discards_the_injected_reply(faulty):
    """starttls-inject: the 220 and the injected EHLO reply share one write; smtplib drops the
    injected bytes with its plaintext reader, and its EHLO inside TLS gets the server's real reply."""
    server = faulty("starttls-inject")
    with client(server) as smtp:
        smtp.ehlo()
        assert smtp.starttls(context=tls_context(server))[0] == 220
        code, reply = smtp.ehlo()
        assert code == 250 and b"injected" not in reply and b"AUTH PLAIN" not in reply and b"XEXCH50" in reply
    transcript = session(server, "tls_established")
    (write,) = [r.data for r in transcript.records if r.dir == "s" and r.data.startswith(b"220 Ready")]
    assert write == (b"220 Ready to start TLS\r\n250-mail.example.test Hello [injected]\r\n"
                     b"250 AUTH PLAIN LOGIN\r\n")


def test_starttls_stripped_smtplib_refuses_and_sends_no_credentials(faulty):
    """starttls-stripped: the firewall hides STARTTLS, so smtplib.starttls() raises before sending
    anything; a client that stops there leaves no credentials event in the server's transcript."""
    server = faulty("starttls-stripped")
    with client(server) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            smtp.starttls(context=tls_context(server))
    assert server.transcripts and not any(t.events("credentials") or t.events("tls_starting")
                                          for t in server.transcripts)


def test_credentials_sent_in_the_clear_are_recorded(faulty):
    """A careless client that logs in anyway after the downgrade (smtplib.login: AUTH LOGIN with
    the user name as initial response, then the password line) shows as credentials tls=False twice."""
    server = faulty("starttls-stripped")
    with client(server) as smtp:
        smtp.ehlo()
        assert smtp.login("tester", "secret")[0] == 235
    transcript = session(server, "credentials")
    assert [e.fields for e in transcript.events("credentials")] == [{"verb": "AUTH", "tls": False}] * 2
    assert "-> AUTH LOGIN dGVzdGVy\n=== credentials verb=AUTH tls=False" in transcript.human()


def test_credentials_inside_tls_are_recorded_as_such(faulty):
    """The same AUTH line after STARTTLS is credentials tls=True."""
    server = faulty("ims55sp4-cert")
    with client(server) as smtp:
        smtp.starttls(context=tls_context(server))
        smtp.ehlo()
        assert smtp.login("tester", "secret")[0] == 235
    assert [e.fields for e in session(server, "credentials").events("credentials")] == [
        {"verb": "AUTH", "tls": True}] * 2


@pytest.mark.parametrize("profile, faults, code", [
    ("starttls-refused", (), 454),
    ("ims55sp4-cert", ("starttls:reply=502 5.5.1 Command not implemented",), 502),
    ("ims55sp2", (), 554),
])
def test_starttls_refused_smtplib_raises_and_stays_in_plaintext(faulty, profile, faults, code):
    """STARTTLS advertised but answered 454/502/554: smtplib raises SMTPResponseException and
    does not switch; whether to continue in plaintext is left to the application."""
    server = faulty(profile, *faults)
    with client(server) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        with pytest.raises(smtplib.SMTPResponseException) as error:
            smtp.starttls(context=tls_context(server))
        assert error.value.smtp_code == code
        assert not isinstance(smtp.sock, ssl.SSLSocket)
        assert smtp.noop()[0] == 250  # the session goes on, in plaintext


def _scan(server):
    """A scanner's probe: STARTTLS and HELP in one segment, then HELP inside TLS; the first reply inside TLS."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        read_until(sock, b"\r\n")
        sock.sendall(b"EHLO scanner.example\r\n")
        read_until(sock, b"250 STARTTLS\r\n")
        sock.sendall(b"STARTTLS\r\nNOOP\r\n")
        assert read_until(sock, b"\r\n") == [b"220 Ready to start TLS\r\n"]
        with tls_context(server).wrap_socket(sock) as tls:
            tls.sendall(b"HELP\r\n")
            return read_until(tls, b"\r\n")[0].splitlines()[0]


def test_starttls_plaintext_leak_is_found_by_a_scanner_and_smtplib_is_unaffected(faulty):
    """starttls-plaintext-leak answers the NOOP pipelined after STARTTLS inside TLS (CVE-2011-0411);
    the fixed server answers only what came inside TLS; smtplib never pipelines there, so it works."""
    leaky, safe = faulty("starttls-plaintext-leak"), faulty("ims55sp4-cert")
    assert _scan(leaky) == b"250 OK"  # the leaked NOOP's reply comes first
    assert _scan(safe) == b"214-Commands:"
    assert session(leaky, "starttls_plaintext_kept").events("starttls_plaintext_kept")[0].fields == {"bytes": 6}
    assert session(safe, "starttls_discarded").events("starttls_discarded")[0].fields == {"bytes": 6}
    with client(leaky) as smtp:
        smtp.starttls(context=tls_context(leaky))
        assert smtp.ehlo()[0] == 250
        assert smtp.sendmail("a@example.org", ["b@example.test"], b"x\r\n") == {}
