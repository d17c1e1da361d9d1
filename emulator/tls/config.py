"""
The C{tls:} profile section: what a product did about TLS, as data.

    tls:
      certificate: none          # none | generated | files
      names: ["{hostname}"]      # subject names of a generated certificate (DNS names or IP literals)
      advertise: always          # always | with_certificate | never  (KB Q237327)
      min_version: "TLSv1"

Kept free of Twisted and pyOpenSSL imports so that loading a profile stays
cheap; L{emulator.tls.context.context_for} turns it into a server context.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

from emulator.profiles.loader import SectionError, section

_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_ADVERTISE = ("always", "with_certificate", "never")


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
    @ivar key_type: C{rsa} or C{ec}; C{key_size} for RSA.
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
        gives up on the connection.
    """

    certificate: str = "none"
    cert_file: str | None = None
    key_file: str | None = None
    names: tuple[str, ...] = ("{hostname}",)
    expired: bool = False
    self_signed: bool = False
    key_type: str = "rsa"
    key_size: int = 2048
    min_version: str = "TLSv1.2"
    max_version: str | None = None
    ciphers: str | None = None
    advertise: str = "with_certificate"
    advertise_behind_proxy: str | None = None
    behind_proxy: bool = False
    keywords: tuple[str, ...] = ("STARTTLS",)
    implicit: bool = False
    required: bool = False
    min_bits: int = 0
    client_hello_on_plaintext: str = "process"
    handshake_timeout: float = 30.0

    def advertised(self, have_certificate: bool) -> bool:
        """Whether EHLO lists the TLS keywords on a listener with or without a certificate."""
        rule = self.advertise_behind_proxy if self.behind_proxy and self.advertise_behind_proxy else self.advertise
        return rule == "always" or (rule == "with_certificate" and have_certificate)

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
        """Cross-checks with the rest of the profile."""
        if "STARTTLS" not in verbs:
            if "always" in (self.advertise, self.advertise_behind_proxy):
                raise SectionError("advertise", "advertises TLS but commands: lacks STARTTLS")
            if self.certificate != "none" and not self.implicit:
                raise SectionError("certificate", "a certificate without STARTTLS in commands: or implicit: true")
        if self.required and "tls_required" not in catalogue:
            raise SectionError("required", "needs a tls_required reply in replies:")


_CHOICES = {
    "certificate": ("none", "generated", "files"),
    "key_type": ("rsa", "ec"),
    "min_version": _VERSIONS,
    "max_version": _VERSIONS,
    "advertise": _ADVERTISE,
    "advertise_behind_proxy": _ADVERTISE,
    "client_hello_on_plaintext": ("process", "ignore"),
}


@section("tls")
def parse(value: dict | None) -> TLSConfig:
    """Build the section, checking every key, type and choice."""
    if value is None:
        return TLSConfig()
    fields = {f.name: f for f in dataclasses.fields(TLSConfig)}
    values = {}
    for key, item in value.items():
        if key not in fields:
            raise SectionError(str(key), f"unknown key; known: {', '.join(fields)}")
        default = fields[key].default
        if isinstance(default, tuple):
            if not isinstance(item, list) or not all(isinstance(v, str) for v in item):
                raise SectionError(key, "must be a list of quoted strings")
            item = tuple(item)
        elif isinstance(default, bool):
            if not isinstance(item, bool):
                raise SectionError(key, "must be true or false")
        elif isinstance(default, (int, float)):
            if isinstance(item, bool) or not isinstance(item, (int, float)) or item < 0:
                raise SectionError(key, "must be a number, 0 or more")
        elif not isinstance(item, str):
            raise SectionError(key, "must be a quoted string")
        if key in _CHOICES and item not in _CHOICES[key]:
            raise SectionError(key, f"must be one of {', '.join(_CHOICES[key])}, not {item!r}")
        values[key] = item
    config = TLSConfig(**values)
    if config.certificate == "files" and not (config.cert_file and config.key_file):
        raise SectionError("certificate", "files needs cert_file and key_file")
    if config.max_version and _VERSIONS.index(config.max_version) < _VERSIONS.index(config.min_version):
        raise SectionError("max_version", "is below min_version")
    return config
