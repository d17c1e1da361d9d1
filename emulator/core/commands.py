"""
The verb table: one handler per SMTP command, picked by a profile's
C{commands:} list.  A handler takes the connection and the argument bytes,
changes state and asks for replies by name; it never builds reply text.

Baseline behaviour is RFC 5321; where the legacy products deviated, the
deviation is data (reply texts, the C{commands:} list, limits) or a quirk.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Callable

from emulator.core.session import Envelope

Handler = Callable[["ServerConnection", bytes], None]  # noqa: F821

# MAIL FROM:<path> [params] / RCPT TO:<path> [params].  Legacy servers took a
# space after the colon and an unbracketed path; so does this one.
_PATH = re.compile(rb"\A(FROM|TO):[ \t]*(<[^<>\x00-\x1f]*>|[^<> \t\x00-\x1f]+)(?:[ \t]+(.*))?\Z",
                   re.IGNORECASE | re.DOTALL)
_SIZE = re.compile(rb"(?:\A|[ \t])SIZE=([0-9]{1,20})(?=[ \t]|\Z)", re.IGNORECASE)
_DOMAIN = re.compile(rb"\A[^\x00-\x20\x7f]+\Z")


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def _path(arg: bytes, kind: bytes) -> tuple[bytes, bytes] | None:
    match = _PATH.match(arg)
    if match is None or match.group(1).upper() != kind:
        return None
    path = match.group(2)
    if path.startswith(b"<"):
        path = path[1:-1]
    return path, match.group(3) or b""


def helo(conn, arg: bytes) -> None:
    """HELO (RFC 5321 section 4.1.1.1): a new session, transaction reset."""
    _greet(conn, arg, esmtp=False)


def ehlo(conn, arg: bytes) -> None:
    """EHLO: as HELO, and list the service extensions (RFC 5321 4.1.1.1)."""
    _greet(conn, arg, esmtp=True)


def _greet(conn, arg: bytes, esmtp: bool) -> None:
    arg = arg.strip()
    if not _DOMAIN.match(arg):
        conn.reply("syntax_helo", verb="EHLO" if esmtp else "HELO")
        return
    conn.session.helo = arg
    conn.session.esmtp = esmtp
    conn.envelope = Envelope()
    if not esmtp:
        conn.reply("helo", helo=_text(arg))
        return
    keywords = list(conn.profile.ehlo_keywords)
    tls = conn.server.tls
    # A TLS keyword also written in ehlo_keywords keeps its place there (a
    # captured list's order); the rest are appended.  Either way they show
    # only when advertised, and never again once inside TLS (RFC 3207 4.2).
    placed = [k for k in tls.keywords if k in keywords]
    if (not conn.session.tls and "STARTTLS" in conn.server.verbs and tls.advertised(conn.server.tls_available)
            and tls.offered_to(conn.session.peer_ip, _text(arg))):
        keywords += [k for k in tls.keywords if k not in placed]
    elif placed:
        keywords = [k for k in keywords if k not in placed]
    for quirk in conn.server.hooks["ehlo_keywords"]:
        keywords = quirk.ehlo_keywords(conn, keywords)
    first = conn.profile.replies["ehlo"].format({**conn._fields, "helo": _text(arg)})
    conn.send_reply(replace(first, lines=first.lines + tuple(keywords), bare=False), name="ehlo")


def mail(conn, arg: bytes) -> None:
    """MAIL FROM (RFC 5321 section 4.1.1.2), with the SIZE parameter of
    RFC 1870: IMS answered a SIZE-bearing MAIL with its own text (KB Q262945)."""
    if conn.profile.require_helo and conn.session.helo is None:
        conn.reply("need_helo")
        return
    if conn.envelope.sender is not None:
        conn.reply("nested_mail")
        return
    if conn.server.tls.required and not conn.secure:
        conn.reply("tls_required")
        return
    parsed = _path(arg, b"FROM")
    if parsed is None:
        conn.reply("syntax_mail", argument=_text(arg))
        return
    sender, params = parsed
    size = _SIZE.search(params)
    limit = conn.profile.limits.message_size
    if size and limit and int(size.group(1)) > limit:
        conn.reply("message_too_big", limit=str(limit), sender=_text(sender))
        return
    conn.envelope.sender = sender
    conn.envelope.mail_params = params
    if params.strip() and "mail_ok_parameters" in conn.profile.replies:
        # A product that echoed the parameters (Netscape 3.0: "... and
        # extensions (AUTH=<a>) Ok"); optional in the catalogue.
        conn.reply("mail_ok_parameters", sender=_text(sender), parameters=_text(params.strip()))
    elif size:
        conn.reply("mail_ok_size", sender=_text(sender), size=_text(size.group(1)))
    else:
        conn.reply("mail_ok", sender=_text(sender))


def rcpt(conn, arg: bytes) -> None:
    """RCPT TO (RFC 5321 section 4.1.1.3); with the profile's C{relay:}
    rules, a recipient the server would have to relay for this peer gets
    C{relay_denied} (L{emulator.core.relay})."""
    if conn.envelope.sender is None:
        conn.reply("need_mail")
        return
    parsed = _path(arg, b"TO")
    if parsed is None or not parsed[0]:
        conn.reply("syntax_rcpt", argument=_text(arg))
        return
    recipient = parsed[0]
    relay = conn.profile.relay
    if relay is not None and relay.refuses(_text(recipient), conn.session.peer_ip, conn.session.auth_user is not None):
        # KB Q193922: the RCPT is refused, the transaction goes on, and the
        # IMS logged an event naming the peer and the recipient.
        conn.event("relay_denied", recipient=_text(recipient), peer=conn.session.peer_ip)
        conn.reply("relay_denied", recipient=_text(recipient))
        return
    limit = conn.profile.limits.recipients
    if limit and len(conn.envelope.recipients) >= limit:
        conn.reply("too_many_recipients", recipient=_text(recipient), limit=str(limit))
        return
    conn.envelope.recipients.append(recipient)
    conn.reply("rcpt_ok", recipient=_text(recipient))


def data(conn, arg: bytes) -> None:
    """DATA (RFC 5321 section 4.1.1.4): 354, then the message until CRLF.CRLF."""
    if conn.envelope.sender is None:
        conn.reply("need_mail")
    elif not conn.envelope.recipients:
        conn.reply("need_rcpt")
    elif arg.strip():
        conn.reply("syntax_data")
    else:
        conn.reply("data_start")
        conn.start_data()


def rset(conn, arg: bytes) -> None:
    """RSET (RFC 5321 section 4.1.1.5): abort the transaction."""
    conn.envelope = Envelope()
    conn.reply("rset")


def noop(conn, arg: bytes) -> None:
    """NOOP (RFC 5321 section 4.1.1.9)."""
    conn.reply("noop")


def quit(conn, arg: bytes) -> None:
    """QUIT (RFC 5321 section 4.1.1.10): reply, then close."""
    conn.reply("quit")
    conn.close()


def _fixed(reply_name: str, doc: str) -> Handler:
    def handler(conn, arg: bytes) -> None:
        conn.reply(reply_name, argument=_text(arg))

    handler.__doc__ = doc
    handler.replies = (reply_name,)
    return handler


def starttls(conn, arg: bytes) -> None:
    """STARTTLS (RFC 3207 section 4): 220 and the handshake when this
    listener has a certificate, else the product's refusal."""
    if conn.session.tls:
        conn.reply("bad_sequence")
    elif arg.strip():
        conn.reply("syntax_starttls")
    elif not conn.server.tls_available or not conn.server.tls.offered_to(conn.session.peer_ip,
                                                                        _text(conn.session.helo or b"")):
        # Not offered to this peer (KB Q260065, Q255753) is not available either [P].
        conn.reply("tls_unavailable")
    else:
        conn.reply("tls_ready")
        conn.start_tls()


