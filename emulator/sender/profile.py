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

Every key, type and choice is checked when the file loads, by
L{emulator.schema} as for servers; a problem is a L{ProfileError}
C{file:key: problem}.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Mapping

from msgspec import Meta

from emulator import schema
from emulator.profiles import loader as profiles
from emulator.profiles.loader import ProfileError
from emulator.schema import SECRET, invalid
from emulator.tls.config import Version

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
    password: Annotated[str, SECRET] = field(default="", repr=False)


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
    unadvertised: Literal["quit", "skip", "first"] = "skip"
    on_failure: Literal["quit", "continue"] = "quit"
    credentials: Credentials | None = None

    def __post_init__(self):
        if self.credentials is not None and not self.methods:
            raise invalid("credentials", "credentials without methods: are never used")


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
    starttls: Literal["never", "when_advertised"] = "never"
    keywords: tuple[str, ...] = ("STARTTLS",)
    on_refused: Literal["continue", "quit"] = "continue"
    ehlo_after: bool = True
    check_chain: bool = True
    check_name: Literal["fqdn", "dialled", "none"] = "fqdn"
    sni: bool = False
    min_version: Version = "TLSv1.2"
    max_version: Literal[(None, *typing.get_args(Version))] = None


@dataclass(frozen=True)
class ClientProfile:
    """A loaded, validated client profile (a sender persona): the keys of
    its file (read by L{emulator.schema}) and the C{path} it came from.

    @ivar banner_timeout: seconds the persona waits for the greeting before
        it drops the connection (the 5.x IMS: 5 minutes, KB Q175982); C{never}
        for the leak of that KB (it never gave up; the host stops it at its
        own timeout); None: the host's timeout, as for every other wait.
    @ivar unfolded_to_line: 0, or the length of one unfolded C{To:} header
        line that the persona's default message carries, as a 5.5 IMS wrote
        for a message forwarded by a rule to many recipients (KB Q288240;
        over 1,000 characters breaks RFC 5322's line limit).
    """

    name: str
    path: Path
    product: str
    version: str
    describes: str
    sources: tuple[str, ...]
    helo_name: str
    notes: str = ""
    port: int = 25
    hello: Literal["EHLO", "HELO"] = "EHLO"
    ehlo_fallback: Literal["helo", "quit"] = "helo"
    mail_parameters: tuple[Parameter, ...] = ()
    rcpt_parameters: tuple[Parameter, ...] = ()
    tls: ClientTLS = ClientTLS()
    auth: ClientAuth = ClientAuth()
    reports: Mapping[str, str] = field(default_factory=dict)
    banner_timeout: Annotated[float, Meta(gt=0)] | Literal["never"] | None = None
    unfolded_to_line: Annotated[int, Meta(ge=0)] = 0

    def __post_init__(self):
        if not self.sources:
            raise invalid("sources", "must name at least one source (a KB article)")
        for kind in self.reports:
            if kind not in FAILURES:
                raise invalid(f"reports.{kind}", f"unknown failure kind; {schema.did_you_mean(kind, FAILURES)}"
                                                 f"known: {', '.join(FAILURES)}")
        if not 1 <= self.port <= 65535:
            raise invalid("port", "must be a TCP port, 1 to 65535")

    def report(self, failure: str) -> str:
        """The product's own words for a failure kind, or C{""}."""
        return self.reports.get(failure, "")


# Keys of the file that are not the persona's: read by the file machinery.
_FILE_KEYS = ("role", "extends", "abstract")


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
        try:
            schema.check(document, ClientProfile, given=("path",), ignore=_FILE_KEYS)
        except schema.SchemaError as e:
            raise ProfileError(path, e.key, e.problem) from None
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
    try:
        return schema.read(document, ClientProfile, given={"path": path}, ignore=_FILE_KEYS)
    except schema.SchemaError as e:
        raise ProfileError(path, e.key, e.problem) from None
