"""Tests for emulator.tls.certs: the test CA, cached leaf certificates, PEM loading."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import ipaddress
import json
import re
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from service_identity import VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)

from emulator.tls.certs import CA_COMMON_NAME, CertSpec, CertStore, load_pem_pair

pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning")

FQDN = "mail.example.test"
IP = "192.0.2.25"


@pytest.fixture
def store(tmp_path: Path) -> CertStore:
    return CertStore(tmp_path / "state")


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _stdlib_handshake(cert: Path, key: Path, client: ssl.SSLContext, hostname: str) -> None:
    """Handshake a stdlib server and client over memory BIOs; raise what the client raises."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    server_side = server_context.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(6):
        finished = 0
        for side in (client_side, server_side):
            try:
                side.do_handshake()
                finished += 1
            except ssl.SSLWantReadError:
                pass
            s_in.write(c_out.read())
            c_in.write(s_out.read())
        if finished == 2:
            return
    raise AssertionError("handshake did not finish")


def test_ca_is_created_once_and_reused(store: CertStore) -> None:
    """A second CertStore on the same state dir reuses the CA byte for byte."""
    ca = store.ca_path()
    first = (ca.read_bytes(), (ca.parent / "ca.key").read_bytes())
    again = CertStore(store.state_dir).ca_path()
    assert again == ca
    assert (again.read_bytes(), (ca.parent / "ca.key").read_bytes()) == first


def test_ca_is_a_proper_ca(store: CertStore) -> None:
    """The CA is RSA 2048 with the project CN, CA basic constraints and cert-signing key usage."""
    ca = _cert(store.ca_path())
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CA_COMMON_NAME
    public_key = ca.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 2048
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign


