"""
Certificate material for the emulator's TLS endpoints.

L{CertStore} keeps a private test CA and leaf certificates under a state
directory (never the repository).  Files are written atomically and generation
is serialised with a lock file, so processes sharing a state directory never
see half a file or a CA certificate paired with another process's key.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_COMMON_NAME = "legacy-smtp emulator test CA"
_LEAF_VALIDITY = (datetime.timedelta(days=-1), datetime.timedelta(days=825))
_EXPIRED_VALIDITY = (datetime.timedelta(days=-400), datetime.timedelta(days=-30))
_CA_VALIDITY = (datetime.timedelta(days=-1), datetime.timedelta(days=3650))
_RSA_KEY_SIZES = (512, 1024, 2048, 3072, 4096)
_HASHES = {"sha256": hashes.SHA256, "sha1": hashes.SHA1, "md5": hashes.MD5}


@dataclass(frozen=True)
class CertSpec:
    """
    What a leaf certificate should look like.

    C{key_size} applies to RSA keys (512 and 1024 are allowed for legacy-era
    profiles); C{key_type="ec"} always uses P-256 and is much faster to
    generate.  C{signature_hash} is what the issuer signs with: C{sha256},
    or the era's C{sha1} or C{md5}.
    """

    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    common_name: str | None = None
    expired: bool = False
    self_signed: bool = False
    key_type: Literal["rsa", "ec"] = "rsa"
    key_size: int = 2048
    signature_hash: Literal["sha256", "sha1", "md5"] = "sha256"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dns_names", tuple(self.dns_names))
        object.__setattr__(self, "ip_addresses", tuple(self.ip_addresses))
        for address in self.ip_addresses:
            ipaddress.ip_address(address)
        if self.key_type not in ("rsa", "ec"):
            raise ValueError(f"key_type must be 'rsa' or 'ec', not {self.key_type!r}")
        if self.key_type == "rsa" and self.key_size not in _RSA_KEY_SIZES:
            raise ValueError(f"RSA key_size must be one of {_RSA_KEY_SIZES}")
        if self.signature_hash not in _HASHES:
            raise ValueError(f"signature_hash must be one of {tuple(_HASHES)}")
        if self.subject_cn is None:
            raise ValueError("CertSpec needs a DNS name, an IP address or a common_name")

    @property
    def subject_cn(self) -> str | None:
        """The CN to use: C{common_name}, else the first DNS name, else the first IP."""
        return self.common_name or next(iter(self.dns_names + self.ip_addresses), None)


class CertStore:
    """
    A test CA and cached leaf certificates under C{state_dir}.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    def ca_path(self) -> Path:
        """The CA certificate (PEM), created on first use."""
        cert_path, key_path = self.state_dir / "ca.pem", self.state_dir / "ca.key"
        if not cert_path.exists():
            with self._lock():
                if not cert_path.exists():
                    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                    cert = _build_ca(key)
                    _write_atomic(key_path, _key_pem(key), mode=0o600)
                    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cert_path

    def leaf(self, spec: CertSpec) -> tuple[Path, Path]:
        """The (certificate, key) PEM files for C{spec}, generated on first use."""
        fields = dataclasses.asdict(spec)
        if spec.signature_hash == "sha256":  # the names of leaves made before the field existed
            del fields["signature_hash"]
        if not spec.self_signed:
            # Leaves are tied to the CA that signed them: a new CA gets new leaves.
            fields["ca"] = hashlib.sha256(self.ca_path().read_bytes()).hexdigest()
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
        cert_path = self.state_dir / f"leaf-{digest[:20]}.pem"
        key_path = cert_path.with_suffix(".key")
        if not cert_path.exists():
            with self._lock():
                if not cert_path.exists():
                    key = _generate_key(spec)
                    cert = _build_leaf(spec, key, None if spec.self_signed else self._ca())
                    _write_atomic(key_path, _key_pem(key), mode=0o600)
                    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, key_path

    def has_ca(self) -> bool:
        """Whether this state folder holds a test CA already."""
        return (self.state_dir / "ca.pem").is_file()

    def export_ca(self, dest: Path) -> Path:
        """Copy the CA certificate to C{dest} (a file, or a directory to put
        C{ca.pem} in), creating the CA first if there is none."""
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / "ca.pem"
        _write_atomic(dest, self.ca_path().read_bytes())
        return dest

    def _ca(self) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
        chain, key = load_pem_pair(self.ca_path(), self.state_dir / "ca.key")
        assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
        return chain[0], key

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def load_pem_pair(
    cert: Path, key: Path
) -> tuple[list[x509.Certificate], PrivateKeyTypes]:
    """
    Load and check a user-supplied PEM certificate (chain, leaf first) and its
    unencrypted private key.

    @raise ValueError: naming the file, when a file is unreadable, not PEM, or
        the key does not belong to the certificate.
    """
    try:
        chain = x509.load_pem_x509_certificates(_read(cert))
    except ValueError as e:
        raise ValueError(f"{cert}: not a PEM certificate ({e})") from None
    try:
        private_key = serialization.load_pem_private_key(_read(key), password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{key}: not an unencrypted PEM private key ({e})") from None
    if _spki(private_key.public_key()) != _spki(chain[0].public_key()):
        raise ValueError(f"{key}: private key does not match the certificate in {cert}")
    return chain, private_key


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
        os.fchmod(f.fileno(), mode)  # the umask may have narrowed it; a reused tmp kept its old one
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _generate_key(spec: CertSpec) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if spec.key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if spec.key_size < 1024:
        return _legacy(lambda crypto: _small_rsa_key(crypto, spec.key_size))
    return rsa.generate_private_key(public_exponent=65537, key_size=spec.key_size)


# cryptography neither generates RSA keys under 1024 bits nor signs with MD5
# or SHA-1; pyOpenSSL's OpenSSL still does both, through its older X509/PKey
# API (deprecated, so its warnings are silenced here, where they are meant).
def _legacy(work):
    from OpenSSL import crypto

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return work(crypto)


def _small_rsa_key(crypto, bits: int) -> rsa.RSAPrivateKey:
    key = crypto.PKey()
    key.generate_key(crypto.TYPE_RSA, bits)
    return key.to_cryptography_key()


def _sign(builder: x509.CertificateBuilder, key, hash_name: str) -> x509.Certificate:
    """Sign with C{hash_name}: cryptography for SHA-256, pyOpenSSL re-signing
    the same certificate for the era's MD5 and SHA-1."""
    cert = builder.sign(key, hashes.SHA256())
    if hash_name == "sha256":
        return cert

    def resign(crypto):
        legacy = crypto.X509.from_cryptography(cert)
        legacy.sign(crypto.PKey.from_cryptography_key(key), hash_name)
        return legacy.to_cryptography()

    return _legacy(resign)


def _validity(
    builder: x509.CertificateBuilder, window: tuple[datetime.timedelta, datetime.timedelta]
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now + window[0]).not_valid_after(now + window[1])


_NO_KEY_USAGE = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
                     data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                     encipher_only=False, decipher_only=False)


