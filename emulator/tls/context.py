"""
Server-side TLS for the emulator: pyOpenSSL contexts for Twisted.

One L{OpenSSL.SSL.Context} is built per L{server_context_factory} call and
shared by every connection (implicit TLS or STARTTLS) made from it, so session
caching and tickets work and no per-connection setup cost is paid.

pyOpenSSL's wheel carries its own OpenSSL, distinct from the one the stdlib
L{ssl} module links; L{local_tls_versions} probes the former.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()

#: Protocol names, oldest first, as pyOpenSSL's C{get_protocol_version_name} spells them.
VERSIONS = {
    "TLSv1": SSL.TLS1_VERSION,
    "TLSv1.1": SSL.TLS1_1_VERSION,
    "TLSv1.2": SSL.TLS1_2_VERSION,
    "TLSv1.3": SSL.TLS1_3_VERSION,
}
_NAMES = list(VERSIONS)
# Below TLS 1.2, OpenSSL 3+ refuses the handshake's MD5/SHA-1 signatures unless
# the security level is 0.
_LEGACY_SECURITY_LEVEL = 0


class TLSUnavailable(ValueError):
    """The local pyOpenSSL stack cannot offer any of the requested TLS versions."""


@dataclass(frozen=True)
class TLSSettings:
    """
    Server TLS policy.  C{max_version=None} means the newest the stack offers;
    C{ciphers} is an OpenSSL cipher string for TLS 1.2 and older;
    C{security_level} forces OpenSSL's C{@SECLEVEL}.
    """

    min_version: str = "TLSv1.2"
    max_version: str | None = None
    ciphers: str | None = None
    security_level: int | None = None

    def __post_init__(self) -> None:
        for name in (self.min_version, self.max_version):
            if name is not None and name not in VERSIONS:
                raise ValueError(f"unknown TLS version {name!r}; expected one of {_NAMES}")
        if self.max_version is not None and (
            VERSIONS[self.max_version] < VERSIONS[self.min_version]
        ):
            raise ValueError(f"max_version {self.max_version} is below min_version {self.min_version}")
        if self.security_level is not None and not 0 <= self.security_level <= 5:
            raise ValueError("security_level must be between 0 and 5")

    @property
    def versions(self) -> list[str]:
        """The version names in the range, oldest first."""
        last = _NAMES.index(self.max_version or _NAMES[-1])
        return _NAMES[_NAMES.index(self.min_version) : last + 1]


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """Makes server-side pyOpenSSL connections that all share one C{context}."""

    def __init__(self, context: SSL.Context) -> None:
        self.context = context

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self.context, None)


def server_context_factory(
    cert: Path, key: Path, settings: TLSSettings = TLSSettings()
) -> ServerTLS:
    """
    A Twisted L{IOpenSSLServerConnectionCreator} serving C{cert}/C{key}, usable
    with C{TLSMemoryBIOFactory} and C{ITLSTransport.startTLS}.

    @raise TLSUnavailable: none of the requested versions is available locally.
    @raise ValueError: the PEM files are unusable (see L{emulator.tls.certs.load_pem_pair}).
    """
    available = local_tls_versions()
    if not any(available[name] for name in settings.versions):
        raise TLSUnavailable(
            f"{' / '.join(settings.versions)} not available from the local OpenSSL "
            f"({SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()})"
        )
    from emulator.tls.certs import load_pem_pair  # with a certificate only: not on every start

    chain, private_key = load_pem_pair(cert, key)

    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(VERSIONS[settings.min_version])
    if settings.max_version is not None:
        context.set_max_proto_version(VERSIONS[settings.max_version])
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    # Resumption: a server-side session cache plus the (default-on) tickets.
    context.set_session_id(b"legacy-smtp-emulator")
    context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    # The security level must be in place before the certificate is loaded:
    # OpenSSL checks the key size against it right then.
    _set_ciphers(context, settings)
    try:
        context.use_certificate(chain[0])
        for intermediate in chain[1:]:
            context.add_extra_chain_cert(intermediate)
        context.use_privatekey(private_key)  # type: ignore[arg-type]
    except SSL.Error as e:
        raise ValueError(
            f"{cert}: rejected by OpenSSL ({_reason(e)}); a weak key needs a lower security_level"
        ) from None
    return ServerTLS(context)


def _set_ciphers(context: SSL.Context, settings: TLSSettings) -> None:
    level = settings.security_level
    if level is None and VERSIONS[settings.min_version] < SSL.TLS1_2_VERSION:
        level = _LEGACY_SECURITY_LEVEL
        log.warn(
            "Lowered OpenSSL security level to {seclevel} so that {version} clients "
            "can connect",
            seclevel=level,
            version=settings.min_version,
        )
    elif level is not None:
        log.info("OpenSSL security level set to {seclevel} by the TLS settings", seclevel=level)
    if settings.ciphers is None and level is None:
        return
    cipher_string = settings.ciphers or "DEFAULT"
    if level is not None:
        cipher_string += f":@SECLEVEL={level}"
    try:
        context.set_cipher_list(cipher_string.encode("ascii"))
    except SSL.Error:
        raise ValueError(f"OpenSSL rejects the cipher string {cipher_string!r}") from None


def _reason(error: SSL.Error) -> str:
    return ", ".join(reason for _, _, reason in error.args[0])


@functools.cache
def local_tls_versions() -> dict[str, bool]:
    """
    Which TLS versions pyOpenSSL's OpenSSL can negotiate here, found by one
    in-memory handshake per version with itself (a few milliseconds, once).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls-version-probe")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    result = {}
    for version_name, version in VERSIONS.items():
        server_context = SSL.Context(SSL.TLS_SERVER_METHOD)
        server_context.use_certificate(cert)
        server_context.use_privatekey(key)
        client_context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        for context in (server_context, client_context):
            context.set_min_proto_version(version)
            context.set_max_proto_version(version)
            context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        server = SSL.Connection(server_context, None)
        server.set_accept_state()
        client = SSL.Connection(client_context, None)
        client.set_connect_state()
        result[version_name] = _memory_handshake(client, server)
    return result


