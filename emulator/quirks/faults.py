"""
Faults: deterministic failures at any step of a session, for testing what a
client does with them.  Postfix's smtp-sink keeps a per-command table of
errors, delays and disconnects; Toxiproxy makes each fault a small typed
unit.  A fault here is both: a quirk with a step and a few attributes.

Every fault shares the attributes of L{Fault}: the step it answers
(C{connect}, a verb, C{data_end} or C{*}), an optional pattern for the
step's argument, which occurrences (C{from}, C{times}) counted per
connection or per peer address (C{scope}), and a C{probability}.  When a
fault fires, the transcript records C{=== fault type=... step=...
occurrence=N}.

Dice are a pure function of the server's seed, the fault, the scope and
the occurrence: the core holds no random state, a run with the same seed
replays exactly, and adding one fault never shifts the dice of another.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
from collections import Counter
from typing import Annotated, ClassVar, Literal

from msgspec import Meta
from msgspec.structs import force_setattr

from emulator import schema
from emulator.core import commands, replies
from emulator.core.actions import Delay, Send
from emulator.core.hooks import Quirk
from emulator.schema import Count, invalid

_STEP = re.compile(r"\A(?:\*|\.|[A-Za-z][A-Za-z0-9_-]*)\Z")
_ALIASES = {".": "DATA_END"}
#: Every verb the emulator or an EHLO keyword names.
_VERBS = tuple(dict.fromkeys((*commands.VERBS, *commands.KEYWORD_VERBS.values())))
#: The steps a fault knows, upper case, as they are written.
STEPS = {"CONNECT": "connect", "DATA_END": "data_end", **{verb: verb for verb in _VERBS}}
# A step this close to a known one is a misspelling (RCTP, MIAL, STARTLS: one
# letter swapped, lost or doubled in a verb); a verb further from all of them
# is a product's own command that a fault may answer (XYZZY, X-EXPS).
_MISSPELT = 0.75
# Reply fields a fault can fill in: what is known at any step.
_FIELDS = {"hostname", "version", "peer_ip", "peer_port", "date", "verb", "argument"}
_tokens = itertools.count(1)
#: Seconds, 0 or more (an integer stays one: see L{schema.number}).
Seconds = schema.number(ge=0)


def parse_reply(key: str, text) -> replies.Reply:
    """A reply template from a fault attribute, limited to the fields a fault knows."""
    try:
        reply = replies.parse(text)
    except replies.ReplyError as e:
        raise invalid(key, str(e)) from None
    unknown = {f for line in reply.lines for f in re.findall(r"(?<!\{)\{(\w+)\}", line)} - _FIELDS
    if unknown:
        raise invalid(key, f"field {{{sorted(unknown)[0]}}} is not known at every step; "
                           f"a fault may use {', '.join(sorted(_FIELDS))}")
    return reply


def _step(command: str) -> str:
    """The step C{command} names, upper case, or L{SchemaError<emulator.schema.SchemaError>}."""
    if not _STEP.match(command):
        raise invalid("command", "must be connect, a verb, data_end, . or *")
    step = _ALIASES.get(command, command.upper())
    if step != "*" and step not in STEPS:
        guess = schema.did_you_mean(step, STEPS, cutoff=_MISSPELT)
        if guess:
            raise invalid("command", f"unknown step {command!r}; {guess}known steps: connect, data_end, ., *, "
                                     f"{', '.join(_VERBS)}")
    return step


class Fault(schema.Record, Quirk):
    """What every fault has: where and when it fires.

    @ivar command: the step: C{connect} (the greeting), a verb (C{RCPT}),
        C{data_end} or C{.} (the end of the message data, smtp-sink's C{.}),
        or C{*} (every step).  A verb the emulator has no handler for is
        allowed (a product's own command), unless it is so close to a known
        step that it must be a misspelling (C{RCTP}): that is refused.
    @ivar match: a regular expression searched in the step's argument (the
        message itself at C{data_end}); the fault only sees steps it matches.
    @ivar from: the first matching occurrence to fire on, counted from 1.
    @ivar times: how many matching occurrences from there; 0 means all.
    @ivar scope: where occurrences are counted: C{connection}, or C{peer}
        (across the connections of one peer IP address, until the server's
        state is reset), so "fail the first 2 deliveries" is one entry.
    @ivar probability: the chance, from 0 to 1, that a due occurrence fires;
        the dice are seeded (profile C{seed:}, C{--seed}), so a run replays.
    """

    command: str = "*"
    match: str | None = None
    from_: Annotated[int, Meta(ge=1)] = 1
    times: Count = 0
    scope: Annotated[Literal["connection", "peer"], Meta(description="connection or peer")] = "connection"
    probability: schema.number(ge=0, le=1) = 1.0

    #: the attribute that C{--fault 'STEP:TYPE=VALUE'} sets
    primary: ClassVar[str | None] = None
    #: True for faults that change how a reply is written; the reply after
    #: DATA is written by the host once the message is stored, so these
    #: cannot take C{data_end}
    shapes_writes: ClassVar[bool] = False

    def __post_init__(self):
        step = _step(self.command)
        if self.shapes_writes and step == "DATA_END":
            raise invalid("command", f"{self.type} cannot act on the reply after DATA "
                                     "(the host writes it once the message is stored); use delay")
        force_setattr(self, "command", step)
        try:
            force_setattr(self, "_pattern", re.compile(self.match) if self.match is not None else None)
        except re.error as e:
            raise invalid("match", f"not a regular expression: {e}") from None
        if hasattr(self, "reply"):  # checked once, filled in at each firing
            force_setattr(self, "_reply", parse_reply("reply", self.reply))
        force_setattr(self, "_token", next(_tokens))  # this instance's counters

    # -- the steps -------------------------------------------------------

    def on_connect(self, conn) -> bool:
        return self._fires(conn, "CONNECT", b"") and self.act(conn, b"")

    def before_command(self, conn, verb: str, arg: bytes) -> bool:
        return self._fires(conn, verb, arg) and self.act(conn, arg)

    def before_data_end(self, conn, data: bytes) -> bool:
        return self._fires(conn, "DATA_END", data) and self.act(conn, b"")

    def act(self, conn, arg: bytes) -> bool:
        """The fault fired at this step: do it.  Return True if it answered
        instead of the server."""
        return False

    # -- matching --------------------------------------------------------

    def _fires(self, conn, step: str, arg: bytes) -> bool:
        if self.command != "*" and self.command != step:
            return False
        if self._pattern is not None and not self._pattern.search(arg.decode("latin-1")):
            return False
        scope, count = self._count(conn)
        if count < self.from_ or (self.times and count >= self.from_ + self.times):
            return False
        if self.probability < 1 and self.draw(conn, scope, count, "fire") >= self.probability:
            return False
        conn.session.notes[("fault_at", self._token)] = (conn.steps, scope, count)
        conn.event("fault", type=self.type, step=step, occurrence=count)
        return True

    def _count(self, conn) -> tuple[str, int]:
        """Count this occurrence; return the scope's name and the count."""
        if self.scope == "peer":
            counts = conn.server.shared.setdefault("fault_counts", Counter())
            scope = conn.session.peer_ip
            key = (self._token, scope)
        else:
            counts = conn.session.notes.setdefault("fault_counts", Counter())
            scope = f"connection {_ordinal(conn)}"
            key = self._token
        counts[key] += 1
        return scope, counts[key]

    def draw(self, conn, scope: str, count: int, purpose: str) -> float:
        """A number in [0, 1) that depends only on the seed, this fault's
        attributes, the scope, the occurrence and the purpose."""
        return random.Random(f"{conn.server.seed}/{self!r}/{scope}/{count}/{purpose}").random()

    def fired_here(self, conn) -> bool:
        """The fault fired at the connection's current step."""
        return conn.session.notes.get(("fault_at", self._token), (0,))[0] == conn.steps

    def fill(self, conn, reply: replies.Reply, arg: bytes) -> replies.Reply:
        verb = conn.step if conn.step not in ("CONNECT", "DATA_END") else ""
        return conn.fill(reply, verb=verb, argument=arg.decode("latin-1"))


def _ordinal(conn) -> int:
    """The connection's number on its server, given at its first fault
    (in practice at connect), counted in the server's resettable state."""
    notes = conn.session.notes
    if "fault_connection" not in notes:
        shared = conn.server.shared
        shared["fault_connections"] = notes["fault_connection"] = shared.get("fault_connections", 0) + 1
    return notes["fault_connection"]


# -- answering instead of the server ----------------------------------------


class ReplyFault(Fault, kw_only=True):
    """Answer the step with a given reply instead of running it (smtp-sink's
    per-command hard and soft errors).  At C{data_end} the message is then
    not delivered, so "fail the first 2 deliveries, then accept" is
    C{data_end:reply=451 4.3.0 Try later:times=2:scope=peer}.

    Source: Postfix smtp-sink (C{-h}/C{-s}/C{-q} and C{.} as a command);
    issue 7 (deterministic failures for retry tests).

    @ivar reply: the reply, with its code; a list for a multi-line reply (C{|} between lines in C{--fault}).
        Fields: C{{hostname}}, C{{version}}, C{{peer_ip}}, C{{peer_port}},
        C{{date}}, C{{verb}}, C{{argument}}.
    """

    type = "reply"

    reply: str | list[str]
    primary = "reply"

    def act(self, conn, arg: bytes) -> bool:
        conn.send_reply(self.fill(conn, self._reply, arg))
        return True


class Disconnect(Fault):
    """End the connection at the step instead of answering it.

    Source: RFC 5321 section 3.8 (421 and close when the service must shut
    down); smtp-sink's disconnect and 421-close flags; Twisted's
    C{abortConnection}, which sets SO_LINGER 0 so that close sends a TCP reset.

    @ivar mode: C{reply} (send C{reply}, then close cleanly), C{close}
        (close without a word: FIN) or C{reset} (TCP reset: RST; replies
        not yet written are dropped).
    @ivar reply: what C{reply} mode sends.
    """

    type = "disconnect"

    mode: Annotated[Literal["reply", "close", "reset"], Meta(description="reply, close or reset")] = "reply"
    reply: str | list[str] = "421 {hostname} Service not available, closing transmission channel"
    primary = "mode"

    def act(self, conn, arg: bytes) -> bool:
        if self.mode == "reply":
            conn.send_reply(self.fill(conn, self._reply, arg))
        conn.close(abort=self.mode == "reset")
        return True


class Stall(Fault):
    """Fall silent at the step: answer nothing more and ignore all further
    input, until the client gives up (or the profile's idle timeout ends
    the connection).  Toxiproxy's C{timeout} toxic with no timeout.

    Source: Toxiproxy toxics/timeout.go; smtp-sink's C{-t} command timeout;
    RFC 5321 section 4.5.3.2 (the client's timeouts this tests).
    """

    type = "stall"

    def act(self, conn, arg: bytes) -> bool:
        conn.stall()
        return True


# -- changing when and how the reply is written ------------------------------


class DelayFault(Fault):
    """Wait before answering the step, reading nothing meanwhile
    (Toxiproxy's C{latency}, smtp-sink's C{-w}).

    Source: Toxiproxy toxics/latency.go; Postfix smtp-sink C{-w delay}.

    @ivar seconds: the wait, in seconds.
    @ivar jitter: up to this many seconds added or taken off at random
        (uniform, seeded; never below 0).
    """

    type = "delay"

    seconds: Seconds = 1.0
    jitter: Seconds = 0.0
    primary = "seconds"

    def act(self, conn, arg: bytes) -> bool:
        seconds = self.seconds
        if self.jitter:
            _, scope, count = conn.session.notes[("fault_at", self._token)]
            u = self.draw(conn, scope, count, "jitter")
            seconds = max(0.0, seconds + (2 * u - 1) * self.jitter)
        conn.send(Delay(round(seconds, 6)))
        return False


class _Shaper(Fault):
    """A fault that changes how the replies of the steps it fires on are written."""

    shapes_writes: ClassVar[bool] = True

    def shape_reply(self, conn, name: str, actions: list) -> list:
        return self.shape(conn, actions) if self.fired_here(conn) else actions

    def shape(self, conn, actions: list) -> list:
        return actions


def _cut(actions: list, cuts, pause: float) -> list:
    """Each Send cut at the offsets C{cuts(data)}, with a Delay between parts."""
    out = []
    for action in actions:
        if type(action) is not Send:
            out.append(action)
            continue
        data = action.data
        bounds = [0, *(c for c in cuts(data) if 0 < c < len(data)), len(data)]
        for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
            if i:
                out.append(Delay(pause))
            out.append(Send(data[start:end]))
    return out


class Split(_Shaper):
    """Write the reply in several TCP writes: after each line (a multi-line
    EHLO over several segments) or at chosen byte offsets.  Clients that
    expect a whole reply per C{recv()} break.

    Source: aiosmtpd issue 389 (a client that failed when EHLO lines came in
    separate packets); postal pull request 3599 (AspEmail.NET hung on a
    greeting whose CRLF came in a second write); emailjs pull request 140.

    @ivar at: C{lines} (cut after every line) or a list of byte offsets
        into the reply.
    @ivar pause: seconds between writes; 0 sends the next part in a later
        reactor turn, still as its own TCP write.
    """

    type = "split"

    at: str | list[int] = "lines"
    pause: Seconds = 0.0
    primary = "at"
    boundary_sensitive = True

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.at, str) and self.at != "lines":
            raise invalid("at", "must be lines or a list of byte offsets")
        if isinstance(self.at, list):
            if not self.at or any(b <= a for a, b in zip([0, *self.at], self.at)):
                raise invalid("at", "offsets must be increasing and above 0")
            force_setattr(self, "at", list(self.at))

    def shape(self, conn, actions: list) -> list:
        if self.at == "lines":
            return _cut(actions, lambda data: [m.end() for m in re.finditer(b"\n", data)], self.pause)
        return _cut(actions, lambda data: self.at, self.pause)


