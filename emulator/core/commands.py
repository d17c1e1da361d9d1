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
_BINARYMIME = re.compile(rb"(?:\A|[ \t])BODY=BINARYMIME(?=[ \t]|\Z)", re.IGNORECASE)
# BDAT chunk-size [LAST] (RFC 3030 section 2: chunk-size = 1*DIGIT).
_BDAT = re.compile(rb"\A([0-9]{1,20})(?:[ \t]+(LAST))?\Z", re.IGNORECASE)
# XEXCH50 <blob size> <n>, as Exchange sent it ("XEXCH50 2336 3", KB 843106).
_XEXCH50 = re.compile(rb"\A([0-9]{1,20})[ \t]+([0-9]{1,10})\Z")


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
    """HELO (RFC 5321 section 4.1.1.1): a new session, transaction reset
    (unless the profile says C{helo_resets: false}, KB 251581)."""
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
    # RFC 5321 4.1.4: a HELO/EHLO in a transaction clears it.  IIS 5 and
    # Exchange 2000 kept the envelope "by design" (KB 251581): helo_resets: false.
    if conn.profile.helo_resets:
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
    RFC 1870: IMS answered a SIZE-bearing MAIL with its own text (KB Q262945).
    C{BODY=BINARYMIME} (RFC 3030 section 3) is noted where the profile lists
    BINARYMIME; elsewhere, as before, the parameter is ignored."""
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
    conn.envelope.binarymime = conn.server.binarymime and _BINARYMIME.search(params) is not None
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
    """DATA (RFC 5321 section 4.1.1.4): 354, then the message until CRLF.CRLF.
    Not in a transaction that has BDAT chunks or said C{BODY=BINARYMIME}
    (RFC 3030 sections 2 and 3: C{bdat_sequence})."""
    envelope = conn.envelope
    if envelope.sender is None:
        conn.reply("need_mail")
    elif envelope.chunks is not None or envelope.binarymime:
        conn.reply("bdat_sequence")
    elif not envelope.recipients:
        conn.reply("need_rcpt")
    elif arg.strip():
        conn.reply("syntax_data")
    else:
        conn.reply("data_start")
        conn.start_data()


def bdat(conn, arg: bytes) -> None:
    """BDAT chunk-size [LAST] (RFC 3030 section 2, CHUNKING): exactly
    chunk-size bytes follow the command line and are read in bulk, with no
    line parsing or dot-unstuffing; the reply comes after them.  An
    intermediate chunk gets C{bdat_ok} (C{{size}}: its size), C{BDAT n LAST}
    ends the message like DATA's terminator (C{data_ok} once stored; C{BDAT
    0 LAST} is allowed).  A refused chunk (no MAIL or RCPT, over
    C{limits: message_size}) is still read, so that its bytes are never
    taken for commands; an oversized one ends the transaction (RFC 3030:
    its state is then indeterminate).  A chunk-size that cannot be read
    gets C{bdat_syntax} and nothing is read as a chunk."""
    match = _BDAT.match(arg.strip())
    if match is None:
        conn.reply("bdat_syntax", argument=_text(arg))
        return
    size, last = int(match.group(1)), match.group(2) is not None
    envelope = conn.envelope
    limit = conn.profile.limits.message_size
    if envelope.sender is None:
        refusal = "need_mail"
    elif not envelope.recipients:
        refusal = "need_rcpt"
    elif limit and envelope.chunk_bytes + size > limit:
        refusal = "message_too_big"
    else:
        refusal = None
    conn.read_chunk(size, lambda chunk: _chunk_read(conn, chunk, size, last, refusal), keep=refusal is None)


def _chunk_read(conn, chunk: bytes, size: int, last: bool, refusal: str | None) -> None:
    """A BDAT chunk has been read: answer it, and end the message after LAST."""
    envelope = conn.envelope
    if refusal == "message_too_big":
        limit = conn.profile.limits.message_size
        conn.event("message_rejected", reason="size", bytes=envelope.chunk_bytes + size)
        conn.envelope = Envelope()
        conn.reply("message_too_big", limit=str(limit))
        return
    if refusal is not None:
        conn.reply(refusal)
        return
    chunks = envelope.chunks
    if chunks is None:
        chunks = envelope.chunks = []
    if not last:
        chunks.append(chunk)
        envelope.chunk_bytes += size
        conn.reply("bdat_ok", size=str(size))
        return
    body = b"".join((*chunks, chunk)) if chunks else chunk
    # A BINARYMIME body has no lines (RFC 3030 section 3): no text_line limit.
    conn.end_message(body, text_lines=not envelope.binarymime)


def xexch50(conn, arg: bytes) -> None:
    """XEXCH50 (KB 812455): Exchange's per-message properties between its
    servers.  With the profile's C{xexch50: blob: false}, the product's one
    fixed answer, C{xexch50} (the 5.x IMS personas).  With C{blob: true}, as
    Exchange 2000/2003: without a login C{xexch50} (C{504 Need to
    authenticate first}, KB 843106; with C{login: false}, as the 5.x IMS
    before MS03-046, no login is asked for); after one, in a transaction,
    C{xexch50_ready} (C{354 Send binary data}), a blob of exactly the
    announced size read in bulk like a BDAT chunk (and discarded), then
    C{xexch50_ok}.  A command longer than C{xexch50: command} or a blob over
    C{max_blob} (KB 812455: 50 bytes, 1 GB) gets C{xexch50_syntax}."""
    settings = conn.profile.xexch50
    if not settings.blob or (settings.login and conn.session.auth_user is None):
        conn.reply("xexch50", argument=_text(arg))
        return
    if conn.envelope.sender is None:
        conn.reply("need_mail")
        return
    match = _XEXCH50.match(arg.strip())
    if (match is None or (settings.command and len(b"XEXCH50 \r\n") + len(arg) > settings.command)
            or (settings.max_blob and int(match.group(1)) > settings.max_blob)):
        conn.reply("xexch50_syntax", argument=_text(arg))
        return
    size = int(match.group(1))
    conn.reply("xexch50_ready")
    conn.read_chunk(size, lambda blob: _blob_read(conn, size), keep=False)


def _blob_read(conn, size: int) -> None:
    conn.event("xexch50_blob", bytes=size)
    conn.reply("xexch50_ok")


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
    "BDAT": (bdat, ("bdat_ok", "bdat_syntax", "bdat_sequence", "need_mail", "need_rcpt", "data_ok",
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
    "ATRN": (_fixed("atrn", "ATRN (RFC 2645): the product's fixed answer."), ("atrn",)),
    # emulator.profiles.sections.Xexch50 adds the replies of its blob mode.
    "XEXCH50": (xexch50, ("xexch50",)),
    "X-LINK2STATE": (_fixed("xlink2state", "X-LINK2STATE (KB 812455): Exchange's routing state "
                                           "between its servers; the product's answer."), ("xlink2state",)),
}

# Replies the core itself may send, whatever the commands.
CORE_REPLIES = ("greeting", "unknown", "line_too_long")

# Verbs whose command line and prompted lines carry credentials (RFC 4954
# AUTH; Exchange 5.0's XAUTH; Exchange 2000/2003's X-EXPS): the transcript
# records whether each arrived inside TLS, whatever the profile does with them.
CREDENTIAL_VERBS = frozenset({"AUTH", "XAUTH", "X-EXPS"})

# EHLO keyword -> the verb that must be enabled for it to be honest.
KEYWORD_VERBS = {
    "AUTH": "AUTH", "XAUTH": "XAUTH", "STARTTLS": "STARTTLS", "TLS": "STARTTLS", "ETRN": "ETRN",
    "HELP": "HELP", "VRFY": "VRFY", "EXPN": "EXPN", "TURN": "TURN", "XEXCH50": "XEXCH50",
    "CHUNKING": "BDAT", "BINARYMIME": "BDAT", "ATRN": "ATRN", "X-LINK2STATE": "X-LINK2STATE", "X-EXPS": "X-EXPS",
}