def _memory_handshake(client: SSL.Connection, server: SSL.Connection) -> bool:
    try:
        for _ in range(6):
            finished = 0
            for side, peer in ((client, server), (server, client)):
                try:
                    side.do_handshake()
                    finished += 1
                except SSL.WantReadError:
                    pass
                try:
                    peer.bio_write(side.bio_read(65536))
                except SSL.WantReadError:
                    pass
            if finished == 2:
                return True
    except SSL.Error:
        pass
    return False


def handshake_info(transport: Any) -> dict[str, Any]:
    """
    Describe the completed handshake on a Twisted TLS transport (the
    C{transport} of a protocol behind C{TLSMemoryBIOFactory} or after
    C{startTLS}): version, cipher name, cipher bits and the SNI the client
    sent (C{None} if it sent none).
    """
    connection: SSL.Connection = transport.getHandle()
    cipher = connection.get_cipher_name()
    if cipher is None:
        raise ValueError("TLS handshake has not completed")
    sni = connection.get_servername()
    return {
        "version": connection.get_protocol_version_name(),
        "cipher": cipher,
        "bits": connection.get_cipher_bits(),
        "sni": None if sni is None else sni.decode("ascii", "replace"),
    }


def default_state_dir() -> Path:
    """Where generated certificates are cached when no C{--state-dir} is given:
    C{$XDG_STATE_HOME/legacy-smtp-emulator} (never inside the repository)."""
    import os

    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "legacy-smtp-emulator"


def context_for(config, *, hostname: str, state_dir: Path, base: Path | None = None,
                cert: Path | None = None, key: Path | None = None) -> ServerTLS | None:
    """The server context a profile's C{tls:} section asks for, or None when
    no certificate is bound (C{certificate: none} and no override).

    @param config: the profile's L{emulator.tls.config.TLSConfig}.
    @param base: folder that relative C{cert_file}/C{key_file} are read from.
    @param cert: a PEM certificate that replaces the profile's (C{--tls-cert}).
    @param key: its PEM private key (C{--tls-key}).
    """
    settings = TLSSettings(config.min_version, config.max_version, config.ciphers)
    if cert is not None:
        return server_context_factory(Path(cert), Path(key), settings)
    if config.certificate == "none":
        return None
    if config.certificate == "files":
        folder = base or Path.cwd()
        return server_context_factory(folder / config.cert_file, folder / config.key_file, settings)
    from emulator.tls.certs import CertSpec, CertStore  # generated: not imported for a profile without

    dns, ips = config.split_names(hostname)
    spec = CertSpec(dns_names=dns, ip_addresses=ips, expired=config.expired, self_signed=config.self_signed,
                    key_type=config.key_type, key_size=config.key_size, signature_hash=config.signature_hash)
    leaf_cert, leaf_key = CertStore(Path(state_dir)).leaf(spec)
    return server_context_factory(leaf_cert, leaf_key, settings)
