"""Fault quirks in memory: one transcript test per fault type, and the rules
they share (steps, from/times, scope, probability and seed)."""

import pytest

from emulator.quirks.spec import parse
from emulator.testing.harness import Harness
from emulator.core.connection import Server
from emulator.profiles import loader as profiles

BANNER = b"220 mail.example.test ESMTP Server (Microsoft Exchange Internet Mail Service 5.5.2653.13) ready\r\n"


def _plain_ehlo():
    h = Harness("ims55sp4")
    h.connect()
    return h.send(b"EHLO c\r\n")


EHLO = _plain_ehlo()  # the profile's own reply, without faults
LAST = EHLO.splitlines(keepends=True)[-1]  # "250 XAUTH\r\n" today
TRANSACTION = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n"


def harness(*specs, profile="ims55sp4", **kwargs):
    h = Harness(profile, faults=[parse(spec) for spec in specs], **kwargs)
    h.connect()
    return h


def writes(h):
    """The server's writes, one item per Send action."""
    return [r.data for r in h.transcript.records if r.dir == "s"]


# -- reply -------------------------------------------------------------------


def test_reply_answers_the_first_two_rcpts_then_the_server_does():
    """rcpt:reply=...:times=2 refuses RCPT twice on the connection; the third runs normally."""
    h = harness("rcpt:reply=452 4.5.3 Too many recipients:times=2")
    h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\n")
    assert h.send(b"RCPT TO:<1@d>\r\n") == b"452 4.5.3 Too many recipients\r\n"
    assert h.send(b"RCPT TO:<2@d>\r\n") == b"452 4.5.3 Too many recipients\r\n"
    assert h.send(b"RCPT TO:<3@d>\r\n") == b"250 OK - Recipient <3@d>\r\n"
    assert h.conn.envelope.recipients == [b"3@d"]
    assert "=== fault type=reply step=RCPT occurrence=2\n<- 452 4.5.3 Too many recipients" in h.human()


def test_reply_from_and_match_pick_the_occurrences():
    """match filters the argument; from/times count only the matching occurrences."""
    h = harness("rcpt:reply=550 5.1.1 {argument}: no such user:match=@bad\\.example:from=2:times=1")
    h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\n")
    out = h.send(b"RCPT TO:<x@bad.example>\r\nRCPT TO:<y@good.example>\r\nRCPT TO:<z@bad.example>\r\n"
                 b"RCPT TO:<w@bad.example>\r\n")
    assert out == (b"250 OK - Recipient <x@bad.example>\r\n250 OK - Recipient <y@good.example>\r\n"
                   b"550 5.1.1 TO:<z@bad.example>: no such user\r\n250 OK - Recipient <w@bad.example>\r\n")


def test_reply_at_connect_replaces_the_greeting():
    """connect:reply answers the connection with a multi-line 554 instead of the banner."""
    h = Harness("ims55sp4", faults=[parse("connect:reply=554-{hostname} busy|554 try later")])
    assert h.connect() == b"554-mail.example.test busy\r\n554 try later\r\n"


def test_reply_at_data_end_refuses_the_message_and_ends_the_transaction():
    """data_end:reply answers the end of DATA; the message is not delivered, the next one is."""
    h = harness("data_end:reply=451 4.3.0 Try again later:times=1")
    h.send(b"HELO c\r\n")
    assert h.send(TRANSACTION).endswith(b"354 Send data.  End with CRLF.CRLF\r\n451 4.3.0 Try again later\r\n")
    assert h.messages == [] and h.conn.envelope.sender is None
    assert h.send(TRANSACTION).endswith(b"250 OK\r\n") and len(h.messages) == 1


def test_dot_is_data_end():
    """'.' names the end of DATA as smtp-sink does."""
    assert parse(".:reply=554 no").command == parse("data_end:reply=554 no").command == "DATA_END"


def test_scope_peer_counts_across_connections_of_one_address():
    """scope=peer: 'fail the first 2 deliveries, then accept' spans connections of one peer IP."""
    server = Server(profiles.load("ims55sp4"))
    server.set_faults([parse("data_end:reply=451 4.3.0 Try again later:times=2:scope=peer")])
    results = []
    for port in (1000, 1001, 1002):
        h = Harness(None, server=server, peer=("192.0.2.10", port))
        h.connect()
        results.append(h.send(b"HELO c\r\n" + TRANSACTION).splitlines()[-1])
    other = Harness(None, server=server, peer=("192.0.2.99", 5))
    other.connect()
    assert results == [b"451 4.3.0 Try again later", b"451 4.3.0 Try again later", b"250 OK"]
    assert other.send(b"HELO c\r\n" + TRANSACTION).endswith(b"451 4.3.0 Try again later\r\n")
    server.reset()
    again = Harness(None, server=server, peer=("192.0.2.10", 1003))
    again.connect()
    assert again.send(b"HELO c\r\n" + TRANSACTION).endswith(b"451 4.3.0 Try again later\r\n")


