"""
Authentication personas: C{AUTH} (RFC 4954) with LOGIN, PLAIN and NTLM (and
GSSAPI listed but always refused), Exchange 5.0's C{XAUTH} and Exchange
2000/2003's C{X-EXPS}, against accounts that are profile data.

A profile's C{auth:} section (L{AuthSettings}, read by L{emulator.schema})
says which mechanisms each verb takes, the accounts, whether MAIL needs a
login, and how the NTLM server challenge is chosen::

    auth:
      mechanisms: [LOGIN, NTLM]       # what AUTH (and X-EXPS) take (504 for others)
      xauth_mechanisms: [NTLM]        # what XAUTH takes
      accounts:
        - {user: tester, domain: EXAMPLE, password: secret}
      required: false                 # true: MAIL before a login gets auth_required
      challenge_seed: "ims55"         # deterministic NTLM challenges (default: random)

The verbs C{AUTH}, C{XAUTH} and C{X-EXPS} are L{VERB_TABLE}, which
L{emulator.profiles.sections} adds to the core's verb table.  XAUTH's syntax
is unsourced (Exchange 5.0; KB Q195201 names only the keyword): it is
modelled exactly like AUTH, C{XAUTH NTLM [initial-response]} followed by the
same 334 base64 exchange [P].  X-EXPS is Exchange 2000/2003's
server-to-server form of AUTH: "similar to AUTH", its data "depends on the
AUTH package that you select, such as LOGIN, NTLM, GSSAPI" (KB 812455), so
it is the same exchange with AUTH's mechanisms [P: its bytes are unsourced].

GSSAPI (Kerberos) is listed by the IIS 5.0/6.0 SMTP service; with no
Kerberos here it is an exchange that always fails: a 334 for the client's
token, then C{auth_failed} whatever the token (docs/sources.md §6.5) [P].

Each finished attempt is one transcript event C{auth} with the verb, the
mechanism, the user name as the client gave it and the outcome (and, for a
failure, a short reason; for NTLM, the domain and NTLM version).  No event,
reply or error ever holds a password; the raw client bytes in the
transcript do, base64-encoded, because they are what was on the wire.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
from dataclasses import dataclass
from typing import Annotated, Iterable

from msgspec import Meta

from emulator.auth.accounts import Account
from emulator.schema import SECRET, invalid

VERBS = ("AUTH", "XAUTH", "X-EXPS")
# Which mechanism list of the auth: section each verb takes.
_OFFERED = {"AUTH": "mechanisms", "XAUTH": "xauth_mechanisms", "X-EXPS": "mechanisms"}
# Replies the verbs may send whatever the mechanism.
REPLIES = ("syntax_auth", "auth_unknown_mechanism", "auth_failed", "auth_cancelled", "auth_bad_base64",
           "auth_already", "bad_sequence", "need_helo")
# Replies each mechanism adds (required by L{AuthSettings.validate} when offered).
MECHANISM_REPLIES = {
    "LOGIN": ("auth_username", "auth_password", "auth_ok_login"),
    "PLAIN": ("auth_challenge", "auth_ok_plain"),
    "NTLM": ("auth_ntlm_prompt", "auth_challenge", "auth_ok_ntlm"),
    "GSSAPI": ("auth_challenge",),
}
NTLM_VERSIONS = ("NTLMv1", "NTLMv2")
# RFC 4954 section 4: "12288 octets is considered to be a sufficient line
# length limit" for the responses of deployed mechanisms.
RESPONSE_LINE_LIMIT = 12288
_Mechanisms = Annotated[tuple[str, ...], Meta(description=f"a list of names from {', '.join(MECHANISM_REPLIES)}")]
_Versions = Annotated[tuple[str, ...], Meta(description=f"a list of names from {', '.join(NTLM_VERSIONS)}")]
_LineLimit = Annotated[int, Meta(ge=3, description="an integer of 3 or more (bytes, CRLF included)")]


@dataclass(frozen=True)
class AuthSettings:
    """A profile's C{auth:} section.  Passwords stay out of C{repr}
    (L{Account} hides them).

    @ivar mechanisms: what C{AUTH} (and C{X-EXPS}) takes, upper case.
    @ivar xauth_mechanisms: what C{XAUTH} takes.
    @ivar accounts: who may log in (L{emulator.auth.accounts.Account}).
    @ivar required: MAIL is refused with C{auth_required} until a login succeeds.
    @ivar challenge_seed: NTLM challenges come from
        C{challenge_from_seed(seed, n)}, n counting the connection's AUTH and
        XAUTH commands from 0; without a seed, from the server's C{random_bytes}.
    @ivar ntlm_versions: the NTLM responses accepted (C{NTLMv1}, C{NTLMv2}).
    @ivar ntlm_domain: the NT domain the server names in its CHALLENGE.
    @ivar line_limit: the longest response line in bytes, CRLF included.
    """

    mechanisms: _Mechanisms = ()
    xauth_mechanisms: _Mechanisms = ()
    # Problems name the key and never repeat a value: it may be a password.
    accounts: Annotated[tuple[Account, ...], SECRET] = ()
    required: bool = False
    challenge_seed: str | None = None
    ntlm_versions: _Versions = NTLM_VERSIONS
    ntlm_domain: str = "EXAMPLE"
    line_limit: _LineLimit = RESPONSE_LINE_LIMIT

    def __post_init__(self):
        for key in ("mechanisms", "xauth_mechanisms"):
            object.__setattr__(self, key, _names(key, getattr(self, key), MECHANISM_REPLIES, upper=True))
        _names("ntlm_versions", self.ntlm_versions, NTLM_VERSIONS)
        if not self.ntlm_versions:
            raise invalid("ntlm_versions", "must list at least one NTLM version")
        for i, account in enumerate(self.accounts):
            if not account.user or "\\" in account.user:
                raise invalid(f"accounts[{i}].user", "must be a user name without a domain (put that in domain:)")

    def offered(self, verb: str) -> tuple[str, ...]:
        """The mechanisms C{verb} (C{AUTH}, C{XAUTH} or C{X-EXPS}) takes."""
        return getattr(self, _OFFERED[verb])

    def validate(self, verbs, catalogue) -> None:
        """Cross-checks with the rest of the profile (called by the loader):
        each verb that is enabled offers a mechanism, each offered
        mechanism's replies exist, and C{required} has a way to log in and a
        refusal text."""
        for key in ("mechanisms", "xauth_mechanisms"):
            offered = getattr(self, key)
            users = [verb for verb in VERBS if _OFFERED[verb] == key]
            for verb in users:
                if verb in verbs and not offered:
                    raise invalid(key, f"commands: enables {verb} but no mechanism is listed")
            if offered and not set(users) & set(verbs):  # named by its first verb: AUTH, XAUTH
                raise invalid(key, f"lists mechanisms for {users[0]}, which commands: lacks")
            for i, name in enumerate(offered):
                missing = [r for r in MECHANISM_REPLIES[name] if r not in catalogue]
                if missing:
                    raise invalid(f"{key}[{i}]", f"{name} needs replies: {', '.join(missing)}")
        if self.required:
            if not set(VERBS) & set(verbs):
                raise invalid("required", "needs AUTH or XAUTH in commands:")
            if "auth_required" not in catalogue:
                raise invalid("required", "needs replies: auth_required (the refusal of MAIL before a login)")

    def adapt_verbs(self, verbs: dict) -> dict:
        """With C{required}, MAIL before a successful login is refused.

        The gate wraps the profile's MAIL handler in its verb table (built
        by L{emulator.profiles.loader}, C{Profile.handlers}) rather than living in
        L{emulator.core.commands.mail}: the core stays unaware of authentication,
        profiles without the setting run MAIL untouched, and the refusal is
        the catalogue's C{auth_required} text, so no product is named in code.
        The gate comes first, so it also answers a MAIL before HELO.
        """
        if not self.required or "MAIL" not in verbs:
            return verbs
        return {**verbs, "MAIL": _gated(verbs["MAIL"])}


def _gated(mail):
    def gated_mail(conn, arg: bytes) -> None:
        if conn.session.auth_user is None:
            conn.reply("auth_required")
            return
        mail(conn, arg)

    gated_mail.__doc__ = f"MAIL, refused before a login (auth: required: true).\n\n{mail.__doc__}"
    return gated_mail


def _names(key: str, names: tuple[str, ...], known, upper: bool = False) -> tuple[str, ...]:
    """C{names} checked against C{known} (upper-cased first with C{upper}), each once."""
    seen = []
    for i, name in enumerate(names):
        name = name.upper() if upper else name
        if name not in known:
            raise invalid(f"{key}[{i}]", f"unknown name {names[i]!r}; known: {', '.join(known)}")
        if name in seen:
            raise invalid(f"{key}[{i}]", f"{name} is listed twice")
        seen.append(name)
    return tuple(seen)


# -- accounts from outside the profile ------------------------------------

def parse_account(text: str) -> Account:
    """C{user:password} or C{DOMAIN\\user:password} (the password may hold
    colons; no domain matches any).  The error never repeats C{text}.

    @raise ValueError: not of that form.
    """
    name, colon, password = text.partition(":")
    domain, _, user = name.rpartition("\\")
    if not colon or not user:
        raise ValueError("expected USER:PASSWORD or DOMAIN\\USER:PASSWORD")
    return Account(user, domain, password)


def with_accounts(loaded, accounts: Iterable[Account | str]):
    """C{loaded} (a L{emulator.profiles.loader.Profile}) with C{accounts} added to
    its own, each an L{Account} or a string for L{parse_account}."""
    extra = tuple(a if isinstance(a, Account) else parse_account(a) for a in accounts)
    if not extra:
        return loaded
    return dataclasses.replace(loaded, auth=dataclasses.replace(loaded.auth, accounts=loaded.auth.accounts + extra))


# -- the verbs --------------------------------------------------------------

def auth(conn, arg: bytes) -> None:
    """AUTH mechanism [initial-response] (RFC 4954 section 4)."""
    _command(conn, "AUTH", arg)


def xauth(conn, arg: bytes) -> None:
    """XAUTH, Exchange 5.0's NTLM login (KB Q195201), modelled as AUTH [P]."""
    _command(conn, "XAUTH", arg)


