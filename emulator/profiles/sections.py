"""
What a server profile file may hold, named in one place: every top-level key
with its type, the modules that own the sections (C{tls:}, C{auth:},
C{middlebox:}, C{relay:}), the quirk and middlebox families, and the verb table (the
core's verbs and authentication's).  Nothing registers itself elsewhere: a
new section, family or verb module is added here.

L{Document} is read by L{emulator.schema}; L{emulator.profiles.loader} turns
it into a L{Profile<emulator.profiles.loader.Profile>}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from msgspec import Meta

from emulator import middlebox, quirks
from emulator.auth import mechanisms
from emulator.auth.mechanisms import AuthSettings
from emulator.core import commands
from emulator.core.relay import RelayRules
from emulator.middlebox import Middlebox
from emulator.quirks import Quirk
from emulator.schema import Count, Family, Timeout, keys_called
from emulator.tls.config import TLSConfig

#: Every verb a profile's C{commands:} may enable: verb -> (handler, the
#: catalogue replies it may send).
VERBS = {**commands.VERBS, **mechanisms.VERB_TABLE}

#: The kinds written C{{type, attributes}} in a server profile.
FAMILIES: tuple[Family, ...] = (quirks.QUIRKS, middlebox.MIDDLEBOXES)


def _text(description: str):
    return Annotated[str, Meta(description=description)]


Catalogue = Annotated[dict[str, str | list[str]], Meta(description="a mapping of reply names to quoted texts")]


@dataclass(frozen=True)
class Limits:
    """Numeric limits, with RFC 5321 section 4.5.3 defaults.

    Every limit but the timeouts may be 0 for "no limit"; a timeout is a
    number of seconds above 0 (0 would turn it off, which the docs rule out).

    @ivar command_line: longest command line in bytes, CRLF included (512,
        RFC 5321 4.5.3.1.4).
    @ivar text_line: longest line of message text in bytes, CRLF included
        (1000, 4.5.3.1.6); a message with a longer line is refused at its end.
    @ivar message_size: largest message in bytes (0: IMS's C{SIZE 0}).
    @ivar recipients: most recipients per message (RFC minimum 100, 4.5.3.1.8).
    @ivar commands: most commands in one session; then C{too_many_commands}
        and the connection closes.
    @ivar bad_commands: unknown, over-long or malformed commands before
        C{too_many_errors} and a close (Postfix's smtpd_hard_error_limit, 20).
    @ivar connections: most connections at once per listener; one more gets
        C{too_many_connections} and is closed.
    @ivar idle_timeout: seconds of silence between commands before the
        server gives up (5 minutes, 4.5.3.2.7).
    @ivar data_timeout: seconds of silence while a message is coming (3
        minutes, the data-block timeout of 4.5.3.2.5).
    """

    command_line: Count = 512
    text_line: Count = 1000
    message_size: Count = 0
    recipients: Count = 100
    commands: Count = 10000
    bad_commands: Count = 20
    connections: Count = 1000
    idle_timeout: Timeout = 300.0
    data_timeout: Timeout = 180.0

    def replies_needed(self) -> set[str]:
        """Catalogue replies the enabled limits may send."""
        return {name for name, limit in (("data_line_too_long", self.text_line),
                                         ("too_many_commands", self.commands),
                                         ("too_many_errors", self.bad_commands),
                                         ("too_many_connections", self.connections)) if limit}


@dataclass(frozen=True)
class Xexch50:
    """How XEXCH50 is answered: Exchange's per-message properties between
    its servers (KB 812455).

    @ivar blob: false: one fixed reply, C{xexch50}, whatever comes (the 5.x
        IMS personas).  True, as Exchange 2000/2003: without a login
        C{xexch50} (C{504 Need to authenticate first}, KB 843106); after one,
        C{xexch50_ready} (C{354 Send binary data}), a blob of the announced
        size, then C{xexch50_ok}; a malformed or oversized command gets
        C{xexch50_syntax}.
    @ivar command: longest XEXCH50 command line in bytes, CRLF included
        (KB 812455: "not longer than 50 bytes"); 0: no limit.
    @ivar max_blob: largest blob in bytes (KB 812455: "cannot be greater
        than 1 gigabyte"); 0: no limit.
    @ivar login: with C{blob}, whether a login must come first (as after
        MS03-046, KB 843106); C{false}: any client's blob is taken, as the
        5.x IMS did before the patch (CVE-2003-0714).
    """

    blob: bool = False
    command: Count = 50
    max_blob: Count = 1 << 30
    login: bool = True

    def replies_needed(self, verbs) -> set[str]:
        """Catalogue replies the blob mode adds to XEXCH50's."""
        if self.blob and "XEXCH50" in verbs:
            return {"xexch50_ready", "xexch50_ok", "xexch50_syntax", "need_mail"}
        return set()


@dataclass(frozen=True)
class Document:
    """The keys of a server profile file (after C{extends:} is resolved).
    Every key is optional here; the loader requires the ones a runnable
    profile needs (L{REQUIRED})."""

    name: str = ""
    abstract: bool = False
    extends: _text("a profile name") | None = None
    role: _text("server (the default; role: client marks a sender persona, emulator.sender.profile)") = "server"
    product: str = ""
    version: _text("a quoted string (YAML reads 5.5 as a number)") = ""
    describes: str = ""
    notes: _text("a string") = ""
    sources: tuple[str, ...] = ()
    hostname: str = ""
    commands: Annotated[tuple[str, ...], Meta(description="a list of verbs")] = ()
    ehlo_keywords: tuple[str, ...] = ()
    replies: Catalogue = field(default_factory=dict)
    limits: Annotated[Limits, keys_called("limit")] = Limits()
    require_helo: bool = True
    helo_resets: Annotated[bool, Meta(description="true or false (false: KB 251581's repeated HELO keeps the "
                                                  "transaction)")] = True
    xexch50: Xexch50 = Xexch50()
    quirks: Annotated[tuple[Quirk, ...], Meta(description="a list of {type, attributes}")] = ()
    seed: Annotated[int, Meta(description="an integer (the seed of the quirks' probabilities)")] | None = None
    # The sections, each owned by its module.
    tls: TLSConfig = TLSConfig()
    auth: AuthSettings = AuthSettings()
    middlebox: Middlebox | None = None
    relay: RelayRules | None = None


#: The keys a runnable (not abstract) profile must have.
REQUIRED = ("product", "version", "describes", "hostname", "commands", "replies")


def replies_needed(verbs, xexch50: Xexch50 = Xexch50()) -> set[str]:
    """Every catalogue reply a profile with these verbs (and this XEXCH50
    mode) may send."""
    return set(commands.CORE_REPLIES).union(*(VERBS[verb][1] for verb in verbs), xexch50.replies_needed(verbs))