class Tarpit(_Shaper):
    """Write the reply a few bytes at a time, with a pause after each
    piece (Toxiproxy's C{slicer} and C{bandwidth}, the spam-trap tarpit).

    Source: Toxiproxy toxics/slicer.go; RFC 5321 section 4.5.3.2 (the
    client's per-reply timeouts this tests).

    @ivar size: bytes per write.
    @ivar interval: seconds between writes.
    """

    type = "tarpit"

    size: Annotated[int, Meta(ge=1)] = 1
    interval: Seconds = 1.0
    primary = "size"
    boundary_sensitive = True

    def shape(self, conn, actions: list) -> list:
        return _cut(actions, lambda data: range(self.size, len(data), self.size), self.interval)


class Glue(_Shaper):
    """Hold the replies of C{count} consecutive steps, from the one the
    fault fires on, and write them in one TCP write.  A client that sends
    the next command without waiting (pipelining, RFC 2920; or EHLO before
    the greeting) then reads several replies in one C{recv()}; one that
    waits for each reply waits until its own timeout.  Held replies go out
    before the end of DATA; do not glue across STARTTLS or QUIT.

    Source: CERT-Polska/mailgoose pull request 253 (a scanner that expected
    the greeting and the EHLO reply in separate reads); RFC 2920 section 3.2
    (a server may group pipelined replies).

    @ivar count: how many steps' replies go out together.
    """

    type = "glue"

    count: Annotated[int, Meta(ge=2)] = 2
    primary = "count"
    boundary_sensitive = True

    def _fires(self, conn, step: str, arg: bytes) -> bool:
        fired = super()._fires(conn, step, arg)
        if fired and (self._token, "held") not in conn.session.notes:
            conn.session.notes[self._token, "held"] = (conn.steps + self.count - 1, bytearray())
        return fired

    def before_data_end(self, conn, data: bytes) -> bool:
        held = conn.session.notes.pop((self._token, "held"), None)
        if held and held[1]:
            conn.send(Send(bytes(held[1])))
        return super().before_data_end(conn, data)

    def shape_reply(self, conn, name: str, actions: list) -> list:
        held = conn.session.notes.get((self._token, "held"))
        if held is None:
            return actions
        last, data = held
        rest = []
        for action in actions:
            if type(action) is Send:
                data += action.data
            else:
                rest.append(action)
        if conn.steps < last:
            return rest
        del conn.session.notes[self._token, "held"]
        return [*rest, Send(bytes(data))]