def test_leaf_cache_hit_returns_same_files(store: CertStore) -> None:
    """Asking twice for one spec (even from a new store) returns the same, untouched files."""
    spec = CertSpec(dns_names=(FQDN,), key_type="ec")
    cert, key = store.leaf(spec)
    content = (cert.read_bytes(), key.read_bytes())
    assert CertStore(store.state_dir).leaf(CertSpec(dns_names=(FQDN,), key_type="ec")) == (cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == content
    assert cert.name.startswith("leaf-") and cert.suffix == ".pem" and key.suffix == ".key"


def test_different_spec_gives_different_files(store: CertStore) -> None:
    """Specs differing in any field are cached under different names."""
    base = store.leaf(CertSpec(dns_names=(FQDN,), key_type="ec"))
    others = [
        store.leaf(CertSpec(dns_names=("other.example.test",), key_type="ec")),
        store.leaf(CertSpec(dns_names=(FQDN,), key_type="ec", expired=True)),
        store.leaf(CertSpec(dns_names=(FQDN,), key_type="ec", self_signed=True)),
    ]
    assert len({base, *others}) == 4


def test_key_files_are_mode_0600(store: CertStore) -> None:
    """The CA key and leaf keys are readable by their owner only; certificates are not secret."""
    cert, key = store.leaf(CertSpec(dns_names=(FQDN,), key_type="ec"))
    for path in (key, store.state_dir / "ca.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert.stat().st_mode) == 0o644


def test_concurrent_stores_share_one_ca(tmp_path: Path) -> None:
    """Stores racing on one state dir end up with one CA whose key matches its certificate."""
    results: list[bytes] = []

    def make() -> None:
        results.append(CertStore(tmp_path).ca_path().read_bytes())

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 4 and len(set(results)) == 1
    load_pem_pair(tmp_path / "ca.pem", tmp_path / "ca.key")
    assert not list(tmp_path.glob("*.tmp"))


def test_leaf_contents(store: CertStore) -> None:
    """A CA-signed leaf has the CN, DNS and iPAddress SANs, serverAuth EKU and the normal validity."""
    cert = _cert(store.leaf(CertSpec(dns_names=(FQDN, "mail"), ip_addresses=(IP,), key_type="ec"))[0])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == FQDN
    assert cert.issuer == _cert(store.ca_path()).subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [FQDN, "mail"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(IP)]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs(cert.not_valid_before_utc - (now - datetime.timedelta(days=1))) < datetime.timedelta(minutes=5)
    assert abs(cert.not_valid_after_utc - (now + datetime.timedelta(days=825))) < datetime.timedelta(minutes=5)


def test_common_name_defaults_and_override(store: CertStore) -> None:
    """The CN is the explicit common_name, else the first DNS name, else the first IP; CN-only certs have no SAN."""

    def cn(spec: CertSpec) -> x509.Certificate:
        return _cert(store.leaf(spec)[0])

    def value(cert: x509.Certificate) -> object:
        return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value

    assert value(cn(CertSpec(ip_addresses=(IP,), key_type="ec"))) == IP
    assert value(cn(CertSpec(dns_names=(FQDN,), common_name="EXCHANGE55", key_type="ec"))) == "EXCHANGE55"
    legacy = cn(CertSpec(common_name=FQDN, key_type="ec"))
    assert value(legacy) == FQDN
    with pytest.raises(x509.ExtensionNotFound):
        legacy.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_key_types(store: CertStore) -> None:
    """RSA keys honour key_size (1024 allowed for legacy-era profiles); "ec" gives P-256."""
    _, key = load_pem_pair(*store.leaf(CertSpec(dns_names=(FQDN,), key_size=1024)))
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 1024
    _, key = load_pem_pair(*store.leaf(CertSpec(dns_names=(FQDN,), key_type="ec")))
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"


def test_spec_validation() -> None:
    """Specs without any name, with a bad IP, a bad key type or size are rejected early."""
    for kwargs in (
        {},
        {"ip_addresses": ("mail.example.test",)},
        {"dns_names": (FQDN,), "key_type": "dsa"},
        {"dns_names": (FQDN,), "key_size": 768},  # 512 is the era's (issue 20); 768 was never offered
        {"dns_names": (FQDN,), "signature_hash": "md2"},
    ):
        with pytest.raises(ValueError):
            CertSpec(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bits, hash_name, oid_name", [(512, "sha1", "sha1WithRSAEncryption"),
                                                       (1024, "md5", "md5WithRSAEncryption"),
                                                       (2048, "sha256", "sha256WithRSAEncryption")])
def test_era_certificates_have_their_size_and_signature(store: CertStore, bits, hash_name, oid_name) -> None:
    """The era's 512/1024-bit keys and MD5/SHA-1 signatures (which cryptography
    no longer makes) come out as asked, still signed by the test CA, with the
    same names and extensions as a modern leaf."""
    cert_path, key_path = store.leaf(CertSpec(dns_names=(FQDN,), key_size=bits, signature_hash=hash_name))
    (cert,), key = load_pem_pair(cert_path, key_path)
    assert key.key_size == bits and cert.public_key().key_size == bits
    assert cert.signature_algorithm_oid._name == oid_name
    ca = _cert(store.ca_path())
    assert cert.issuer == ca.subject
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                           cert.signature_hash_algorithm)
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == [FQDN]


def test_a_sha256_leaf_keeps_its_cached_name(store: CertStore) -> None:
    """Adding signature_hash did not rename the leaves already cached: the
    default spec hashes as it did before the field existed."""
    spec = CertSpec(dns_names=(FQDN,), key_type="ec")
    fields = dataclasses.asdict(spec)
    del fields["signature_hash"]
    fields["ca"] = hashlib.sha256(store.ca_path().read_bytes()).hexdigest()
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    assert store.leaf(spec)[0].name == f"leaf-{digest[:20]}.pem"


def test_fqdn_only_cert_fails_for_dialled_ip(store: CertStore) -> None:
    """KB Q273948: an FQDN-only certificate matches the FQDN but not the IP a client dialled."""
    cert = _cert(store.leaf(CertSpec(dns_names=(FQDN,), key_type="ec"))[0])
    verify_certificate_hostname(cert, FQDN)
    with pytest.raises(VerificationError):
        verify_certificate_ip_address(cert, IP)


