"""
From recorded sessions to profile data: which catalogue reply each captured
reply is, the EHLO list, the verbs, limits, TLS and AUTH facts, and what
the sessions never showed.

    learned = learn(sessions, base=base_document)   # sessions: emulator.learn.dialogue.Session
    learned.replies["greeting"]                      # ["220 {hostname} ESMTP Postfix"]

A reply is named as the emulator's own core would name the reply to the
same command in the same state (L{emulator.core.commands}: MAIL before HELO
is C{need_helo}, a second MAIL is C{nested_mail}, an unknown verb is
C{unknown}, ...), so that serving the learned profile answers the same
client script with the same bytes.  A known verb answered exactly as an
unknown one is a verb the server lacks.  A refusal the core has no reply
name for (a recipient refused for its domain) becomes a C{reply} fault
matching that domain.  Nothing is invented: what no session showed is left
to the base profile and listed in L{Learned.untouched}; what cannot be said
with the profile keys that exist is in L{Learned.notes}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from emulator.core import commands
from emulator.profiles.sections import VERBS
from emulator.learn.dialogue import AUTH_LINE, CONNECT, DATA_END, Session
from emulator.learn.fields import escape, templatize
from emulator.sender.client import is_ip_address

# What the core passes to each reply it sends (emulator.core.commands and
# connection): a field is only templated where the emulator fills it in.
_FIELDS = {
    "helo": ("helo",), "ehlo": ("helo",), "syntax_helo": ("verb",),
    "mail_ok": ("sender",), "mail_ok_size": ("sender", "size"),
    "rcpt_ok": ("recipient",), "unknown": ("verb",),
    "vrfy": ("argument",), "expn": ("argument",), "etrn": ("argument",),
}
# AUTH mechanisms the emulator implements (emulator.auth.mechanisms).
_MECHANISMS = ("LOGIN", "PLAIN", "NTLM")
_TLS_KEYWORDS = ("STARTTLS", "TLS")
_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
# As the core parses them (emulator.core.commands): what counts as a syntax error.
_PATH = re.compile(rb"\A(FROM|TO):[ \t]*(<[^<>\x00-\x1f]*>|[^<> \t\x00-\x1f]+)(?:[ \t]+(.*))?\Z",
                   re.IGNORECASE | re.DOTALL)
_DOMAIN = re.compile(rb"\A[^\x00-\x20\x7f]+\Z")
_VERSION = re.compile(r"(?<![\w.])v?(\d+(?:\.\d+){1,3}[a-z]?)(?![\w.])")
_HOST = re.compile(r"\A(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)+\.?|localhost)\Z")


@dataclass
class Learned:
    """A server profile's data learned from sessions (see L{emit.render}).

    @ivar replies: catalogue name -> lines (templates, with their codes).
    @ivar sources: catalogue name -> where and when it was captured.
    @ivar untouched: what the base profile keeps because no session showed it.
    @ivar notes: what the sessions showed that no profile key can say, and conflicts.
    """

    base: str
    servers: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    sessions: int = 0
    hostname: str | None = None
    version: str | None = None
    replies: dict[str, list[str]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    commands: list[str] | None = None
    commands_why: str = ""
    ehlo_keywords: list[str] | None = None
    require_helo: bool | None = None
    limits: dict = field(default_factory=dict)
    tls: dict = field(default_factory=dict)
    auth: dict = field(default_factory=dict)
    quirks: list[dict] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)  # key -> the evidence, for comments
    untouched: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def source(self) -> str:
        return f"captured from {', '.join(self.servers) or 'an unnamed server'} on {', '.join(self.dates) or 'an unknown date'}"


@dataclass
class _State:
    """The part of the server's state that decides a reply's name."""

    helo: bool = False
    sender: bool = False
    recipients: int = 0
    tls: bool = False


def learn(sessions: list[Session], base: dict, base_name: str) -> Learned:
    """Profile data from C{sessions}; C{base} is the base profile's resolved
    document (what is not learned stays as it has it)."""
    out = Learned(base_name, sessions=len(sessions))
    out.servers = sorted({s.server for s in sessions if s.server})
    out.dates = sorted({s.date for s in sessions if s.date})
    _identity(out, sessions)
    learner = _Learner(out, sessions)
    learner.run()
    _commands(out, learner, base)
    _tls(out, learner, sessions)
    _untouched(out, base)
    return out


def _identity(out: Learned, sessions: list[Session]) -> None:
    """The host name and version the greeting (or else the EHLO reply) shows."""
    for s in sessions:
        for x in s.exchanges:
            if x.step in (CONNECT, "EHLO", "HELO") and 200 <= x.code < 300 and x.texts():
                token = (x.texts()[0].split() or [""])[0]
                if _HOST.match(token):
                    out.hostname = token
                    out.why["hostname"] = f"the first word of the {'greeting' if x.step == CONNECT else x.step + ' reply'}"
                    break
        if out.hostname:
            break
    for s in sessions:
        greeting = next((x for x in s.exchanges if x.step == CONNECT), None)
        if greeting is not None:
            for match in _VERSION.finditer(" ".join(greeting.texts())):
                if not is_ip_address(match.group(1)):
                    out.version = match.group(1)
                    return


class _Learner:
    """Names each exchange and files its template."""

    def __init__(self, out: Learned, sessions: list[Session]):
        self.out = out
        self.sessions = sessions
        self.answered: dict[str, int] = {}  # known verb -> times answered (not as unknown)
        self.lacking: set[str] = set()  # known verbs answered as unknown
        self.keywords: dict[bool, list[str]] = {}  # inside TLS -> the first EHLO list seen
        self.starttls: list[int] = []  # codes of the replies to STARTTLS outside TLS
        self.unknown: tuple[int, str] | None = None

    def run(self) -> None:
        # Pass 1: the unknown-verb reply, to tell a verb the server lacks.
        for s in self.sessions:
            for x in s.exchanges:
                if x.step and x.step not in VERBS and x.step not in (CONNECT, DATA_END, AUTH_LINE) \
                        and x.step.isalnum() and self.unknown is None:
                    self.unknown = (x.code, self._template("unknown", x, s, verb=_verb(x))[0])
        for s in self.sessions:
            self.session = s
            state = _State()
            for x in s.exchanges:
                self._exchange(x, state)

    # -- naming ----------------------------------------------------------

    def _exchange(self, x, st: _State) -> None:
        verb = x.step
        ok = 200 <= x.code < 300
        if verb == CONNECT:
            return self._file("greeting", x)
        if verb in (DATA_END, AUTH_LINE) or not verb:
            if verb == DATA_END:
                st.sender, st.recipients = False, 0
                if ok:
                    self._file("data_ok", x)
                else:
                    self._note(f"the message was refused after DATA: {x.lines()[-1]!r} (not modelled)")
            return
        if verb not in VERBS:
            return self._file("unknown", x, verb=_verb(x))
        if self._is_unknown(x):
            self.lacking.add(verb)
            return
        self.answered[verb] = self.answered.get(verb, 0) + 1
        handler = getattr(self, f"_{verb.lower()}", None)
        if handler is not None:
            handler(x, st, ok)
        elif verb in ("RSET", "NOOP", "QUIT", "HELP", "VRFY", "EXPN", "ETRN", "TURN", "XEXCH50"):
            if verb == "RSET":
                st.sender, st.recipients = False, 0
            self._file(verb.lower(), x, argument=x.argument.decode("latin-1").strip())
        # AUTH and XAUTH: their exchanges carry credentials (masked); only the EHLO list is learned.

    def _helo(self, x, st, ok, esmtp=False) -> None:
        arg = x.argument.strip()
        if not _DOMAIN.match(arg):
            if ok:
                self._note(f"{x.step} without a name was answered {x.code}: filed as syntax_helo, which "
                           "replays the bytes, though the emulator does not count it as a greeting")
            return self._file("syntax_helo", x, verb=x.step)
        if not ok:
            return self._note(f"{x.step} {arg.decode('latin-1')} was refused: {x.lines()[-1]!r} (not modelled)")
        st.helo, st.sender, st.recipients = True, False, 0
        if not esmtp:
            return self._file("helo", x, helo=arg.decode("latin-1"))
        first = x.lines()[:1]
        self._file("ehlo", x, lines=first, helo=arg.decode("latin-1"))
        self.keywords.setdefault(x.tls, x.texts()[1:])

    def _ehlo(self, x, st, ok) -> None:
        self._helo(x, st, ok, esmtp=True)

    def _mail(self, x, st, ok) -> None:
        parsed = _PATH.match(x.argument)
        if not st.helo:
            self.out.require_helo = not ok
            self.out.why["require_helo"] = f"MAIL before HELO was answered {x.code}"
            if not ok:
                return self._file("need_helo", x)
        if st.sender:
            return self._file("nested_mail", x)
        if parsed is None or parsed.group(1).upper() != b"FROM":
            return self._file("syntax_mail", x)
        sender = parsed.group(2).strip(b"<>").decode("latin-1")
        size = re.search(rb"(?i)\bSIZE=([0-9]+)", parsed.group(3) or b"")
        if ok:
            st.sender, st.recipients = True, 0
            if size:
                return self._file("mail_ok_size", x, sender=sender, size=size.group(1).decode())
            return self._file("mail_ok", x, sender=sender)
        if x.code == 530 and not st.tls:
            return self._file("tls_required", x)
        self._refusal(x, "MAIL", sender)

    def _rcpt(self, x, st, ok) -> None:
        parsed = _PATH.match(x.argument)
        if not st.sender:
            return self._file("need_mail", x)
        if parsed is None or parsed.group(1).upper() != b"TO" or parsed.group(2) in (b"<>", b""):
            return self._file("syntax_rcpt", x)
        recipient = parsed.group(2).strip(b"<>").decode("latin-1")
        if ok:
            st.recipients += 1
            return self._file("rcpt_ok", x, recipient=recipient)
        self._refusal(x, "RCPT", recipient)

    def _data(self, x, st, ok) -> None:
        if not st.sender:
            return self._file("need_mail", x)
        if not st.recipients:
            return self._file("need_rcpt", x)
        if x.argument.strip():
            return self._file("syntax_data", x)
        if x.code == 354:
            return self._file("data_start", x)
        self._note(f"DATA was refused with recipients: {x.lines()[-1]!r} (not modelled)")

    def _starttls(self, x, st, ok) -> None:
        if st.tls:
            return self._file("bad_sequence", x)
        if x.argument.strip():
            return self._file("syntax_starttls", x)
        self.starttls.append(x.code)
        if ok:
            self._file("tls_ready", x)
            st.tls, st.helo, st.sender, st.recipients = True, False, False, 0
        else:
            self._file("tls_unavailable", x)

    def _is_unknown(self, x) -> bool:
        if self.unknown is None:
            return False
        code, template = self.unknown
        return x.code == code and self._template("unknown", x, self.session, verb=_verb(x))[0] == template

    # -- filing ----------------------------------------------------------

    def _refusal(self, x, verb: str, address: str) -> None:
        """A refused sender or recipient: a C{reply} fault for its domain."""
        domain = address.rpartition("@")[2]
        if not domain:
            return self._note(f"{verb} of {address!r} was refused: {x.lines()[-1]!r} (not modelled)")
        match = f"(?i)@{re.escape(domain)}>?$"
        reply = [escape(line) for line in x.lines()]
        entry = {"command": verb, "match": match, "reply": reply[0] if len(reply) == 1 else reply}
        if entry not in [q["attributes"] for q in self.out.quirks]:
            self.out.quirks.append({"type": "reply", "attributes": entry,
                                    "why": f"{verb} of an address in {domain} refused; [P] that the whole "
                                           f"domain is refused (one address was tried)"})

    def _file(self, name: str, x, *, lines: list[str] | None = None, **values) -> None:
        template = self._template(name, x, self.session, lines=lines, **values)
        known = self.out.replies.get(name)
        if known is None:
            self.out.replies[name] = template
            self.out.sources[name] = f"{x.step.lower() if x.step != CONNECT else 'connect'}"
        elif known != template:
            self._note(f"{name}: also seen as {template!r}; the first kept ({known!r})")

    def _template(self, name: str, x, session: Session, *, lines: list[str] | None = None, **values) -> list[str]:
        allowed = {k: v for k, v in values.items() if k in _FIELDS.get(name, ())}
        if self.out.hostname:
            allowed["hostname"] = self.out.hostname
        if name == "greeting" and self.out.version:
            allowed["version"] = self.out.version
        client = session.client[0] if session.client else _ip_in(x) if name in ("helo", "ehlo") else None
        if client:
            allowed["peer_ip"] = client
        volatile = ("date", "queue_id") if name == "data_ok" else ("date",)
        out = []
        for line in lines if lines is not None else x.lines():
            head, text = line[:4], line[4:]
            if len(line) == 3:  # a bare code
                out.append(line)
                continue
            out.append(escape(head) + templatize(text, allowed, volatile))
        return out

    def _note(self, text: str) -> None:
        if text not in self.out.notes:
            self.out.notes.append(text)


def _verb(x) -> str:
    return x.line.split(b" ", 1)[0].decode("latin-1")


def _ip_in(x) -> str | None:
    """An IP literal in a HELO/EHLO reply: the client's address as the
    server saw it (when the transcript does not say)."""
    for token in re.findall(r"[0-9A-Fa-f:.]{7,}", " ".join(x.texts()[:1])):
        if is_ip_address(token):
            return token
    return None


# -- the profile's other keys ------------------------------------------------


def _commands(out: Learned, learner: _Learner, base: dict) -> None:
    """Verbs: the base's, plus those answered or listed, less those answered
    as unknown; the EHLO list; limits; AUTH."""
    plain = learner.keywords.get(False)
    verbs = list(base.get("commands", []))
    wanted = dict.fromkeys(learner.answered)
    keywords = None
    if plain is not None:
        keywords = []
        for keyword in plain:
            word = re.split(r"[ =]", keyword.strip(), maxsplit=1)[0].upper()
            verb = commands.KEYWORD_VERBS.get(word)
            if verb and verb not in VERBS:
                out.notes.append(f"the EHLO keyword {keyword!r} is left out: the emulator has no {verb} command")
                continue
            if word == "AUTH":
                offered = [m.upper() for m in re.split(r"[ =]", keyword.strip())[1:] if m]
                usable = [m for m in dict.fromkeys(offered) if m in _MECHANISMS]
                if not usable:
                    out.notes.append(f"the EHLO keyword {keyword!r} is left out: the emulator has none of its mechanisms")
                    continue
                # Listed ones are added to the base's: a mechanism accepted but
                # not listed (the 5.5 IMS's NTLM) is not disproved by the list.
                known = out.auth.setdefault("mechanisms", list(base.get("auth", {}).get("mechanisms", [])))
                known += [m for m in usable if m not in known]
                out.why["auth"] = f"the EHLO list: {keyword!r}"
                if len(usable) < len(offered):
                    out.notes.append(f"AUTH mechanisms the emulator lacks are listed but answered 504: "
                                     f"{', '.join(m for m in offered if m not in _MECHANISMS)}")
            if verb:
                wanted[verb] = None
            keywords.append(keyword)
            size = re.fullmatch(r"(?i)SIZE(?:[ =]([0-9]+))?", keyword.strip())
            if size:
                out.limits["message_size"] = int(size.group(1) or 0)
                out.why["limits"] = f"{keyword!r} in the EHLO list"
        out.ehlo_keywords = keywords
        inside = learner.keywords.get(True)
        expected = [k for k in keywords if k.upper() not in _TLS_KEYWORDS]
        if inside is not None and inside != expected:
            out.notes.append(f"inside TLS the EHLO list was {inside!r}; the emulator lists the same keywords "
                             f"inside TLS less STARTTLS ({expected!r})")
    for verb in wanted:
        if verb not in verbs:
            verbs.append(verb)
    removed = sorted(v for v in learner.lacking if v in verbs and v not in learner.answered)
    verbs = [v for v in verbs if v not in removed]
    if "AUTH" not in verbs and base.get("auth", {}).get("mechanisms"):
        out.auth["mechanisms"] = []
    if "XAUTH" not in verbs and base.get("auth", {}).get("xauth_mechanisms"):
        out.auth["xauth_mechanisms"] = []
    out.commands = verbs
    for verb, key in (("AUTH", "mechanisms"), ("XAUTH", "xauth_mechanisms")):
        if verb in verbs and not out.auth.get(key, base.get("auth", {}).get(key)):
            _drop_verb(out, verb, f"no mechanism of it that the emulator has was listed, and the base {out.base} "
                                  "gives none")
    parts = []
    if learner.answered:
        parts.append(f"answered: {', '.join(sorted(learner.answered))}")
    if removed:
        parts.append(f"answered as unknown, so left out: {', '.join(removed)}")
    untried = [v for v in verbs if v not in learner.answered and v not in wanted]
    if untried:
        parts.append(f"from the base, not tried: {', '.join(untried)}")
    out.commands_why = "; ".join(parts)
    _drop_unanswerable(out, base)


def _drop_unanswerable(out: Learned, base: dict) -> None:
    """A verb whose replies neither the sessions nor the base give cannot
    be enabled (the loader requires them): leave it out, with its keyword."""
    have = set(out.replies) | set(base.get("replies", {}))
    for verb in list(out.commands or []):
        missing = [r for r in VERBS[verb][1] if r not in have]
        if missing and verb not in ("AUTH", "XAUTH"):
            _drop_verb(out, verb, f"no session showed its replies {', '.join(missing)} and the base {out.base} "
                                  "has none")


def _drop_verb(out: Learned, verb: str, why: str) -> None:
    """Leave C{verb} out, with the EHLO keywords that advertise it."""
    out.commands.remove(verb)
    dropped = [k for k in out.ehlo_keywords or ()
               if commands.KEYWORD_VERBS.get(re.split(r"[ =]", k.strip())[0].upper()) == verb]
    if dropped:
        out.ehlo_keywords = [k for k in out.ehlo_keywords if k not in dropped]
    out.notes.append(f"{verb} is left out{' with its EHLO keywords ' + repr(dropped) if dropped else ''}: {why}")


def _tls(out: Learned, learner: _Learner, sessions: list[Session]) -> None:
    """The C{tls:} section: advertised or not, the certificate, the versions."""
    plain = learner.keywords.get(False)
    if plain is None:
        return
    listed = [k for k in plain if k.strip().upper() in _TLS_KEYWORDS]
    if not listed:
        out.tls["advertise"] = "never"
        out.why["tls"] = "STARTTLS was not in the EHLO list"
        return
    out.tls["keywords"] = listed
    if learner.starttls and not any(200 <= c < 300 for c in learner.starttls):
        out.tls.update(advertise="always", certificate="none")
        out.why["tls"] = f"STARTTLS listed, then answered {learner.starttls[0]}: no certificate behind it"
        return
    out.tls.update(advertise="with_certificate", certificate="generated")
    why = ["STARTTLS listed" + (" and answered 220" if learner.starttls else "; never tried, so [P] that it works")]
    cert = next((s.event("tls_certificate") for s in sessions if s.event("tls_certificate")), None)
    if cert:
        names = [("{hostname}" if n == out.hostname else n) for n in cert.get("names", [])]
        if names:
            out.tls["names"] = names
        if cert.get("key_type") in ("rsa", "ec"):
            out.tls["key_type"] = cert["key_type"]
        if cert.get("key_type") == "rsa" and cert.get("key_size"):
            out.tls["key_size"] = cert["key_size"]
        if cert.get("self_signed"):
            out.tls["self_signed"] = True
        why.append("the certificate's names and key from the probe's handshake")
    elif learner.starttls:
        out.notes.append("the certificate was not seen (a recorder sees only ciphertext after STARTTLS; "
                         "the probe sees it): a generated one stands in [P]")
    tried = {}
    for s in sessions:
        pinned = (s.event("probe") or {}).get("tls_version")
        if pinned:
            failed = s.event("tls_failed")
            if s.event("tls_established"):
                tried[pinned] = True
            elif failed and "no protocols available" not in failed.get("reason", "").lower():
                tried[pinned] = False
    accepted = [v for v in _VERSIONS if tried.get(v)]
    if accepted:
        out.tls["min_version"], out.tls["max_version"] = accepted[0], accepted[-1]
        why.append("versions from handshakes offering one version each: "
                   + ", ".join(f"{v} {'accepted' if tried[v] else 'refused'}" for v in _VERSIONS if v in tried))
        untested = [v for v in _VERSIONS if v not in tried]
        if untested:
            out.notes.append(f"TLS versions this machine could not offer, so untested: {', '.join(untested)}")
    else:
        established = next((s.event("tls_established") for s in sessions if s.event("tls_established")), None)
        if established:
            out.notes.append(f"TLS: {established.get('version')} {established.get('cipher')} negotiated; "
                             "the version range was not probed, so the base's stands")
    out.why["tls"] = "; ".join(why)


def _untouched(out: Learned, base: dict) -> None:
    """What the base profile keeps because no session showed it."""
    out.untouched["replies"] = sorted(set(base.get("replies", {})) - set(out.replies))
    out.untouched["limits"] = sorted(k for k in ("command_line", "text_line", "message_size", "recipients", "commands",
                                                 "bad_commands", "connections", "idle_timeout", "data_timeout")
                                     if k not in out.limits)
    tls_keys = ("certificate", "advertise", "min_version", "max_version", "names", "key_type", "key_size")
    out.untouched["tls"] = [k for k in tls_keys if k not in out.tls] if out.tls else ["the whole section"]
