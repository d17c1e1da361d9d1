"""The transcript's JSON-lines form: every byte comes back exactly."""

import json

from hypothesis import given, strategies as st

from emulator.capture.transcript import Transcript, json_bytes

# Mail-shaped bytes (the fast path) mixed with anything at all (json's encoder).
MAILISH = st.lists(st.sampled_from([b"\r\n", b"\t", b'"', b"\\", b"x", b".", b" ", b"\x7f", b"\x00", b"\xe9"]),
                   max_size=30).map(b"".join)


@given(st.one_of(MAILISH, st.binary(max_size=200), MAILISH.map(lambda tail: b"x" * 512 + tail),
                 st.binary(max_size=100).map(lambda tail: b"x\r\n" * 200 + tail)))
def test_json_bytes_is_what_json_writes(data):
    """The replace-based encoder (taken from 512 bytes on) gives json.dumps'
    exact bytes for the Latin-1 text of any data, so transcripts read the
    same whichever path wrote them."""
    assert json_bytes(data) == json.dumps(data.decode("latin-1")).encode("ascii")


@given(st.lists(st.tuples(st.sampled_from("cs"), st.booleans(), st.one_of(MAILISH, st.binary(max_size=50))),
                max_size=8))
def test_records_survive_a_round_trip(segments):
    """Written and read back, a transcript has the same bytes, directions,
    TLS flags and events, in order."""
    transcript = Transcript("s1", "ims55sp4", "127.0.0.1:1", started=100.0, seed=7)
    for index, (direction, tls, data) in enumerate(segments):
        if direction == "c":
            transcript.received(100.0 + index, data, tls)
        else:
            transcript.sent(100.0 + index, data, tls)
        transcript.event(100.5 + index, "note", value=data.decode("latin-1"))
    loaded = Transcript.from_jsonl(transcript.to_jsonl())
    assert [(r.dir, r.tls, r.data, r.event, r.fields) for r in loaded.records] == \
        [(r.dir, r.tls, r.data, r.event, r.fields) for r in transcript.records]
    assert (loaded.session_id, loaded.seed) == ("s1", 7)
