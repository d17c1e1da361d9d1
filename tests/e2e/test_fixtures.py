"""The fixtures' server pool over real sockets on 127.0.0.1: starting, reuse,
reset, TLS certificates, errors.  This suite loads the plugin through its
entry point, so most of these use the legacy_smtp fixture itself."""

import smtplib
import socket
import ssl

import pytest

from emulator.testing.pool import ServerPool, ServerSideError
from emulator.testing.plugin import legacy_smtp_profiles

pytestmark = pytest.mark.e2e


def send(server, body=b"Subject: t\r\n\r\nhello\r\n", **kwargs):
    with smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10) as client:
        return client.sendmail("a@example.org", ["b@example.test"], body, **kwargs)


def test_start_serves_the_profile_on_loopback_port_zero(legacy_smtp):
    """start() listens on 127.0.0.1 on a port the system chose, and the client talks to the profile."""
    server = legacy_smtp.start("ims55sp4")
    assert server is legacy_smtp and server.host == "127.0.0.1" and server.port > 0
    assert server.profile.name == "ims55sp4" and server.hostname == "mail.example.test"
    with socket.create_connection(server.address, timeout=10) as s:
        assert s.recv(200).startswith(b"220 mail.example.test ESMTP Server (Microsoft Exchange")


def test_messages_and_transcripts_are_exposed(legacy_smtp):
    """Accepted messages carry the exact bytes and envelope; transcripts hold the session in arrow form."""
    server = legacy_smtp.start("ims55sp4")
    body = b"Subject: fixture\r\n\r\n.dot\r\n"
    assert send(server, body) == {}
    (captured,) = server.messages
    assert captured.message.data == body
    assert captured.envelope()["recipients"] == ["b@example.test"]
    server.wait_closed()
    (session,) = server.transcripts
    assert "-> ..dot" in session.human() and session.events("closed")
    assert server.human().startswith(f"=== session {session.session_id} profile ims55sp4 peer 127.0.0.1:")


def test_the_same_arguments_reuse_the_server_reset(legacy_smtp, legacy_smtp_servers):
    """A second test asking for the same profile gets the same listener, with nothing left over."""
    first = legacy_smtp.start("ims55sp4")
    port = first.port
    send(first)
    legacy_smtp_servers.begin_test()  # what the plugin does between two tests
    second = legacy_smtp_servers.start("ims55sp4")
    assert second.port == port
    assert second.messages == [] and second.transcripts == []


def test_within_one_test_a_server_is_reset_only_once(legacy_smtp, legacy_smtp_servers):
    """Asking again for a server already used in this test keeps its state."""
    legacy_smtp.start("ims55sp4")
    send(legacy_smtp)
    again = legacy_smtp_servers.start("ims55sp4")
    assert len(again.messages) == 1


def test_options_make_distinct_servers(legacy_smtp, legacy_smtp_servers):
    """Another host name is another server, with its own messages; both run at once."""
    a = legacy_smtp.start("ims55sp4")
    b = legacy_smtp_servers.start("ims55sp4", hostname="other.example.test")
    assert a.port != b.port
    send(b)
    assert a.messages == [] and len(b.messages) == 1
    with socket.create_connection(b.address, timeout=10) as s:
        assert s.recv(200).startswith(b"220 other.example.test ")


def test_reset_closes_open_connections_and_forgets_them(legacy_smtp):
    """reset() aborts a connection the client left open; its session does not come back afterwards."""
    server = legacy_smtp.start("ims55sp4")
    with socket.create_connection(server.address, timeout=10) as s:
        s.recv(200)
        assert len(server.transcripts) == 1
        server.reset()
        assert server.transcripts == []
        try:
            assert s.recv(200) == b""  # closed by the server
        except ConnectionResetError:
            pass  # or reset
    assert server.transcripts == []


def test_reset_forgets_per_peer_memory(legacy_smtp):
    """The IIS 4.0 per-peer memory (KB Q279214) starts afresh after reset: the first message fails again."""
    server = legacy_smtp.start("iis4-smtp-128bit", tls=True)
    context = ssl.create_default_context(cafile=server.ca_path)

    def first_mail_reply():
        with smtplib.SMTP(server.host, server.port, timeout=10) as client:
            client.ehlo()
            client.starttls(context=context)
            return client.mail("a@example.org")[0]

    assert first_mail_reply() == 505
    assert first_mail_reply() == 250
    server.reset()
    assert first_mail_reply() == 505


