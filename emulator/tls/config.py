"""
The C{tls:} profile section: what a product did about TLS, as data.

    tls:
      certificate: none          # none | generated | files
      names: ["{hostname}"]      # subject names of a generated certificate (DNS names or IP literals)
      advertise: always          # always | with_certificate | never  (KB Q237327)
      min_version: "TLSv1"

Read by L{emulator.schema} (every key, type and choice is checked when the
profile loads).  Kept free of Twisted and pyOpenSSL imports so that loading a
profile stays cheap; L{emulator.tls.context.context_for} turns it into a
server context.
"""

from __future__ import annotations

import ipaddress
import typing
from dataclasses import dataclass
from typing import Annotated, Literal

from msgspec import Meta

from emulator.schema import Timeout, invalid

Version = Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
Advertise = Literal["always", "with_certificate", "never"]
SignatureHash = Literal["sha256", "sha1", "md5"]
_VERSIONS = typing.get_args(Version)
#: A count of bits or bytes: 0 or more.
Size = Annotated[int, Meta(ge=0, description="an integer, 0 or more")]


@dataclass(frozen=True)
class TLSConfig:
    """A product's TLS behaviour and its certificate.

    @ivar certificate: C{none} (nothing bound: the KB Q237327 situation),
        C{generated} (made with the test CA from C{names}) or C{files}
        (C{cert_file}/C{key_file}, PEM, relative to the profile's folder).
    @ivar names: subject names of a generated certificate; C{{hostname}} is
        the server's host name.  FQDN only by default, as real certificates
        were (KB Q273948: a client that checks the dialled IP fails).
    @ivar expired: generate an expired certificate.
    @ivar self_signed: generate a self-signed one instead of one from the test CA.
    @ivar key_type: C{rsa} or C{ec}; C{key_size} for RSA (512 and 1024 are
        the NT 4 era's sizes).
    @ivar signature_hash: the hash the test CA signs a generated certificate
        with: C{sha256}, or the era's C{sha1} and C{md5}.
    @ivar min_version: lowest TLS version offered; below TLSv1.2 the OpenSSL
        security level is lowered for this profile only.
    @ivar max_version: highest TLS version offered (None: the stack's highest).
    @ivar ciphers: an OpenSSL cipher string, or None for the default.
    @ivar advertise: when the EHLO reply lists C{keywords}: C{always} (even
        with no certificate: IIS 4.0, MCIS 2.0, Exchange 5.5 SP2, KB Q237327),
        C{with_certificate} (only when this listener has one: the fix) or C{never}.
    @ivar advertise_behind_proxy: the same rule when C{behind_proxy} is set, if
        it differs (Exchange 5.5 SP3 still advertised behind a proxy; KB Q237327).
    @ivar behind_proxy: the server is deployed behind a proxy (KB Q181847).
    @ivar keywords: the EHLO keyword lines that advertise TLS.
    @ivar implicit: the product offered TLS from the first byte (SMTPS, 465);
        Exchange 5.5 IMS did not and listened on 25 only (KB Q218430).
    @ivar required: MAIL before a secure TLS session gets C{tls_required}.
    @ivar min_bits: a session whose cipher has fewer secret bits is not
        secure (IIS 4.0 "Require 128-bit encryption", KB Q279214).
    @ivar client_hello_on_plaintext: what the server does with a TLS
        ClientHello sent to its plaintext port: C{process} it as command
        bytes, or C{ignore} everything until the client gives up (KB Q218430:
        "Exchange Server still will not respond").
    @ivar handshake_timeout: seconds a handshake may take before the server
        gives up on the connection (more than 0: a timeout is never off).
    @ivar hide_on_loopback: never offer TLS to a peer on a loopback address
        (127.0.0.1, ::1): the Exchange 5.x IMS "by design" (KB Q260065).  Off
        by default, since the emulator itself is reached on loopback.
    @ivar ehlo_domains: when given, TLS is offered only to an EHLO whose
        argument is one of these domains or below one: the IMS with SSL set
        up per remote domain (KB Q255753: "you must enter the domain name
        after the first EHLO").
    """

    certificate: Literal["none", "generated", "files"] = "none"
    cert_file: str | None = None
    key_file: str | None = None
    names: tuple[str, ...] = ("{hostname}",)
    expired: bool = False
    self_signed: bool = False
    key_type: Literal["rsa", "ec"] = "rsa"
    key_size: Size = 2048
    signature_hash: SignatureHash = "sha256"
    min_version: Version = "TLSv1.2"
    max_version: Version | None = None
    ciphers: str | None = None
    advertise: Advertise = "with_certificate"
    advertise_behind_proxy: Advertise | None = None
    behind_proxy: bool = False
    keywords: tuple[str, ...] = ("STARTTLS",)
    implicit: bool = False
    required: bool = False
    min_bits: Size = 0
    client_hello_on_plaintext: Literal["process", "ignore"] = "process"
    handshake_timeout: Timeout = 30.0
    hide_on_loopback: bool = False
    ehlo_domains: tuple[str, ...] = ()

    def __post_init__(self):
        if self.certificate == "files" and not (self.cert_file and self.key_file):
            raise invalid("certificate", "files needs cert_file and key_file")
        if self.max_version and _VERSIONS.index(self.max_version) < _VERSIONS.index(self.min_version):
            raise invalid("max_version", "is below min_version")
        if self.signature_hash != "sha256" and self.certificate == "generated" and \
                _VERSIONS.index(self.min_version) >= 2:
            # OpenSSL refuses such a certificate above security level 0, which
            # the emulator sets only for a profile that offers TLS 1.0 or 1.1.
            raise invalid("signature_hash", f"{self.signature_hash} needs min_version TLSv1 or TLSv1.1 "
                                            "(OpenSSL security level 0)")

    def advertised(self, have_certificate: bool) -> bool:
        """Whether EHLO lists the TLS keywords on a listener with or without a certificate."""
        rule = self.advertise_behind_proxy if self.behind_proxy and self.advertise_behind_proxy else self.advertise
        return rule == "always" or (rule == "with_certificate" and have_certificate)

    def offered_to(self, peer_ip: str, helo: str) -> bool:
        """Whether TLS is offered to this peer after this EHLO argument (the
        rules of KB Q260065 and Q255753; C{advertised} decides the rest)."""
        if self.hide_on_loopback and _is_loopback(peer_ip):
            return False
        if self.ehlo_domains:
            name = helo.lower().rstrip(".")
            return any(name == d.lower() or name.endswith("." + d.lower()) for d in self.ehlo_domains)
        return True

    def split_names(self, hostname: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The generated certificate's (DNS names, IP addresses)."""
        dns, ips = [], []
        for name in (n.replace("{hostname}", hostname) for n in self.names):
            try:
                ips.append(str(ipaddress.ip_address(name)))
            except ValueError:
                dns.append(name)
        return tuple(dns), tuple(ips)

    def validate(self, verbs, catalogue) -> None:
        """Cross-checks with the rest of the profile (called by the loader)."""
        if "STARTTLS" not in verbs:
            if "always" in (self.advertise, self.advertise_behind_proxy):
                raise invalid("advertise", "advertises TLS but commands: lacks STARTTLS")
            if self.certificate != "none" and not self.implicit:
                raise invalid("certificate", "a certificate without STARTTLS in commands: or implicit: true")
        if self.required and "tls_required" not in catalogue:
            raise invalid("required", "needs a tls_required reply in replies:")


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)
