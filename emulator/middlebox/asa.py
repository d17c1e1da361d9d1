"""Cisco ASA C{inspect esmtp} (and PIX 7+) with its default policy map."""

from __future__ import annotations

import msgspec
from msgspec.structs import force_setattr

from emulator.middlebox.base import Middlebox
from emulator.middlebox.pix import RFC821_MINIMUM, mask_greeting, x_out
from emulator.middlebox.starttls import ehlo_lines, rejoin
from emulator.schema import Count, Record, invalid

#: The fifteen commands ESMTP inspection passes: RFC 821's seven and eight more.
ESMTP_COMMANDS = RFC821_MINIMUM + ("AUTH", "EHLO", "ETRN", "HELP", "SAML", "SEND", "SOML", "STARTTLS", "VRFY")
#: The EHLO reply parameters the ASA names (C{match ehlo-reply-parameter}:
#: 8bitmime, binarymime, checkpoint, dsn, ecode, etrn, pipelining, size,
#: vrfy); every other keyword is "others" [P: the list is the command
#: reference's, not re-read for this project].
EHLO_NAMED = ("8BITMIME", "BINARYMIME", "CHECKPOINT", "DSN", "ENHANCEDSTATUSCODES", "ETRN", "PIPELINING", "SIZE",
              "VRFY")