def test_tls_true_binds_a_certificate_valid_for_127_0_0_1(legacy_smtp, legacy_smtp_servers):
    """tls=True gives ims55sp4 a certificate that a verifying client accepts at 127.0.0.1, so STARTTLS is
    listed and works; the test CA lives in the session's temporary folder."""
    server = legacy_smtp.start("ims55sp4", tls=True)
    assert legacy_smtp_servers.state_dir in server.ca_path.parents
    context = ssl.create_default_context(cafile=server.ca_path)
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.starttls(context=context)[0] == 220
        assert client.sock.version() is not None
    assert server.transcripts[0].events("tls_established")


def test_without_tls_the_profile_certificate_names_only_the_fqdn(legacy_smtp):
    """ims55sp3-cert keeps its FQDN-only certificate (KB Q273948): verification fails for 127.0.0.1, passes for the FQDN."""
    server = legacy_smtp.start("ims55sp3-cert")
    context = ssl.create_default_context(cafile=server.ca_path)
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo()
        with pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(context=context)
    with socket.create_connection(server.address, timeout=10) as raw:
        raw.recv(500)
        raw.sendall(b"EHLO c\r\n")
        raw.recv(500)
        raw.sendall(b"STARTTLS\r\n")
        assert raw.recv(500).startswith(b"220")
        with context.wrap_socket(raw, server_hostname="mail.example.test") as tls:
            assert tls.version() is not None


def test_implicit_tls_only_for_profiles_that_offered_it(legacy_smtp):
    """implicit_tls serves SMTPS for netscape-ms, and is refused for Exchange 5.5 (KB Q218430)."""
    with pytest.raises(ValueError, match="never offered TLS from the first byte"):
        legacy_smtp.start("ims55sp4", implicit_tls=True)
    server = legacy_smtp.start("netscape-ms", implicit_tls=True, tls=True)
    context = ssl.create_default_context(cafile=server.ca_path)
    with smtplib.SMTP_SSL(server.host, server.port, context=context, timeout=10) as client:
        assert client.noop()[0] == 250


def test_unknown_profile_is_a_profile_error(legacy_smtp):
    """A bad name raises the loader's error, naming the known profiles."""
    from emulator.profiles.loader import ProfileError

    with pytest.raises(ProfileError, match="no profile of that name; known: .*ims55sp4"):
        legacy_smtp.start("nosuch")


def test_using_the_fixture_before_start_says_what_to_do(legacy_smtp):
    """Without start(), a marker or a parameter there is no server, and the error says so."""
    with pytest.raises(RuntimeError, match=r"call legacy_smtp.start\(PROFILE\)"):
        legacy_smtp.port


@pytest.mark.legacy_smtp("ims55sp2")
def test_marker_starts_the_server(legacy_smtp):
    """The legacy_smtp marker starts its profile before the test."""
    assert legacy_smtp.profile.name == "ims55sp2"


@pytest.mark.parametrize("legacy_smtp", ["ims55sp2", {"profile": "ims55sp4", "hostname": "h.example"}],
                         indirect=True)
def test_indirect_parametrize_with_names_or_start_arguments(legacy_smtp):
    """indirect parametrization takes profile names or dicts of start() arguments."""
    assert legacy_smtp.profile.name in ("ims55sp2", "ims55sp4")
    assert legacy_smtp.hostname == ("h.example" if legacy_smtp.profile.name == "ims55sp4" else "mail.example.test")


@legacy_smtp_profiles(where=lambda profile: not profile.tls.implicit)
def test_every_plaintext_persona_greets(legacy_smtp):
    """legacy_smtp_profiles() runs a test once per selected profile; each greets with 220."""
    with socket.create_connection(legacy_smtp.address, timeout=10) as s:
        assert s.recv(500)[:3] == b"220"


def test_profiles_helper_selects_and_names_the_cases():
    """The helper parametrizes legacy_smtp indirectly, one case per selected profile, with the profile as id."""
    from emulator.profiles import loader as profiles

    every = legacy_smtp_profiles().args
    assert every[0] == "legacy_smtp" and [p.id for p in every[1]] == profiles.names()
    smtps = legacy_smtp_profiles(implicit_tls=True).args[1]
    assert [p.id for p in smtps] == ["netscape-ms"] and smtps[0].values[0] == {"profile": "netscape-ms",
                                                                               "implicit_tls": True}
    chosen = legacy_smtp_profiles(where=lambda p: "STARTTLS" in p.commands).args[1]
    assert "ims55sp2" in [p.id for p in chosen] and "netscape-ms" not in [p.id for p in chosen]
    assert [p.id for p in legacy_smtp_profiles("ims55sp2", tls=True).args[1]] == ["ims55sp2"]