def test_reply_override_keeps_working_as_the_reply_fault():
    """The older reply_override spelling builds the same behaviour (occurrence is from)."""
    from emulator import quirks

    quirk = quirks.build({"type": "reply_override",
                          "attributes": {"command": "noop", "reply": "421 busy", "occurrence": 2}})
    h = Harness("ims55sp4", faults=[quirk])
    h.connect()
    assert h.send(b"NOOP\r\nNOOP\r\nNOOP\r\n") == b"250 OK\r\n421 busy\r\n250 OK\r\n"
    with pytest.raises(quirks.QuirkError) as error:
        quirks.build({"type": "reply_override", "attributes": {"command": "x", "reply": "250 ok", "occurrence": 0}})
    assert error.value.key == "attributes.occurrence"


# -- disconnect and stall --------------------------------------------------------


def test_disconnect_reply_sends_421_and_closes():
    """mode reply: the 421 text, then a clean close; later input is ignored."""
    h = harness("mail:disconnect=reply")
    h.send(b"HELO c\r\n")
    assert h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n") == (
        b"421 mail.example.test Service not available, closing transmission channel\r\n")
    assert h.closed == "close"


def test_disconnect_close_says_nothing():
    """mode close: no reply, a clean close (FIN)."""
    h = harness("rcpt:disconnect=close")
    h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\n")
    assert h.send(b"RCPT TO:<c@d>\r\n") == b"" and h.closed == "close"


def test_disconnect_reset_aborts_at_the_end_of_data_without_delivering():
    """mode reset at data_end: Close(abort=True), a TCP reset; the message is not delivered."""
    h = harness("data_end:disconnect=reset")
    h.send(b"HELO c\r\n")
    assert h.send(TRANSACTION).endswith(b"354 Send data.  End with CRLF.CRLF\r\n")
    assert h.closed == "abort" and h.messages == []
    assert "=== fault type=disconnect step=DATA_END occurrence=1\n=== closed abort=True" in h.human()


def test_stall_answers_nothing_and_ignores_everything_after():
    """stall: no reply to EHLO nor to anything later, and the server does not close."""
    h = harness("ehlo:stall")
    assert h.send(b"EHLO c\r\nNOOP\r\n") == b""
    assert h.send(b"QUIT\r\n") == b"" and h.closed is None
    assert h.timeout() == b"" and h.closed == "close"  # the profile's idle timeout still ends it


# -- delay -------------------------------------------------------------------------


def test_delay_comes_before_the_reply():
    """delay=2.5 at HELO: a Delay action, then the reply, in that order."""
    h = harness("helo:delay=2.5")
    assert h.send(b"HELO c\r\n") == b"250 OK\r\n"
    assert h.delays == [2.5]
    assert "-> HELO c\n=== fault type=delay step=HELO occurrence=1\n=== delay seconds=2.5\n<- 250 OK" in h.human()


def test_delay_before_the_greeting_and_the_reply_after_data():
    """connect and data_end take delays too (before the banner; before the 250 after DATA)."""
    h = harness("connect:delay=1", "data_end:delay=3")
    h.send(b"HELO c\r\n" + TRANSACTION)
    assert h.delays == [1.0, 3.0]
    assert h.human().index("=== delay seconds=3.0") < h.human().index("=== message_accepted")


def test_jitter_is_seeded_and_bounded():
    """jitter draws from the seed: within seconds +- jitter, equal for equal seeds, and varied."""
    def delays(seed):
        h = harness("noop:delay=1:jitter=0.5", seed=seed)
        h.send(b"NOOP\r\n" * 20)
        return h.delays

    first = delays(7)
    assert first == delays(7) and first != delays(8)
    assert all(0.5 <= d <= 1.5 for d in first) and len(set(first)) > 10


# -- writes: split, tarpit, glue, inject ------------------------------------------


def test_split_lines_writes_each_ehlo_line_separately():
    """split=lines: one write per line of the EHLO reply, with a Delay(0) turn between."""
    h = harness("ehlo:split=lines")
    assert h.send(b"EHLO c\r\n") == EHLO
    assert writes(h)[1:] == EHLO.splitlines(keepends=True)
    assert h.delays == [0.0] * (len(EHLO.splitlines()) - 1)


