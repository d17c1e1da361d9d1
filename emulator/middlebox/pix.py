"""Cisco PIX Mail Guard (C{fixup protocol smtp}), PIX 4.x to 6.x."""

from __future__ import annotations

import msgspec
from msgspec.structs import force_setattr

from emulator.middlebox.base import Middlebox
from emulator.schema import Record, invalid

# RFC 821 section 4.5.1's minimum implementation: all that Mail Guard passed.
RFC821_MINIMUM = ("HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT")


def mask_greeting(relay, reply: bytes, keep: frozenset[int]) -> bytes:
    """The greeting with each byte of its text that is not in C{keep} made
    C{*}, each line's code and separator kept (the PIX's and the ASA's
    C{mask-banner})."""
    out = []
    for line in reply.splitlines(keepends=True):
        head = 4 if line[:3].isdigit() else 0
        out.append(line[:head] + bytes(b if b in keep else 0x2A for b in line[head:]))
    masked = b"".join(out)
    relay.event("banner_masked", bytes=len(masked))
    return masked


def x_out(relay, verb: str, line: bytes) -> bytes:
    """The command line with its verb overwritten by C{X} of the same
    length, arguments kept ("Unsupported commands are translated into Xs")."""
    start = len(line) - len(line.lstrip())
    end = start + len(line.split(None, 1)[0])
    relay.event("command_masked", verb=verb)
    return line[:start] + b"X" * (end - start) + line[end:]


class PIXMailguard(Record, Middlebox):
    """Cisco PIX Mail Guard in front of an SMTP server.

    - The server's banner is masked: each byte of its text becomes C{*}
      except the characters of C{banner_keep} and CR/LF, so the length is
      unchanged; each line's reply code and the separator after it stay.
      Sources: AppRiver KB a238 / MS KB 320027 ("changes most characters in
      the SMTP banner to asterisks. The exceptions to this are the "2"
      character, the "0" character ..."; PIX 5.1 and later), KB Q295725's
      IMS log (C{220 *********0****...}), nmap's C{^220 \\*{10,40}\\r\\n}
      ("Cisco PIX sanatized smtpd"); docs/sources.md §8.1.  The
      result passes Postfix's PIX test (smtp_proto.c, smtp_helo():
      C{resp->str[strspn(resp->str, "20 *\\t\\n")] == 0}) for a one-line
      banner; a multi-line banner keeps its C{220-} and so does not [P].
    - Only the seven RFC 821 commands pass (Cisco course text: "HELO, MAIL,
      RCPT, DATA, RSET, NOOP, and QUIT"); any other verb is overwritten with
      C{X} of the same length, arguments kept, so the server answers its
      unknown-command reply: C{500 Unrecognized command} from a 5.5 IMS to
      the X'd C{ehlo} (KB Q295725; cisco-nsp 2004: "Packet lengths are never
      changed"; ASA guide: "Unsupported commands are translated into Xs").
    - CSCds90792 (KB Q295725): "If for any reason the CRLF.CRLF terminating
      string is broken into separate packets during transmission, Mailguard
      rejects it and does not pass it to the mail server."  With
      C{dotcrlf_bug}, a segment that completes a CRLF.CRLF begun in an
      earlier segment is dropped: the server never sees the end of the
      message, never answers 250, and the client times out.  Postfix reads
      the bug more narrowly ("Some PIX firewall versions require flush
      before ".<CR><LF>" so it does not span a packet boundary", smtp_proto.c)
      and its C{delay_dotcrlf} workaround sends C{.CRLF} alone after a pause;
      C{lone_dotcrlf_passes} models that reading.

    @ivar commands: the verbs passed unchanged (default the RFC 821 seven).
    @ivar mask_banner: mask the greeting (false: PIX with masking disabled).
    @ivar banner_keep: the banner characters left in place besides CR/LF.
    @ivar dotcrlf_bug: drop a segment that completes a split CRLF.CRLF.
    @ivar lone_dotcrlf_passes: with the bug, a segment starting with the
        whole C{.CRLF} still passes (Postfix's reading of the bug).
    """

    type = "pix-mailguard"
    boundary_sensitive = True  # dotcrlf_bug depends on segment boundaries

    commands: list[str] = msgspec.field(default_factory=lambda: list(RFC821_MINIMUM))
    mask_banner: bool = True
    banner_keep: str = "20"
    dotcrlf_bug: bool = True
    lone_dotcrlf_passes: bool = False

    def __post_init__(self):
        for i, verb in enumerate(self.commands):
            if not verb.isascii() or not verb.isalpha():
                raise invalid(f"commands[{i}]", f"{verb!r} is not an SMTP verb")
        try:
            keep = self.banner_keep.encode("ascii")
        except UnicodeEncodeError:
            raise invalid("banner_keep", "must be ASCII characters") from None
        force_setattr(self, "_allowed", frozenset(v.upper() for v in self.commands))
        force_setattr(self, "_keep", frozenset(keep + b"\r\n"))

    def on_greeting(self, relay, reply: bytes) -> bytes:
        return mask_greeting(relay, reply, self._keep) if self.mask_banner else reply

    def on_command(self, relay, verb: str, line: bytes) -> bytes:
        if not verb or verb in self._allowed:
            return line
        return x_out(relay, verb, line)

    def on_split_terminator(self, relay, segment: bytes, lone: bool) -> bool:
        return self.dotcrlf_bug and not (lone and self.lone_dotcrlf_passes)


class PIXMailguardNoop(PIXMailguard):
    """Cisco PIX Mail Guard from PIX 5.1 on, which turned a refused verb into
    a C{NOOP} instead of X's: the server answers it with its NOOP reply.

    - Sources: Cisco's community article "Mail traffic does not pass through
      a PIX firewall with ESMTP": Mail Guard "converts any such commands into
      NOOP commands"; the cisco-nsp post of November 2004: refused commands
      are "replaced with NOOP (Varies by version, but certainly on 5.1ish
      and later) which will generate a "200 OK" [sic] response from the mail
      server ... the PIX can *NOT* generate a 502 response itself"; MS KB
      320027: "When you send an EHLO command to the Exchange server, you
      receive a "Command unrecognized" or an "OK" response";
      docs/sources.md §8.2.
    - So C{EHLO} gets the server's one-line NOOP reply (C{250 OK} from a 5.5
      IMS), a reply with no extensions; C{STARTTLS} and C{AUTH} become NOOPs
      answered 250, the client never learns that they were not carried out.
    - The bytes the server receives are [P]: the sources say NOOP and that
      packet lengths never change, not how the line is rewritten.  The
      emulator writes C{NOOP} over the start of the line and spaces over the
      rest of it up to its line end, so the length is kept (a line shorter
      than C{NOOP} grows to it).
    - The banner is masked as by L{PIXMailguard}.  CSCds90792 (the split
      CRLF.CRLF) was fixed in "later PIX releases" (KB Q295725); which
      release had both is unsourced, so C{dotcrlf_bug} is off by default [P].
    """

    type = "pix-mailguard-noop"

    dotcrlf_bug: bool = False

    def on_command(self, relay, verb: str, line: bytes) -> bytes:
        if not verb or verb in self._allowed:
            return line
        body = line.rstrip(b"\r\n")
        relay.event("command_noop", verb=verb)
        return b"NOOP".ljust(len(body), b" ") + line[len(body):]