class ASAInspectESMTP(Record, Middlebox):
    """Cisco ASA C{inspect esmtp} in front of an SMTP server, with the
    defaults of C{_default_esmtp_map}.

    Sources (docs/sources.md §8.3): the Cisco ASA Series Firewall CLI
    Configuration Guide, "SMTP and Extended SMTP Inspection" and "Defaults
    for ESMTP Inspection" (C{mask-banner}, C{no allow-tls}, C{match cmd line
    length gt 512 drop-connection log}, C{match cmd RCPT count gt 100
    drop-connection log}, C{match body line length gt 998 log}, C{match
    header line length gt 998 drop-connection log}, C{match sender-address
    length gt 320 drop-connection log}, C{match ehlo-reply-parameter others
    mask}); Cisco TAC document 113423 (commands X'd).

    - The banner is masked as a PIX masks it: "changes the characters in the
      server SMTP banner to asterisks except for the "2", "0", "0"
      characters. Carriage return (CR) and linefeed (LF) characters are
      ignored."
    - Fifteen commands pass (RFC 821's seven and AUTH, EHLO, ETRN, HELP,
      SAML, SEND, SOML, STARTTLS, VRFY); any other verb is overwritten with
      C{X} of the same length, so the server answers its unknown-command
      reply ("Unsupported commands are translated into Xs, which are
      rejected by the internal server").  The mask character is the guide's
      X; that X's keep the verb's length is [P].
    - C{no allow-tls}: "The STARTTLS indication is removed" from the EHLO
      reply (the last line left ends the reply).  A STARTTLS sent anyway
      passes, as with L{starttls-strip<emulator.middlebox.starttls.StartTLSStrip>} [P].
    - EHLO keywords the ASA does not name are "others" and masked: the
      line's text becomes C{X} of the same length [P: the mask character and
      what exactly is masked are unsourced].
    - The connection is dropped (both sides closed, the offending bytes not
      passed, C{=== connection_dropped}) on a command line longer than 512
      bytes (counted with its CRLF [P]), a 101st recipient (counted per
      transaction [P]: the guide says "Connections with more than 100
      recipients"), a sender address longer than 320 bytes, or a header
      line longer than 998 bytes (without its CRLF [P]).  A body line over
      998 bytes is only logged (C{=== body_line_long}).

    @ivar commands: the verbs passed unchanged (default the fifteen).
    @ivar mask_banner: C{mask-banner}.
    @ivar allow_tls: C{allow-tls} (default false: STARTTLS removed from EHLO).
    @ivar ehlo_named: EHLO keywords that pass; the others are masked.
    @ivar mask_ehlo_others: C{match ehlo-reply-parameter others mask}.
    @ivar max_command_line: the longest command line passed, CRLF included (0: no limit).
    @ivar max_recipients: recipients per transaction before the drop (0: no limit).
    @ivar max_sender_address: the longest MAIL FROM address (0: no limit).
    @ivar max_header_line: the longest header line, CRLF excluded (0: no limit).
    @ivar max_body_line: body lines longer than this are logged (0: never).
    """

    type = "asa-esmtp"

    commands: list[str] = msgspec.field(default_factory=lambda: list(ESMTP_COMMANDS))
    mask_banner: bool = True
    allow_tls: bool = False
    ehlo_named: list[str] = msgspec.field(default_factory=lambda: list(EHLO_NAMED))
    mask_ehlo_others: bool = True
    max_command_line: Count = 512
    max_recipients: Count = 100
    max_sender_address: Count = 320
    max_header_line: Count = 998
    max_body_line: Count = 998

    def __post_init__(self):
        for i, verb in enumerate(self.commands):
            if not verb.isascii() or not verb.isalpha():
                raise invalid(f"commands[{i}]", f"{verb!r} is not an SMTP verb")
        force_setattr(self, "_allowed", frozenset(v.upper() for v in self.commands))
        force_setattr(self, "_named", frozenset(k.upper() for k in self.ehlo_named))

    # -- the server's side ------------------------------------------------

    def on_greeting(self, relay, reply: bytes) -> bytes:
        return mask_greeting(relay, reply, frozenset(b"20\r\n")) if self.mask_banner else reply

    def on_reply(self, relay, command: str, reply: bytes) -> bytes:
        if command == "DATA" and reply[:3] == b"354":
            relay.notes.update(asa_headers=True, asa_line=0)
        if command != "EHLO" or reply[:1] != b"2":
            return reply
        lines = reply.splitlines(keepends=True)
        kept = lines[:1]
        for line, keyword, text in ehlo_lines(lines[1:]):
            if keyword == "STARTTLS" and not self.allow_tls:
                relay.event("ehlo_keyword_hidden", keyword=text.decode("latin-1"), how="remove")
            elif keyword in self._named or keyword == "STARTTLS" or not self.mask_ehlo_others:
                kept.append(line)
            else:
                relay.event("ehlo_keyword_hidden", keyword=text.decode("latin-1"), how="mask")
                kept.append(line[:4] + b"X" * len(text) + line[4 + len(text):])
        return rejoin(kept)

    # -- the client's side ------------------------------------------------

    def on_command(self, relay, verb: str, line: bytes) -> bytes | None:
        if self.max_command_line and len(line) > self.max_command_line:
            relay.drop("command line length", bytes=len(line), limit=self.max_command_line)
            return None
        if not verb:
            return line
        if verb not in self._allowed:
            return x_out(relay, verb, line)
        if verb in ("MAIL", "RSET", "HELO", "EHLO"):
            relay.notes["asa_recipients"] = 0
        if verb == "MAIL" and self.max_sender_address:
            address = _address(line)
            if len(address) > self.max_sender_address:
                relay.drop("sender-address length", bytes=len(address), limit=self.max_sender_address)
                return None
        if verb == "RCPT":
            count = relay.notes.get("asa_recipients", 0) + 1
            relay.notes["asa_recipients"] = count
            if self.max_recipients and count > self.max_recipients:
                relay.drop("RCPT count", count=count, limit=self.max_recipients)
                return None
        return line

    def on_content(self, relay, data: bytes) -> None:
        notes = relay.notes
        lines = data.split(b"\n")
        for i, piece in enumerate(lines):
            length = notes.get("asa_line", 0) + len(piece)
            if i == len(lines) - 1:  # no line end yet: the line goes on in the next segment
                notes["asa_line"] = length
                break
            notes["asa_line"] = 0
            length -= piece.endswith(b"\r")
            if notes.get("asa_headers"):
                if length == 0:
                    notes["asa_headers"] = False
                elif self.max_header_line and length > self.max_header_line:
                    relay.drop("header line length", bytes=length, limit=self.max_header_line)
                    return
            elif self.max_body_line and length > self.max_body_line:
                relay.event("body_line_long", bytes=length, limit=self.max_body_line)


def _address(line: bytes) -> bytes:
    """The address of a C{MAIL FROM:<address>} line (what is between the
    brackets, or after the colon without them)."""
    rest = line.split(b":", 1)[1] if b":" in line else b""
    rest = rest.strip()
    if rest.startswith(b"<"):
        return rest[1:].split(b">", 1)[0]
    return rest.split(None, 1)[0] if rest else b""