def test_split_at_offsets_with_a_pause():
    """split=4,12:pause=0.2 cuts the greeting at bytes 4 and 12."""
    h = harness("connect:split=4,12:pause=0.2")
    assert writes(h) == [BANNER[:4], BANNER[4:12], BANNER[12:]] and h.delays == [0.2, 0.2]
    assert h.human().splitlines()[:3] == ["=== fault type=split step=CONNECT occurrence=1", "<- 220 \\",
                                          "=== delay seconds=0.2"]


def test_tarpit_writes_a_few_bytes_at_a_time():
    """tarpit=3:interval=0.5 sends '250 OK\\r\\n' in 3-byte writes half a second apart."""
    h = harness("helo:tarpit=3:interval=0.5")
    assert h.send(b"HELO c\r\n") == b"250 OK\r\n"
    assert writes(h)[1:] == [b"250", b" OK", b"\r\n"] and h.delays == [0.5, 0.5]


def test_glue_holds_replies_until_the_group_is_complete():
    """glue=3 from MAIL: MAIL, RCPT and DATA replies leave in one write; later ones as usual."""
    h = harness("mail:glue=3")
    h.send(b"HELO c\r\n")
    assert h.send(b"MAIL FROM:<a@b>\r\n") == b"" and h.send(b"RCPT TO:<c@d>\r\n") == b""
    assert writes(h)[-1] == b"250 OK\r\n"
    h.send(b"DATA\r\n")
    assert writes(h)[-1] == (b"250 OK - mail from <a@b>\r\n250 OK - Recipient <c@d>\r\n"
                             b"354 Send data.  End with CRLF.CRLF\r\n")
    assert h.send(b"hi\r\n.\r\n") == b"250 OK\r\n"


def test_glue_greeting_with_the_ehlo_reply():
    """connect:glue=2 holds the banner until EHLO is answered: one write for both."""
    h = Harness("ims55sp4", faults=[parse("connect:glue")])
    assert h.connect() == b""
    h.send(b"EHLO c\r\n")
    assert writes(h) == [BANNER + EHLO]


def test_glue_releases_held_replies_before_the_end_of_data():
    """A group still open at the end of DATA is written before the reply that follows the message."""
    h = harness("data:glue=3")
    h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
    h.send(b"DATA\r\nhi\r\n.\r\n")
    assert writes(h)[-2:] == [b"354 Send data.  End with CRLF.CRLF\r\n", b"250 OK\r\n"]


def test_inject_after_starttls_shares_the_write_of_the_220():
    """inject at STARTTLS: the 220 and the injected reply are one write, then the TLS switch."""
    h = harness("starttls:inject=250-evil Hello|250 AUTH PLAIN", profile="ims55sp4-cert", tls_available=True)
    h.send(b"EHLO c\r\n")
    h.send(b"STARTTLS\r\n")
    assert writes(h)[-1] == b"220 Ready to start TLS\r\n250-evil Hello\r\n250 AUTH PLAIN\r\n"
    assert h.tls_pending and h.human().endswith("<- 250 AUTH PLAIN\n=== tls_starting\n")


def test_faults_that_shape_writes_refuse_data_end():
    """The reply after DATA is written by the host after storing the message: split/tarpit/glue/inject refuse it."""
    from emulator.quirks.spec import FaultError

    for kind in ("split", "tarpit", "glue", "inject=250 x"):
        with pytest.raises(FaultError, match="cannot act on the reply after DATA"):
            parse(f"data_end:{kind}")


# -- framing ------------------------------------------------------------------------


def test_bare_lf_replies():
    """bare_lf at EHLO ends every line with LF only; other replies keep CRLF."""
    h = harness("ehlo:bare_lf")
    assert h.send(b"EHLO c\r\n") == EHLO.replace(b"\r\n", b"\n")
    assert h.send(b"NOOP\r\n") == b"250 OK\r\n"


def test_bare_lf_on_the_reply_after_data():
    """Framing faults reach the reply after DATA too (it is rendered by the core)."""
    h = harness("data_end:bare_lf")
    assert h.send(b"HELO c\r\n" + TRANSACTION).endswith(b"CRLF.CRLF\r\n250 OK\n")


@pytest.mark.parametrize("separator, last", [("", b"250"), ("-", b"250-")])
def test_missing_space_after_the_last_code(separator, last):
    """missing_space: the last line of EHLO has no space after 250, or a hyphen (never ends)."""
    assert EHLO.count(b"\r\n250 ") == 1
    h = harness(f"ehlo:missing_space={separator}")
    assert h.send(b"EHLO c\r\n") == EHLO[:-len(LAST)] + last + LAST[4:]


