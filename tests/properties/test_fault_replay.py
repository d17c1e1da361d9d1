"""Faults replay: with a seed, any fault mix gives the same session however the
input is cut, and the same seed gives the same transcript."""

from hypothesis import given, settings, strategies as st

from emulator.quirks.spec import parse
from emulator.testing.harness import Harness

FAULTS = [
    "rcpt:reply=452 4.5.3 Too many recipients:times=2", "data_end:reply=451 4.3.0 later:probability=0.5",
    "mail:disconnect=reply:from=2", "noop:stall", "helo:delay=1:jitter=0.5", "ehlo:split=lines",
    "*:tarpit=7:interval=0.1:probability=0.3", "mail:glue=2", "noop:inject=250 extra", "*:bare_lf:probability=0.5",
    "ehlo:missing_space=-", "rset:trailing_space=true", "connect:delay=2:probability=0.5",
]
COMMANDS = [
    b"EHLO client.example\r\n", b"HELO client\r\n", b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<b@example.test>\r\n",
    b"DATA\r\n", b"Subject: x\r\n\r\nbody\r\n.\r\n", b"RSET\r\n", b"NOOP\r\n", b"QUIT\r\n", b"BOGUS\r\n",
]


def run(specs, chunks, seed):
    h = Harness("ims55sp4", faults=[parse(s) for s in specs], seed=seed)
    h.connect()
    for chunk in chunks:
        h.send(chunk)
    h.lose()
    return h.human(), h.messages, h.closed


@settings(deadline=None)
@given(st.lists(st.sampled_from(FAULTS), min_size=1, max_size=4, unique=True),
       st.lists(st.sampled_from(COMMANDS), max_size=14),
       st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
       st.integers(min_value=0, max_value=2**32 - 1))
def test_a_seeded_fault_mix_replays_whatever_the_cuts(specs, pieces, cuts, seed):
    """Same faults and seed: the transcript, messages and close state depend neither on how the
    input was cut into segments nor on the run (faults are rebuilt each time)."""
    stream = b"".join(pieces)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0] + points, points + [len(stream)]) if stream[a:b]]

    def without_client_records(result):
        human, messages, closed = result
        return [line for line in human.splitlines() if not line.startswith("->")], messages, closed

    whole = run(specs, [stream] if stream else [], seed)
    assert whole == run(specs, [stream] if stream else [], seed)
    assert without_client_records(whole) == without_client_records(run(specs, chunks, seed))