def x_exps(conn, arg: bytes) -> None:
    """X-EXPS, Exchange 2000/2003's server-to-server AUTH (KB 812455), modelled as AUTH [P]."""
    _command(conn, "X-EXPS", arg)


def _command(conn, verb: str, arg: bytes) -> None:
    settings = conn.profile.auth
    mechanism, _, initial = arg.strip().partition(b" ")
    name = mechanism.decode("latin-1").upper()
    exchange = _EXCHANGES.get(name, _Exchange)(verb, name, settings)
    if conn.session.auth_user is not None:  # RFC 4954 section 4: 503
        exchange.end(conn, "already_authenticated", "auth_already")
    elif conn.profile.require_helo and conn.session.helo is None:
        exchange.end(conn, "need_helo", "need_helo")
    elif conn.envelope.sender is not None:  # not during a mail transaction: 503
        exchange.end(conn, "bad_sequence", "bad_sequence")
    elif not name:
        exchange.end(conn, "syntax", "syntax_auth")
    elif name not in settings.offered(verb):
        exchange.end(conn, "unknown_mechanism", "auth_unknown_mechanism")
    else:
        exchange.start(conn, initial.strip() or None)


def _decode(text: bytes) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _printable(text: str) -> str:
    """Safe inside a reply line: printable ASCII, anything else as C{?}."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


class _Exchange:
    """One AUTH or XAUTH command, from its line to its final reply.
    Subclasses are the mechanisms: C{begin} prompts for a first response,
    C{first} takes it (or the initial response), and each step names the
    next with L{prompt}."""

    ok_reply = ""

    def __init__(self, verb: str, mechanism: str, settings: AuthSettings):
        self.verb, self.mechanism, self.settings = verb, mechanism, settings
        self.user: str | None = None
        self.details: dict = {}
        self.step = None

    def start(self, conn, initial: bytes | None) -> None:
        if initial is None:
            self.begin(conn)
            return
        data = b"" if initial == b"=" else _decode(initial)  # "=": an empty initial response
        if data is None:
            self.end(conn, "bad_base64", "auth_bad_base64")
        else:
            self.first(conn, data)

    def prompt(self, conn, reply: str, step, challenge: str = "") -> None:
        """Send the 334 C{reply} and give the next line to C{step}."""
        self.step = step
        conn.reply(reply, challenge=challenge, **self._fields())
        conn.expect_line(self._line, self.settings.line_limit)

    def _line(self, conn, line: bytes | None) -> None:
        if line is None:  # too long: the core answers 500
            self.end(conn, "line_too_long")
        elif line.strip() == b"*":
            self.end(conn, "cancelled", "auth_cancelled")
        else:
            data = _decode(line)
            if data is None:
                self.end(conn, "bad_base64", "auth_bad_base64")
            else:
                self.step(conn, data)

    def check_password(self, conn, name: str, password: bytes) -> None:
        """LOGIN and PLAIN: C{name} is C{user} or C{DOMAIN\\user}."""
        domain, _, user = name.rpartition("\\")
        candidates = [a for a in self.settings.accounts if a.user.casefold() == user.casefold()]
        reason = "unknown user"
        if candidates:
            reason = "domain does not match account"
            candidates = [a for a in candidates
                          if not domain or a.domain in ("", "*") or a.domain.casefold() == domain.casefold()]
        if candidates:
            reason = "wrong password"
            if any(hmac.compare_digest(a.password.encode("utf-8"), password) for a in candidates):
                self.succeed(conn, name)
                return
        self.end(conn, "failure", "auth_failed", reason=reason)

    def succeed(self, conn, identity: str) -> None:
        conn.session.auth_user = identity
        self.end(conn, "success", self.ok_reply)

    def end(self, conn, outcome: str, reply: str = "", **details) -> None:
        """Record the attempt and send its final reply (none for C{""})."""
        conn.event("auth", verb=self.verb, mechanism=self.mechanism, user=self.user, outcome=outcome,
                   **self.details, **details)
        if reply:
            conn.reply(reply, **self._fields())

    def _fields(self) -> dict:
        """The template fields of every AUTH reply: C{{mechanism}} and C{{user}}."""
        return {"mechanism": _printable(self.mechanism), "user": _printable(self.user or "")}


class _Login(_Exchange):
    """LOGIN: 334 Username:, 334 Password: (KB Q173656); an initial response is the user name."""

    ok_reply = "auth_ok_login"

    def begin(self, conn) -> None:
        self.prompt(conn, "auth_username", self.username)

    def username(self, conn, data: bytes) -> None:
        self.user = _text(data)
        self.prompt(conn, "auth_password", self.password)

    first = username

    def password(self, conn, data: bytes) -> None:
        self.check_password(conn, self.user, data)


class _Plain(_Exchange):
    """PLAIN (RFC 4616): authzid NUL authcid NUL password, after an empty 334."""

    ok_reply = "auth_ok_plain"

    def begin(self, conn) -> None:
        self.prompt(conn, "auth_challenge", self.response)

    def response(self, conn, data: bytes) -> None:
        parts = data.split(b"\0")
        if len(parts) != 3:
            self.end(conn, "malformed", "auth_failed", reason="not authzid NUL authcid NUL password")
            return
        authzid, authcid, password = parts
        self.user = _text(authcid)
        if authzid and authzid != authcid:
            self.end(conn, "failure", "auth_failed", reason="authorization identity differs")
        else:
            self.check_password(conn, self.user, password)

    first = response


class _NTLM(_Exchange):
    """NTLM (MS-SMTPNTLM; KB Q262945): NEGOTIATE, 334 CHALLENGE, AUTHENTICATE."""

    ok_reply = "auth_ok_ntlm"

    def begin(self, conn) -> None:
        self.prompt(conn, "auth_ntlm_prompt", self.negotiate)

    def negotiate(self, conn, data: bytes) -> None:
        # Imported on first use: pyspnego and its crypto would add a tenth to
        # start-up, and most sessions never authenticate with NTLM.
        from emulator.auth.ntlm import NTLMAcceptor, NTLMError

        labels = conn.server.hostname.split(".", 1)
        self.acceptor = NTLMAcceptor(
            self.settings.accounts,
            challenge=self._challenge(conn),
            target_name=self.settings.ntlm_domain,
            netbios_computer=labels[0].upper()[:15],
            dns_computer=conn.server.hostname,
            dns_domain=labels[-1],
            allow_v1="NTLMv1" in self.settings.ntlm_versions,
            allow_v2="NTLMv2" in self.settings.ntlm_versions,
        )
        try:
            token = self.acceptor.challenge_for(data)
        except NTLMError as e:
            self.end(conn, "malformed", "auth_failed", reason=str(e))
            return
        self.prompt(conn, "auth_challenge", self.authenticate, challenge=base64.b64encode(token).decode("ascii"))

    first = negotiate

    def authenticate(self, conn, data: bytes) -> None:
        from emulator.auth.ntlm import NTLMError

        try:
            result = self.acceptor.verify(data)
        except NTLMError as e:
            self.end(conn, "malformed", "auth_failed", reason=str(e))
            return
        self.user = result.user
        self.details = {"domain": result.domain, "version": result.version}
        if result.ok:
            self.succeed(conn, f"{result.domain}\\{result.user}" if result.domain else result.user)
        else:
            self.end(conn, "failure", "auth_failed", reason=result.reason)

    def _challenge(self, conn) -> bytes:
        seed = self.settings.challenge_seed
        if seed is None:
            return conn.server.random_bytes(8)
        from emulator.auth.ntlm import challenge_from_seed

        attempt = sum(conn.session.counts[verb] for verb in VERBS) - 1
        return challenge_from_seed(seed, attempt)


class _GSSAPI(_Exchange):
    """GSSAPI (RFC 4752) with no Kerberos behind it: the client's first token
    is refused as a bad one, the failure a server without a usable ticket
    gives (docs/sources.md §6.5) [P].  Nothing is ever accepted."""

    def begin(self, conn) -> None:
        self.prompt(conn, "auth_challenge", self.token)

    def token(self, conn, data: bytes) -> None:
        self.end(conn, "failure", "auth_failed", reason="GSSAPI: no Kerberos here")

    first = token


_EXCHANGES = {"LOGIN": _Login, "PLAIN": _Plain, "NTLM": _NTLM, "GSSAPI": _GSSAPI}

#: The verbs of this module for the verb table (L{emulator.profiles.sections.VERBS}):
#: verb -> (handler, the catalogue replies it may send).
VERB_TABLE = {"AUTH": (auth, REPLIES), "XAUTH": (xauth, REPLIES), "X-EXPS": (x_exps, REPLIES)}