class Inject(_Shaper, kw_only=True):
    """Send extra reply lines right after the step's reply, in the same
    write.  After STARTTLS's 220 this is the response-injection attack on
    clients (the NO STARTTLS family): a man in the middle appends plaintext
    that a client which keeps its read buffer across the TLS switch takes
    for the first reply inside TLS.  A safe client discards it (RFC 3207
    section 6 requires it of servers; the client side is the mirror).

    Source: libetpan issue 386 and nodemailer pull request 1835 (clients
    that kept injected bytes across STARTTLS); CVE-2011-0411 (the server side).

    @ivar reply: the injected reply, with its code; a list for several lines.
    """

    type = "inject"

    reply: str | list[str]
    primary = "reply"
    boundary_sensitive = True  # its point is sharing the reply's TCP write

    def shape(self, conn, actions: list) -> list:
        extra = replies.render(self.fill(conn, self._reply, b""))
        sends = [i for i, a in enumerate(actions) if type(a) is Send]
        if not sends:
            return [*actions, Send(extra)]
        last = sends[-1]
        return [*actions[:last], Send(actions[last].data + extra), *actions[last + 1:]]


# -- framing: how the reply itself is spelled --------------------------------


class _Framing(Fault):
    """A fault that changes the spelling of the replies of the steps it fires on."""

    def transform_reply(self, conn, name: str, reply):
        return self.frame(reply) if self.fired_here(conn) else reply

    def frame(self, reply):
        return reply