def test_check_errors_raises_what_the_server_raised(legacy_smtp, monkeypatch):
    """An exception inside the emulator becomes a ServerSideError naming the server and session, caused by it."""
    server = legacy_smtp.start("ims55sp4")

    def broken(conn, arg):
        raise ZeroDivisionError("boom in NOOP")

    monkeypatch.setitem(server._current.emulation.factories[0].server.verbs, "NOOP", broken)
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        assert client.noop()[0] == 451
    with pytest.raises(ServerSideError, match=r"ims55sp4 on 127.0.0.1:\d+ \(session .*\): the emulator raised "
                                              r"ZeroDivisionError: boom in NOOP") as raised:
        server.check_errors()
    assert isinstance(raised.value.__cause__, ZeroDivisionError)
    server.check_errors()  # taken: raised once


def test_pool_outside_pytest(tmp_path):
    """ServerPool works without pytest: start, use, check, close (the port and open connections are then closed)."""
    pool = ServerPool(tmp_path / "state")
    pool.begin_test()
    server = pool.start("ims55sp4")
    send(server)
    pool.check_errors()
    address = server.address
    with socket.create_connection(address, timeout=10) as left_open:
        left_open.recv(200)
        pool.close()
        try:
            assert left_open.recv(200) == b""
        except ConnectionResetError:
            pass
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=5).close()


def test_a_loaded_profile_object_is_reused_by_identity(legacy_smtp, legacy_smtp_servers):
    """A Profile object (say with changes made in the test suite) keys its server by identity."""
    from emulator.profiles import loader as profiles

    loaded = profiles.load("ims55sp4")
    port = legacy_smtp.start(loaded).port
    assert legacy_smtp_servers.start(loaded).port == port
    assert legacy_smtp_servers.start(profiles.load("ims55sp4")).port != port


def test_calling_from_the_reactor_thread_is_an_error_not_a_hang():
    """ReactorThread.call from the reactor's own thread (as under pytest-twisted) raises instead of deadlocking."""
    from emulator.testing.harness import ReactorThread

    with pytest.raises(RuntimeError, match="the Twisted reactor runs in this thread"):
        ReactorThread.call(lambda: ReactorThread.call(lambda: None))


def test_middlebox_in_front_of_the_profile(legacy_smtp):
    """middlebox= puts a firewall in front: behind a PIX Mail Guard, EHLO gets 500 and HELO works (KB Q295725)."""
    server = legacy_smtp.start("ims55sp4", middlebox="pix-mailguard")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        assert client.ehlo()[0] == 500
        assert client.helo()[0] == 250
    behind_pix = server.port
    assert legacy_smtp.start("ims55sp4").port != behind_pix  # another combination, another server


def test_a_failure_logged_in_the_reactor_thread_counts_as_a_server_side_error(legacy_smtp):
    """An exception outside any session (here a delayed call) in the reactor thread is not lost."""
    from emulator.testing.harness import ReactorThread

    legacy_smtp.start("ims55sp4")

    def fail_later():
        from twisted.internet import reactor, task

        reactor.callLater(0, lambda: 1 / 0)
        return task.deferLater(reactor, 0, lambda: None)  # fires after it

    ReactorThread.call(fail_later)
    with pytest.raises(ServerSideError, match="the emulator raised ZeroDivisionError"):
        legacy_smtp.check_errors()


def test_accounts_are_added_to_the_profile(legacy_smtp):
    """accounts= adds logins, as --account does; the server with them is a server of its own."""
    server = legacy_smtp.start("ims55sp4", accounts=["CORP\\alice:Wonder-land1"])
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        assert client.login("CORP\\alice", "Wonder-land1")[0] == 235
    with_alice = server.port
    with smtplib.SMTP(server.host, legacy_smtp.start("ims55sp4").port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("CORP\\alice", "Wonder-land1")
    assert legacy_smtp.port != with_alice


@pytest.mark.legacy_smtp(hostname="marked.example")
@pytest.mark.parametrize("legacy_smtp", ["ims55sp2"], indirect=True)
def test_marker_options_apply_to_a_parametrized_profile(legacy_smtp):
    """A marker's keyword arguments join the profile a parameter chose."""
    assert legacy_smtp.profile.name == "ims55sp2" and legacy_smtp.hostname == "marked.example"
