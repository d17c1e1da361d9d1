"""reply_override: answer a chosen occurrence of a command with a given reply."""

from dataclasses import replace

from emulator import quirks

from emulator.profiles import loader as profiles
from emulator.testing.harness import Harness


def harness(**attributes):
    p = profiles.load("ims55sp4")
    quirk = quirks.build({"type": "reply_override", "attributes": attributes})
    built = replace(p, quirks=(quirk,))
    return Harness(replace(built, hooks=profiles._hooks([quirk])))


def test_second_rcpt_is_refused_once():
    """occurrence 2, times 1: only the second RCPT gets the override, and is not recorded."""
    h = harness(command="RCPT", reply="452 Too many recipients", occurrence=2)
    h.connect()
    h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\n")
    assert h.send(b"RCPT TO:<1@d>\r\n") == b"250 OK - Recipient <1@d>\r\n"
    assert h.send(b"RCPT TO:<2@d>\r\n") == b"452 Too many recipients\r\n"
    assert h.send(b"RCPT TO:<3@d>\r\n") == b"250 OK - Recipient <3@d>\r\n"
    assert h.conn.envelope.recipients == [b"1@d", b"3@d"]


def test_greeting_override():
    """command connect replaces the banner, here with a multi-line 554 refusal."""
    h = harness(command="connect", reply=["554-go away", "554 really"])
    assert h.connect() == b"554-go away\r\n554 really\r\n"


def test_times_zero_means_every_occurrence():
    """times 0 overrides every occurrence from the first one on."""
    h = harness(command="noop", reply="421 busy", times=0)
    h.connect()
    assert h.send(b"NOOP\r\nNOOP\r\nnoop\r\n") == b"421 busy\r\n" * 3


def test_override_can_answer_an_unknown_verb():
    """A verb the profile does not know can still be given a reply."""
    h = harness(command="XYZZY", reply="250 nothing happens")
    h.connect()
    assert h.send(b"XYZZY\r\n") == b"250 nothing happens\r\n"