def test_ip_only_cert_fails_for_hostname(store: CertStore) -> None:
    """An IP-only certificate matches the IP (iPAddress SAN) but not the FQDN."""
    cert = _cert(store.leaf(CertSpec(ip_addresses=(IP,), key_type="ec"))[0])
    verify_certificate_ip_address(cert, IP)
    with pytest.raises(VerificationError):
        verify_certificate_hostname(cert, FQDN)


def test_fqdn_and_ip_cert_passes_both(store: CertStore) -> None:
    """A certificate with both SANs satisfies clients checking either the name or the IP."""
    cert = _cert(store.leaf(CertSpec(dns_names=(FQDN,), ip_addresses=(IP,), key_type="ec"))[0])
    verify_certificate_hostname(cert, FQDN)
    verify_certificate_ip_address(cert, IP)


def test_stdlib_client_trusts_leaf_via_exported_ca(store: CertStore, tmp_path: Path) -> None:
    """Control case: a stdlib ssl client loading the exported CA accepts a normal leaf."""
    exported = store.export_ca(tmp_path)
    assert exported == tmp_path / "ca.pem" and exported.read_bytes() == store.ca_path().read_bytes()
    client = ssl.create_default_context(cafile=exported)
    _stdlib_handshake(*store.leaf(CertSpec(dns_names=(FQDN,), key_type="ec")), client, FQDN)


def test_expired_cert_rejected_by_stdlib_client(store: CertStore) -> None:
    """An expired leaf (valid from now-400d to now-30d) fails verification as expired."""
    cert, key = store.leaf(CertSpec(dns_names=(FQDN,), key_type="ec", expired=True))
    now = datetime.datetime.now(datetime.timezone.utc)
    parsed = _cert(cert)
    assert abs(parsed.not_valid_before_utc - (now - datetime.timedelta(days=400))) < datetime.timedelta(minutes=5)
    assert abs(parsed.not_valid_after_utc - (now - datetime.timedelta(days=30))) < datetime.timedelta(minutes=5)
    client = ssl.create_default_context(cafile=store.ca_path())
    with pytest.raises(ssl.SSLCertVerificationError) as error:
        _stdlib_handshake(cert, key, client, FQDN)
    assert error.value.verify_code == 10  # X509_V_ERR_CERT_HAS_EXPIRED
    assert "certificate has expired" in error.value.verify_message


def test_self_signed_cert_not_trusted_via_ca(store: CertStore) -> None:
    """A self-signed leaf is its own issuer and is not trusted by a client holding the test CA."""
    cert, key = store.leaf(CertSpec(dns_names=(FQDN,), key_type="ec", self_signed=True))
    assert _cert(cert).issuer == _cert(cert).subject
    client = ssl.create_default_context(cafile=store.ca_path())
    with pytest.raises(ssl.SSLCertVerificationError) as error:
        _stdlib_handshake(cert, key, client, FQDN)
    assert error.value.verify_code == 18  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT


def test_load_pem_pair_accepts_matching_pair(store: CertStore) -> None:
    """A generated pair loads as (chain, key) with the leaf first."""
    cert, key = store.leaf(CertSpec(dns_names=(FQDN,), key_type="ec"))
    chain, private_key = load_pem_pair(cert, key)
    assert chain == [_cert(cert)]
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)


def test_load_pem_pair_errors_name_the_file(store: CertStore, tmp_path: Path) -> None:
    """Unreadable, non-PEM and mismatched files raise ValueError naming the offending file."""
    cert, key = store.leaf(CertSpec(dns_names=(FQDN,), key_type="ec"))
    _, other_key = store.leaf(CertSpec(dns_names=("other.example.test",), key_type="ec"))
    missing = tmp_path / "missing.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    cases = [
        (missing, key, str(missing)),
        (cert, missing, str(missing)),
        (garbage, key, str(garbage)),
        (cert, garbage, str(garbage)),
        (key, key, str(key)),  # a key where the certificate should be
        (cert, other_key, str(other_key)),
    ]
    for cert_path, key_path, named in cases:
        with pytest.raises(ValueError, match=f"^{re.escape(named)}: ") as error:
            load_pem_pair(cert_path, key_path)
        assert type(error.value) is ValueError
    with pytest.raises(ValueError, match="does not match"):
        load_pem_pair(cert, other_key)
