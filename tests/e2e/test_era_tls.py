"""The era-TLS personas against today's real clients on 127.0.0.1: which
fail, and with which error (the table in docs/tls.md, "Era TLS")."""

import shutil
import smtplib
import ssl
import subprocess
import warnings

import pytest
from cryptography import x509

pytestmark = pytest.mark.e2e
MESSAGE = b"Subject: era\r\n\r\nover TLS 1.0\r\n"
ERA = {"ims55sp4-cert-era": ("mail.example.test", 1024, "md5WithRSAEncryption"),
       "iis4-smtp-128bit-era": ("iis4.example.test", 512, "sha1WithRSAEncryption")}
needs = {tool: pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} is not installed")
         for tool in ("openssl", "curl", "swaks")}


def dial(server, name):
    client = smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10)
    client._host = name  # the name the certificate is checked against
    return client


def era_context(server, *, level=0, verify=True):
    """A client context lowered to what an era server needs: TLS 1.0 and
    OpenSSL security level 0."""
    context = ssl.create_default_context(cafile=str(server.ca_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl.TLSVersion.TLSv1 is deprecated, and meant
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers(f"DEFAULT:@SECLEVEL={level}")
    if not verify:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def run(command, server, *extra):
    result = subprocess.run([*command.format(port=server.port, ca=server.ca_path).split(), *extra],
                            input=b"QUIT\r\n", capture_output=True, timeout=60)
    return result.returncode, (result.stdout + result.stderr).decode("utf-8", "replace")


@pytest.mark.parametrize("name", sorted(ERA))
def test_the_era_certificate_is_what_the_profile_says(serve, name):
    """The generated certificate has the era's key size and signature hash."""
    server = serve(name)
    fqdn, bits, signature = ERA[name]
    with dial(server, fqdn) as client:
        client.starttls(context=era_context(server))
        der = client.sock.getpeercert(binary_form=True)
        assert client.sock.version() == "TLSv1" and client.sock.cipher()[0] == "AES128-SHA"
    cert = x509.load_der_x509_certificate(der)
    assert cert.public_key().key_size == bits and cert.signature_algorithm_oid._name == signature


@pytest.mark.parametrize("name", sorted(ERA))
def test_smtplib_default_context_refuses_tls_1_0(serve, name):
    """smtplib with ssl.create_default_context(): Python's minimum is TLS 1.2,
    the server's maximum TLS 1.0; the server answers protocol_version."""
    server = serve(name)
    with dial(server, ERA[name][0]) as client:
        with pytest.raises(ssl.SSLError, match=r"\[SSL: TLSV1_ALERT_PROTOCOL_VERSION\]"):
            client.starttls(context=ssl.create_default_context(cafile=str(server.ca_path)))
    assert server.messages == []


@pytest.mark.parametrize("name", sorted(ERA))
def test_smtplib_allowing_tls_1_0_shares_no_cipher(serve, name):
    """Lowering only the minimum version is not enough: Python's cipher list
    has no RSA key exchange and no SHA-1 MAC, so the server finds no common
    suite and sends handshake_failure."""
    server = serve(name)
    context = era_context(server)
    context.set_ciphers("@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM")
    with dial(server, ERA[name][0]) as client:
        with pytest.raises(ssl.SSLError, match=r"\[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE\]"):
            client.starttls(context=context)


def test_smtplib_at_security_level_1_refuses_the_md5_signature(serve):
    """TLS 1.0 and RSA key exchange at OpenSSL's own default level 1: the
    1024-bit key would do, the MD5 signature does not."""
    server = serve("ims55sp4-cert-era")
    with dial(server, "mail.example.test") as client:
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed: CA signature digest algorithm too weak"):
            client.starttls(context=era_context(server, level=1))


def test_smtplib_at_security_level_1_refuses_the_512_bit_key(serve):
    """The same client against the IIS 4.0 persona stops at its 512-bit key."""
    server = serve("iis4-smtp-128bit-era")
    with dial(server, "iis4.example.test") as client:
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed: EE certificate key too weak"):
            client.starttls(context=era_context(server, level=1))


def test_smtplib_lowered_to_the_era_delivers(serve):
    """TLS 1.0 and security level 0 on the client: the handshake verifies
    the MD5-signed certificate, and the message is delivered inside TLS 1.0."""
    server = serve("ims55sp4-cert-era")
    with dial(server, "mail.example.test") as client:
        client.starttls(context=era_context(server))
        assert client.sendmail("a@example.org", ["b@example.test"], MESSAGE) == {}
    (captured,) = server.messages
    assert captured.message.tls and captured.message.data == MESSAGE
    session = next(t for t in server.transcripts if t.events("message_accepted"))
    (established,) = session.events("tls_established")
    assert (established.fields["version"], established.fields["cipher"], established.fields["bits"]) == \
        ("TLSv1", "AES128-SHA", 128)


S_CLIENT = "openssl s_client -starttls smtp -connect 127.0.0.1:{port} -CAfile {ca} -verify_return_error"


@needs["openssl"]
@pytest.mark.parametrize("name", sorted(ERA))
def test_openssl_s_client_defaults_stop_at_the_key(serve, name):
    """openssl s_client with the system's defaults negotiates TLS 1.0 (RSA
    key exchange needs no handshake signature) but refuses the certificate:
    its key is under the system's security level."""
    code, output = run(S_CLIENT, serve(name))
    assert code == 1
    assert "verify error:num=66:EE certificate key too weak" in output
    assert "certificate verify failed" in output


@needs["openssl"]
@pytest.mark.parametrize("name", sorted(ERA))
def test_openssl_s_client_lowered_connects(serve, name):
    """-tls1 and @SECLEVEL=0: the handshake completes on AES128-SHA, TLS 1.0."""
    code, output = run(S_CLIENT, serve(name), "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert code == 0
    assert "Protocol  : TLSv1\n" in output and "Cipher    : AES128-SHA" in output
    assert "Verify return code: 0 (ok)" in output


@needs["curl"]
@pytest.mark.parametrize("name", sorted(ERA))
def test_curl_refuses_the_weak_key(serve, name):
    """curl --ssl-reqd with the test CA: exit 60, the key is too weak."""
    server = serve(name)
    host = ERA[name][0]
    code, output = run(f"curl -sS --ssl-reqd --cacert {{ca}} --resolve {host}:{{port}}:127.0.0.1 "
                       f"smtp://{host}:{{port}} --mail-from a@example.org --mail-rcpt b@example.test -T -", server)
    assert code == 60
    assert "curl: (60) SSL certificate problem: EE certificate key too weak" in output
    assert server.messages == []


@needs["swaks"]
@pytest.mark.parametrize("name", sorted(ERA))
def test_swaks_does_not_verify_and_delivers_over_tls_1_0(serve, name):
    """swaks --tls checks no certificate: TLS 1.0 on AES128-SHA.  The 5.5
    persona takes the message; the IIS 4.0 persona's first TLS session is
    not secure (KB Q279214), so MAIL gets 505 and swaks exits 23."""
    server = serve(name)
    code, output = run("swaks --server 127.0.0.1:{port} --tls --helo client.example "
                       "--from a@example.org --to b@example.test", server)
    assert "=== TLS started with cipher TLSv1:AES128-SHA:128" in output
    if name == "iis4-smtp-128bit-era":
        assert code == 23 and "<~* 505 Must issue a STARTTLS command first" in output
        assert server.messages == []
    else:
        assert code == 0 and len(server.messages) == 1
