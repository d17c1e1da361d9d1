"""
Client profiles: one YAML file per legacy *sender* (an MTA or mail client),
marked C{role: client}, loaded strictly.

They live in C{profiles/} beside the server profiles and share their file
machinery (search path, C{extends:}, duplicate-key and YAML checks, see
L{emulator.profiles.loader}); the server loader refuses them and C{emulator profiles}
does not list them (C{emulator personas} does).  What a sender did differently
is data here, read by the sans-IO client in L{emulator.sender.client}::

    role: client
    name: ims55sp2-sender
    product: "Microsoft Exchange Server 5.5 Internet Mail Service"
    version: "5.5.2448.0"
    describes: "one line for `emulator personas`"
    sources: ["KB Q195201 (...)"]
    helo_name: "ims55.example.org"
    port: 25                       # when the endpoint names none
    hello: EHLO                    # EHLO or HELO first
    ehlo_fallback: helo            # after a 5xx to EHLO: helo or quit
    mail_parameters: [{keyword: SIZE, text: "SIZE={size}"}]
    tls: {starttls: when_advertised, check_name: fqdn}
    auth:
      methods: [{keyword: AUTH, command: "AUTH NTLM"}]
      unadvertised: first
    reports: {no_auth: "the product's own error text"}

Every key, type and choice is checked when the file loads; a problem is a
L{ProfileError} C{file:key: problem}, as for servers.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from emulator.profiles import loader as profiles
from emulator.profiles.loader import ProfileError

#: Failure kinds a client run ends with (L{emulator.sender.client.Outcome.failure});
#: a profile's C{reports:} gives the product's own words for some of them.
FAILURES = {
    "refused": "the connection was refused (nothing listens there)",
    "unreachable": "no connection could be made otherwise (name lookup, no route)",
    "tls_failed": "the TLS handshake or the certificate check failed",
    "starttls_refused": "STARTTLS was answered with an error",
    "no_auth": "the server offers none of the persona's authentication methods",
    "auth_failed": "authentication was refused",
    "rejected": "the server refused the greeting, EHLO/HELO, MAIL, every RCPT, DATA or the message",
    "closed": "the server closed the connection first",
    "timeout": "the server did not answer in time",
}
_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


def _choice(default, *choices, doc: str = ""):
    return field(default=default, metadata={"choices": choices, "doc": doc})


@dataclass(frozen=True)
class Parameter:
    """A MAIL or RCPT parameter, sent when the EHLO reply lists C{keyword}.

    @ivar text: the parameter; C{{size}} is the message size in bytes."""

    keyword: str
    text: str


@dataclass(frozen=True)
class AuthMethod:
    """One way to authenticate with NTLM: the EHLO keyword that announces it
    (C{AUTH} also matches C{AUTH=...}), the command line that starts it, and
    whether the NEGOTIATE message travels on that line (SASL initial response,
    the form of KB Q262945's log) or after a C{334}."""

    keyword: str
    command: str
    initial_response: bool = True


@dataclass(frozen=True)
class Credentials:
    """An NT account: C{user}, C{domain} (may be empty), C{password} (kept out of C{repr})."""

    user: str
    domain: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class ClientAuth:
    """What the sender does about authentication; nothing without credentials.

    @ivar methods: tried in order; the first whose keyword the server lists is used.
    @ivar unadvertised: when the server lists none of them: C{quit} (give up,
        KB Q195201's 5.0 sender), C{skip} (send unauthenticated) or C{first}
        (use the first method anyway).
    @ivar on_failure: after a refused authentication: C{quit} or C{continue}.
    @ivar credentials: the default account (the emulator's test account);
        C{send --user/--password/--domain} replace it.
    """

    methods: tuple[AuthMethod, ...] = ()
    unadvertised: str = _choice("skip", "quit", "skip", "first")
    on_failure: str = _choice("quit", "quit", "continue")
    credentials: Credentials | None = None


@dataclass(frozen=True)
class ClientTLS:
    """What the sender does about TLS.

    @ivar implicit: TLS from the first byte (SMTPS), before any greeting.
    @ivar starttls: C{never}, or C{when_advertised} (the EHLO reply lists one of C{keywords}).
    @ivar keywords: EHLO keywords that announce STARTTLS (5.5 SP1 docs show C{TLS}).
    @ivar on_refused: after an error reply to STARTTLS: C{continue} in plaintext or C{quit}.
    @ivar ehlo_after: send EHLO again after the handshake (RFC 3207 section 4.2).
    @ivar check_chain: the server certificate must chain to a trusted CA
        (C{--cafile}, else the system's store).
    @ivar check_name: which name the certificate must carry, checked with
        service_identity: C{fqdn} (the server's host name: C{--server-name},
        else the endpoint's host), C{dialled} (the IP address the connection
        went to: KB Q273948's bug) or C{none}.
    @ivar sni: send the host name in the ClientHello (none of the legacy
        products did: SNI is RFC 3546, 2003).
    @ivar min_version: lowest TLS version offered; C{max_version} the highest.
    """

    implicit: bool = False
    starttls: str = _choice("never", "never", "when_advertised")
    keywords: tuple[str, ...] = ("STARTTLS",)
    on_refused: str = _choice("continue", "continue", "quit")
    ehlo_after: bool = True
    check_chain: bool = True
    check_name: str = _choice("fqdn", "fqdn", "dialled", "none")
    sni: bool = False
    min_version: str = _choice("TLSv1.2", *_VERSIONS)
    max_version: str | None = _choice(None, None, *_VERSIONS)


@dataclass(frozen=True)
class ClientProfile:
    """A loaded, validated client profile (a sender persona)."""

    name: str
    path: Path
    product: str
    version: str
    describes: str
    sources: tuple[str, ...]
    helo_name: str
    notes: str = ""
    port: int = 25
    hello: str = _choice("EHLO", "EHLO", "HELO")
    ehlo_fallback: str = _choice("helo", "helo", "quit")
    mail_parameters: tuple[Parameter, ...] = ()
    rcpt_parameters: tuple[Parameter, ...] = ()
    tls: ClientTLS = ClientTLS()
    auth: ClientAuth = ClientAuth()
    reports: Mapping[str, str] = field(default_factory=dict)

    def report(self, failure: str) -> str:
        """The product's own words for a failure kind, or C{""}."""
        return self.reports.get(failure, "")


_REQUIRED = ("product", "version", "describes", "sources", "helo_name")
_FILE_KEYS = ("role", "name", "extends", "abstract")


def names(include_abstract: bool = False) -> list[str]:
    """Names of the client profiles on the search path."""
    return profiles.names(include_abstract, role="client")


def resolve(name_or_path: str | Path) -> Path:
    """The file of a client profile given by name or path."""
    try:
        return profiles.resolve(name_or_path)
    except ProfileError as e:
        if e.key != "(name)":
            raise
        raise ProfileError(e.path, e.key, f"no persona of that name; known: {', '.join(names())}") from None


def load(name_or_path: str | Path | ClientProfile) -> ClientProfile:
    """Load, resolve and validate a client profile, or raise L{ProfileError}."""
    if isinstance(name_or_path, ClientProfile):
        return name_or_path
    path, document = _document(name_or_path)
    if document.get("abstract"):
        raise ProfileError(path, "abstract", "an abstract profile only serves as a base for extends:")
    return _build(path, document)


def check(path: str | Path) -> ClientProfile | None:
    """Validate a client profile file (C{emulator check}); None for an abstract one."""
    path, document = _document(path)
    if document.get("abstract"):
        _fields(ClientProfile, {k: v for k, v in document.items() if k not in _FILE_KEYS}, path, "")
        return None
    return _build(path, document)


def resolved_document(name_or_path: str | Path) -> dict:
    """The client profile's mapping after C{extends:} is resolved (for C{emulator show})."""
    path, document = _document(name_or_path)
    _build(path, document)
    return document


def _document(name_or_path: str | Path) -> tuple[Path, dict]:
    path = resolve(name_or_path)
    return path, profiles._resolve(path, (), read=_read)


def is_client(path: str | Path) -> bool:
    """Whether the file is marked C{role: client}."""
    return profiles.read_document(Path(path)).get("role") == "client"


def _read(path: Path) -> dict:
    document = profiles.read_document(path)
    if document.get("role") != "client":
        raise ProfileError(path, "role", "must be client in a client profile (a server profile cannot be a base)")
    if document.get("name") != path.stem:
        raise ProfileError(path, "name", f"must be present and equal the file name {path.stem!r}")
    return document


def _build(path: Path, document: dict) -> ClientProfile:
    for key in _REQUIRED:
        if key not in document:
            raise ProfileError(path, key, "is required")
    values = _fields(ClientProfile, {k: v for k, v in document.items() if k not in _FILE_KEYS}, path, "")
    if not values["sources"]:
        raise ProfileError(path, "sources", "must name at least one source (a KB article)")
    for kind in values.get("reports", {}):
        if kind not in FAILURES:
            raise ProfileError(path, f"reports.{kind}", f"unknown failure kind; known: {', '.join(FAILURES)}")
    if not 1 <= values.get("port", 25) <= 65535:
        raise ProfileError(path, "port", "must be a TCP port, 1 to 65535")
    auth = values.get("auth", ClientAuth())
    if auth.credentials is not None and not auth.methods:
        raise ProfileError(path, "auth.credentials", "credentials without methods: are never used")
    return ClientProfile(name=document["name"], path=path, **values)


# -- a strict reader driven by the dataclasses' type hints ------------------

def _fields(cls, document: dict, path: Path, prefix: str) -> dict:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("name", "path")}
    values = {}
    for key, value in document.items():
        where = f"{prefix}{key}"
        if key not in known:
            raise ProfileError(path, where, f"unknown key; known keys: {', '.join([*_FILE_KEYS, *known])}")
        values[key] = _value(hints[key], value, path, where)
        choices = known[key].metadata.get("choices")
        if choices and values[key] not in choices:
            shown = ", ".join("null" if c is None else c for c in choices)
            raise ProfileError(path, where, f"must be one of {shown}, not {value!r}")
    missing = [n for n, f in known.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing and prefix:  # top-level requirements are checked with their own message
        raise ProfileError(path, f"{prefix}{missing[0]}", "is required")
    return values


def _value(hint, value, path: Path, where: str):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [h for h in typing.get_args(hint) if h is not type(None)]
        return None if value is None else _value(options[0], value, path, where)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ProfileError(path, where, "must be a mapping")
        return hint(**_fields(hint, value, path, f"{where}."))
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise ProfileError(path, where, "must be a list")
        return tuple(_value(item, v, path, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (collections.abc.Mapping, dict):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ProfileError(path, where, "must be a mapping of names to quoted strings")
        return dict(value)
    if hint is bool and not isinstance(value, bool):
        raise ProfileError(path, where, "must be true or false")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ProfileError(path, where, "must be an integer, 0 or more")
    if hint is str and not isinstance(value, str):
        raise ProfileError(path, where, f"must be a quoted string, not {value!r}")
    return value