# verb -> (handler, the catalogue replies it may send): the core's verbs;
# emulator.profiles.sections adds authentication's for the full table.
VERBS: dict[str, tuple[Handler, tuple[str, ...]]] = {
    "HELO": (helo, ("helo", "syntax_helo")),
    "EHLO": (ehlo, ("ehlo", "syntax_helo")),
    "MAIL": (mail, ("mail_ok", "mail_ok_size", "need_helo", "nested_mail", "syntax_mail",
                    "message_too_big")),  # and mail_ok_parameters, when the catalogue has it
    "RCPT": (rcpt, ("rcpt_ok", "need_mail", "syntax_rcpt", "too_many_recipients")),
    "DATA": (data, ("data_start", "need_mail", "need_rcpt", "syntax_data", "data_ok",
                    "data_failed", "message_too_big")),
    "RSET": (rset, ("rset",)),
    "NOOP": (noop, ("noop",)),
    "QUIT": (quit, ("quit",)),
    "STARTTLS": (starttls, ("bad_sequence", "syntax_starttls", "tls_unavailable", "tls_ready")),
    "VRFY": (_fixed("vrfy", "VRFY (RFC 5321 3.5.3): the product's fixed answer."), ("vrfy",)),
    "EXPN": (_fixed("expn", "EXPN (RFC 5321 3.5.3): the product's fixed answer."), ("expn",)),
    "HELP": (_fixed("help", "HELP (RFC 5321 4.1.1.8): the product's help text."), ("help",)),
    "ETRN": (_fixed("etrn", "ETRN (RFC 1985): the product's fixed answer."), ("etrn",)),
    "TURN": (_fixed("turn", "TURN (RFC 821): the product's fixed refusal."), ("turn",)),
    "XEXCH50": (_fixed("xexch50", "XEXCH50 (KB 812455): the product's answer."), ("xexch50",)),
}

# Replies the core itself may send, whatever the commands.
CORE_REPLIES = ("greeting", "unknown", "line_too_long")

# Verbs whose command line and prompted lines carry credentials (RFC 4954
# AUTH; Exchange 5.0's XAUTH): the transcript records whether each arrived
# inside TLS, whatever the profile does with them.
CREDENTIAL_VERBS = frozenset({"AUTH", "XAUTH"})

# EHLO keyword -> the verb that must be enabled for it to be honest.
KEYWORD_VERBS = {
    "AUTH": "AUTH", "XAUTH": "XAUTH", "STARTTLS": "STARTTLS", "TLS": "STARTTLS", "ETRN": "ETRN",
    "HELP": "HELP", "VRFY": "VRFY", "EXPN": "EXPN", "TURN": "TURN", "XEXCH50": "XEXCH50",
    "CHUNKING": "BDAT", "ATRN": "ATRN",
}