@pytest.mark.parametrize("space, prompt, expected", [
    ("false", "334 ", b"334\r\n"), ("true", "334", b"334 \r\n"), ("true", "334 x", b"334 x\r\n")])
def test_trailing_space_of_a_reply_without_text(space, prompt, expected):
    """trailing_space decides between '334 ' and '334' for a reply with no text; text is untouched."""
    h = harness(f"auth:trailing_space={space}", f"auth:reply={prompt}")
    assert h.send(b"AUTH PLAIN\r\n") == expected


# -- probability and seed -------------------------------------------------------------


def run(seed, spec="noop:reply=451 4.3.2 Try later:probability=0.5"):
    h = harness(spec, seed=seed)
    h.send(b"NOOP\r\n" * 40)
    return h.human()


def test_same_seed_same_transcript_other_seed_differs():
    """probability 0.5: a seed gives the same transcript every time; another seed gives another."""
    assert run(1) == run(1)
    assert run(1) != run(2)
    assert 5 < run(1).count("<- 451") < 35


def test_probability_bounds():
    """probability 0 never fires, 1 always does."""
    assert "451" not in run(1, "noop:reply=451 x:probability=0")
    assert run(1, "noop:reply=451 x:probability=1").count("<- 451 x") == 40


def test_dice_of_one_fault_do_not_depend_on_another():
    """Adding a second fault leaves the first one's dice alone (draws are keyed, not sequential)."""
    def fired(*extra):
        h = harness("noop:reply=451 x:probability=0.5", *extra, seed=3)
        h.send(b"NOOP\r\n" * 30)
        return [r.fields["occurrence"] for r in h.transcript.events("fault") if r.fields["type"] == "reply"]

    assert fired() == fired("*:delay=0.1:probability=0.5")


def test_transcript_header_records_the_seed():
    """The transcript carries the seed; its JSON header writes it and reads it back."""
    from emulator.capture.transcript import Transcript

    h = harness("noop:reply=451 x", seed=42)
    assert h.transcript.seed == 42
    line = h.transcript.to_jsonl().splitlines()[0]
    assert '"seed": 42' in line and Transcript.from_jsonl(h.transcript.to_jsonl()).seed == 42


# -- faults at run time --------------------------------------------------------------


def test_faults_added_at_run_time_reach_an_open_connection():
    """Server.set_faults changes the hook table at once: the next command of an open connection sees it."""
    h = harness()
    assert h.send(b"NOOP\r\n") == b"250 OK\r\n"
    h.server.set_faults([parse("noop:reply=421 4.3.2 Going down")])
    assert h.send(b"NOOP\r\n") == b"421 4.3.2 Going down\r\n"
    h.server.set_faults([])
    assert h.send(b"NOOP\r\n") == b"250 OK\r\n"


def test_runtime_faults_come_before_the_profile_quirks():
    """A runtime fault answers before a profile quirk on the same step."""
    from dataclasses import replace

    p = profiles.load("ims55sp4")
    quirk = parse("noop:reply=250 profile")
    server = Server(replace(p, quirks=(quirk,), hooks=profiles._hooks([quirk])))
    server.set_faults([parse("noop:reply=250 runtime")])
    h = Harness(None, server=server)
    h.connect()
    assert h.send(b"NOOP\r\n") == b"250 runtime\r\n"


# -- credentials in the clear ---------------------------------------------------------


def test_auth_lines_record_whether_they_arrived_inside_tls():
    """Every AUTH/XAUTH line, prompted lines included, gives a credentials event with tls=..."""
    h = harness(profile="ims55sp4-cert", tls_available=True)
    h.send(b"EHLO c\r\n")
    h.send(b"AUTH LOGIN\r\n")
    h.send(b"dGVzdGVy\r\n")
    assert h.send(b"c2VjcmV0\r\n") == b"235 LOGIN authentication successful\r\n"
    h.send(b"XAUTH NTLM\r\n")
    events = [(r.fields["verb"], r.fields["tls"]) for r in h.transcript.events("credentials")]
    assert events == [("AUTH", False)] * 3 + [("XAUTH", False)]
    assert "-> dGVzdGVy\n=== credentials verb=AUTH tls=False" in h.human()
    h = harness(profile="ims55sp4-cert", tls_available=True)
    h.send(b"STARTTLS\r\n")
    h.handshake()
    h.send(b"EHLO c\r\nAUTH LOGIN dGVzdGVy\r\n")
    assert [r.fields for r in h.transcript.events("credentials")] == [{"verb": "AUTH", "tls": True}]