def _builder(subject: x509.Name, issuer: x509.Name, public_key, *, ca: bool,
             **usage: bool) -> x509.CertificateBuilder:
    """The parts every certificate here shares; C{usage} names the granted key usages."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.KeyUsage(**{**_NO_KEY_USAGE, **usage}), critical=True)
    )


def _build_ca(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        _builder(name, name, key.public_key(), ca=True, digital_signature=True, key_cert_sign=True, crl_sign=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    return _validity(builder, _CA_VALIDITY).sign(key, hashes.SHA256())


def _build_leaf(
    spec: CertSpec,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    ca: tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes] | None,
) -> x509.Certificate:
    assert spec.subject_cn is not None
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.subject_cn)])
    issuer_name, signing_key = (subject, key) if ca is None else (ca[0].subject, ca[1])
    issuer_public_key = key.public_key() if ca is None else ca[0].public_key()
    builder = (
        _builder(subject, issuer_name, key.public_key(), ca=False, digital_signature=True,
                 key_encipherment=isinstance(key, rsa.RSAPrivateKey))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key),  # type: ignore[arg-type]
            critical=False,
        )
    )
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in spec.dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in spec.ip_addresses]
    if names:  # legacy CN-only certificates carry no SAN at all
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    window = _EXPIRED_VALIDITY if spec.expired else _LEAF_VALIDITY
    return _sign(_validity(builder, window), signing_key, spec.signature_hash)