class BareLF(_Framing):
    """End each reply line with a bare LF instead of CRLF.

    Source: RFC 5321 section 2.3.8 and 4.2 (replies end in CRLF); clients
    that split on CRLF only then never see the end of a reply.
    """

    type = "bare_lf"

    def frame(self, reply):
        return dataclasses.replace(reply, line_end="\n")


class MissingSpace(_Framing):
    """Write something other than a space after the code of a reply's last
    line: nothing (C{250OK}), or a hyphen (C{250-OK}: the reply never ends
    for the client, which waits for another line).

    Source: RFC 5321 section 4.2.1 (the last line is the code, a space, and
    text); smtp4dev issue 5 (a malformed EHLO reply sent Thunderbird into a
    loop).

    @ivar separator: what follows the code instead of the space: an empty
        string or C{-}.
    """

    type = "missing_space"

    separator: Annotated[Literal["", "-"], Meta(description="an empty string or -")] = ""
    primary = "separator"

    def frame(self, reply):
        return dataclasses.replace(reply, last_separator=self.separator)


class TrailingSpace(_Framing):
    """Decide whether a reply with no text keeps the space after its code:
    C{"334 "} or C{"334"}.  Both broke real clients around AUTH.

    Source: RFC 4954 section 4 (C{"334" SP [base64]}); RFC 5321 section
    4.2 (clients should accept the code alone, with or without the space);
    mirage/colombe issue 26 and enough_mail issue 284 (a bare C{334} broke
    them); greenmail pull request 367 (an extra space after 334 broke the
    Vert.x mail client); nodemailer/smtp-server pull request 172 (SOGo
    needed C{"334 "}).

    @ivar space: true writes C{"334 "}, false writes C{"334"}.
    """

    type = "trailing_space"

    space: bool = False
    primary = "space"

    def frame(self, reply):
        if not reply.lines or reply.lines[-1]:
            return reply
        return dataclasses.replace(reply, bare=not self.space)


#: The fault family, in the order C{emulator faults} documents it.
TYPES = (ReplyFault, Disconnect, Stall, DelayFault, Split, Tarpit, Glue, Inject, BareLF, MissingSpace, TrailingSpace)
