"""Tests for emulator.tls.context: server contexts, version probing and handshake info.

The server side is pyOpenSSL (its own OpenSSL) under Twisted; the clients are
the stdlib ssl module (the system OpenSSL), so each handshake crosses stacks.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
import twisted.protocols.tls
from OpenSSL import SSL
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.selectreactor import SelectReactor
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.protocols.basic import LineReceiver
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer

from emulator.tls import context as tls
from emulator.tls.certs import CertSpec, CertStore
from emulator.tls.context import (
    TLSSettings,
    TLSUnavailable,
    handshake_info,
    local_tls_versions,
    server_context_factory,
)

pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning")

FQDN = "mail.example.test"
LOOPBACK = "127.0.0.1"
STDLIB_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


@pytest.fixture
def store(tmp_path: Path) -> CertStore:
    return CertStore(tmp_path / "state")


@pytest.fixture
def pair(store: CertStore) -> tuple[Path, Path]:
    return store.leaf(CertSpec(dns_names=(FQDN,), ip_addresses=(LOOPBACK,), key_type="ec"))


def _client(store: CertStore, version: str, seclevel: int | None = None) -> ssl.SSLContext:
    """A stdlib client trusting the test CA, pinned to one TLS version."""
    context = ssl.create_default_context(cafile=store.ca_path())
    if seclevel is not None:
        context.set_ciphers(f"DEFAULT:@SECLEVEL={seclevel}")
    context.minimum_version = context.maximum_version = STDLIB_VERSIONS[version]
    return context


@implementer(IHandshakeListener)
class _Recorder(Protocol):
    """Server protocol that records handshake_info when Twisted reports the handshake done."""

    info: dict[str, Any] | None = None

    def handshakeCompleted(self) -> None:
        self.info = handshake_info(self.transport)


def _handshake(
    creator: IOpenSSLServerConnectionCreator,
    client_context: ssl.SSLContext,
    server_hostname: str | None,
    session: ssl.SSLSession | None = None,
) -> tuple[ssl.SSLObject, dict[str, Any]]:
    """Run a stdlib client against TLSMemoryBIOProtocol over memory BIOs, no sockets."""
    server = _Recorder()
    tls_protocol = TLSMemoryBIOProtocol(TLSMemoryBIOFactory(creator, False, Factory(), Clock()), server)
    wire = StringTransport()
    tls_protocol.makeConnection(wire)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(
        incoming, outgoing, server_hostname=server_hostname, session=session
    )
    client_done = False
    for _ in range(6):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        if data := outgoing.read():
            tls_protocol.dataReceived(data)
        incoming.write(wire.value())
        wire.clear()
        if client_done and server.info is not None:
            return client, server.info
    raise AssertionError("TLS handshake did not complete")


def test_local_tls_versions_probe() -> None:
    """The probe covers every known version, finds TLS 1.2/1.3, and is cached."""
    versions = local_tls_versions()
    assert list(versions) == ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
    assert versions["TLSv1.2"] and versions["TLSv1.3"]
    assert local_tls_versions() is versions


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_stdlib_client_handshake_reports_info(
    store: CertStore, pair: tuple[Path, Path], version: str
) -> None:
    """A stdlib client completes TLS 1.2/1.3; handshake_info matches the client's view and its SNI."""
    creator = server_context_factory(*pair, TLSSettings())
    client, info = _handshake(creator, _client(store, version), FQDN)
    name, _, bits = client.cipher()
    assert info == {"version": version, "cipher": name, "bits": bits, "sni": FQDN}
    assert bits >= 128


def test_handshake_info_sni_none_when_client_sends_none(
    store: CertStore, pair: tuple[Path, Path]
) -> None:
    """A client dialling an IP literal sends no SNI; handshake_info reports None (the IP SAN verifies)."""
    creator = server_context_factory(*pair, TLSSettings())
    _, info = _handshake(creator, _client(store, "TLSv1.3"), LOOPBACK)
    assert info["sni"] is None and info["version"] == "TLSv1.3"


def test_handshake_info_before_handshake_is_an_error(pair: tuple[Path, Path]) -> None:
    """handshake_info refuses to describe a handshake that has not happened."""
    connection = server_context_factory(*pair, TLSSettings()).serverConnectionForTLS(None)
    transport = StringTransport()
    transport.getHandle = lambda: connection  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="not completed"):
        handshake_info(transport)


def test_context_is_shared_and_sessions_resume(store: CertStore, pair: tuple[Path, Path]) -> None:
    """All connections share the factory's one Context, so a second TLS 1.2 handshake resumes."""
    creator = server_context_factory(*pair, TLSSettings())
    assert creator.serverConnectionForTLS(None).get_context() is creator.context
    client_context = _client(store, "TLSv1.2")
    first, _ = _handshake(creator, client_context, FQDN)
    assert not first.session_reused
    second, _ = _handshake(creator, client_context, FQDN, session=first.session)
    assert second.session_reused


def test_default_settings_refuse_tlsv1_client(store: CertStore, pair: tuple[Path, Path]) -> None:
    """By default the server offers TLS 1.2+ only and leaves the security level alone."""
    with capturedLogs() as events:
        creator = server_context_factory(*pair, TLSSettings())
    assert not [e for e in events if "security level" in e.get("log_format", "")]
    with pytest.warns(DeprecationWarning, match="TLSv1"):  # stdlib deprecates TLSv1 clients
        client_context = _client(store, "TLSv1", seclevel=0)
    with pytest.raises(ssl.SSLError):
        _handshake(creator, client_context, FQDN)


def test_legacy_tlsv1(store: CertStore) -> None:
    """min=max=TLSv1: a TLSv1 stdlib client completes if the probe says TLSv1 works, else TLSUnavailable."""
    pair = store.leaf(CertSpec(dns_names=(FQDN,), key_size=1024))  # Exchange 5.5-era key
    settings = TLSSettings(min_version="TLSv1", max_version="TLSv1")
    if not local_tls_versions()["TLSv1"]:
        with pytest.raises(TLSUnavailable, match="TLSv1"):
            server_context_factory(*pair, settings)
        return
    with capturedLogs() as events:
        creator = server_context_factory(*pair, settings)
    lowered = [e for e in events if "security level" in e.get("log_format", "")]
    assert len(lowered) == 1 and lowered[0]["seclevel"] == 0
    with pytest.warns(DeprecationWarning, match="TLSv1"):
        client_context = _client(store, "TLSv1", seclevel=0)
    client, info = _handshake(creator, client_context, FQDN)
    assert client.version() == info["version"] == "TLSv1"
    assert info["sni"] == FQDN


def test_unavailable_versions_raise(pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """When the probe finds none of the requested versions, TLSUnavailable names them; a partial range is fine."""
    monkeypatch.setattr(
        tls,
        "local_tls_versions",
        lambda: {"TLSv1": False, "TLSv1.1": False, "TLSv1.2": True, "TLSv1.3": True},
    )
    with pytest.raises(TLSUnavailable, match="TLSv1 / TLSv1.1 not available"):
        server_context_factory(*pair, TLSSettings(min_version="TLSv1", max_version="TLSv1.1"))
    server_context_factory(*pair, TLSSettings(min_version="TLSv1", max_version="TLSv1.2"))


def test_settings_validation(pair: tuple[Path, Path]) -> None:
    """Unknown version names, inverted ranges, bad levels and bad cipher strings are ValueErrors."""
    for kwargs in (
        {"min_version": "SSLv3"},
        {"max_version": "TLSv1.4"},
        {"min_version": "TLSv1.3", "max_version": "TLSv1.2"},
        {"security_level": 6},
    ):
        with pytest.raises(ValueError):
            TLSSettings(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cipher string"):
        server_context_factory(*pair, TLSSettings(ciphers="NO-SUCH-CIPHER"))


def test_explicit_ciphers_and_security_level(store: CertStore, pair: tuple[Path, Path]) -> None:
    """An explicit TLS 1.2 cipher string is honoured, with an explicit security level."""
    settings = TLSSettings(max_version="TLSv1.2", ciphers="ECDHE-ECDSA-AES256-GCM-SHA384", security_level=1)
    creator = server_context_factory(*pair, settings)
    _, info = _handshake(creator, _client(store, "TLSv1.2"), FQDN)
    assert info["cipher"] == "ECDHE-ECDSA-AES256-GCM-SHA384" and info["bits"] == 256


def test_bad_pem_files_name_the_file(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """Unusable certificate files surface as ValueError naming the file."""
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match="nope.pem"):
        server_context_factory(missing, pair[1], TLSSettings())


def test_starttls_over_loopback(
    store: CertStore, pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """STARTTLS on a real 127.0.0.1 socket: startTLS with our creator, handshakeCompleted, handshake_info."""
    creator = server_context_factory(*pair, TLSSettings())
    reactor = SelectReactor()  # a private reactor: the global one cannot be restarted
    # startTLS's TLS layer flushes small writes via the *global* reactor's
    # callLater; point it at ours (Twisted's own tests patch this hook too).
    monkeypatch.setattr(twisted.protocols.tls, "_get_default_clock", lambda: reactor)

    @implementer(IHandshakeListener)
    class Server(LineReceiver):
        def lineReceived(self, line: bytes) -> None:
            if line == b"STARTTLS":
                self.sendLine(b"220 2.0.0 Ready to start TLS")
                self.transport.startTLS(creator)

        def handshakeCompleted(self) -> None:
            self.sendLine(json.dumps(handshake_info(self.transport)).encode())

    port = reactor.listenTCP(0, Factory.forProtocol(Server), interface=LOOPBACK)
    result: dict[str, Any] = {}

    def client() -> None:
        try:
            with socket.create_connection((LOOPBACK, port.getHost().port), timeout=10) as sock:
                sock.sendall(b"STARTTLS\r\n")
                result["reply"] = sock.recv(100)
                with _client(store, "TLSv1.3").wrap_socket(sock, server_hostname=FQDN) as tls_sock:
                    line = b""
                    while not line.endswith(b"\r\n"):
                        line += tls_sock.recv(4096)
                    result["info"] = json.loads(line)
        except Exception as e:  # reported below, on the test's thread
            result["error"] = e
        finally:
            reactor.callFromThread(reactor.stop)

    reactor.callWhenRunning(threading.Thread(target=client, daemon=True).start)
    timeout = reactor.callLater(20, reactor.stop)
    reactor.run(installSignalHandlers=False)
    port.stopListening()
    if timeout.active():
        timeout.cancel()
    assert "error" not in result, result
    assert result["reply"] == b"220 2.0.0 Ready to start TLS\r\n"
    assert result["info"]["version"] == "TLSv1.3" and result["info"]["sni"] == FQDN
    assert result["info"]["bits"] >= 128 and result["info"]["cipher"].startswith("TLS_")


def test_modules_use_no_deprecated_pyopenssl_paths(store: CertStore) -> None:
    """Probing and building contexts (legacy, RSA) emits no warning at all, deprecation or other."""
    pair = store.leaf(CertSpec(dns_names=(FQDN,)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        local_tls_versions.cache_clear()
        local_tls_versions()
        creator = server_context_factory(*pair, TLSSettings(min_version="TLSv1"))
        creator.serverConnectionForTLS(None)
    assert isinstance(creator.context, SSL.Context)
