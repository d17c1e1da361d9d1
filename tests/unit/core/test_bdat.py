"""CHUNKING/BDAT and BINARYMIME (RFC 3030) in the sans-IO core: byte transcripts on a test persona
(tests/support/chunking_persona.py) whose texts come from its catalogue."""

import pytest

from emulator.core.framing import ChunkReader
from emulator.quirks.spec import parse
from emulator.testing.harness import Harness

import chunking_persona

ENVELOPE = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
ENVELOPE_REPLIES = (b"250 OK - mail from <a@b>\r\n250 OK - Recipient <c@d>\r\n")


@pytest.fixture
def persona(tmp_path):
    return chunking_persona.load(tmp_path)


@pytest.fixture
def h(persona):
    harness = Harness(persona)
    harness.connect()
    return harness


def opened(h) -> None:
    """EHLO, MAIL and RCPT sent; their replies read."""
    h.send(b"EHLO c\r\n")
    assert h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n") == ENVELOPE_REPLIES


def test_ehlo_lists_chunking_where_the_profile_does(h):
    """CHUNKING and BINARYMIME are the profile's keywords, listed where it puts them."""
    assert h.send(b"EHLO c\r\n") == (
        b"250-mail.example.test Hello [192.0.2.10]\r\n250-PIPELINING\r\n250-BINARYMIME\r\n250-CHUNKING\r\n"
        b"250-SIZE 0\r\n250-AUTH LOGIN\r\n250-X-LINK2STATE\r\n250 XEXCH50\r\n")


def test_two_chunks_make_one_message(h):
    """An intermediate chunk gets bdat_ok with its size, BDAT ... LAST gets data_ok; one message
    holds both chunks exactly, with no unstuffing (a dot opening a line stays)."""
    opened(h)
    assert h.send(b"BDAT 6\r\n.a\r\nb.") == b"250 2.0.0 6 bytes received\r\n"
    assert h.send(b"BDAT 4 LAST\r\n\r\n.\r") == b"250 OK\r\n"
    (message,) = h.messages
    assert (message.sender, message.recipients, message.data) == (b"a@b", (b"c@d",), b".a\r\nb.\r\n.\r")


def test_crlf_dot_crlf_inside_a_chunk_ends_nothing(h):
    """A chunk is counted, not parsed: CRLF.CRLF and command lines inside it are content."""
    opened(h)
    chunk = b"x\r\n.\r\nQUIT\r\n"
    assert h.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk) == b"250 OK\r\n"
    assert h.messages[0].data == chunk and not h.closed


def test_bdat_zero_last_ends_the_message(h):
    """BDAT 0 LAST is allowed (RFC 3030 section 2): it ends a message whose chunks came before, or an
    empty one, without waiting for any byte."""
    opened(h)
    assert h.send(b"BDAT 3\r\nabcBDAT 0 LAST\r\n") == b"250 2.0.0 3 bytes received\r\n250 OK\r\n"
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
    assert h.send(b"BDAT 0 LAST\r\n") == b"250 OK\r\n"
    assert [m.data for m in h.messages] == [b"abc", b""]


def test_a_chunk_arriving_a_byte_at_a_time(h):
    """The reply waits for the chunk's last byte, however it is cut."""
    opened(h)
    assert h.send(b"BDAT 3 LAST\r\n") == b""
    assert h.send(b"a") == b"" and h.send(b"b") == b""
    assert h.send(b"cNOOP\r\n") == b"250 OK\r\n250 OK\r\n"
    assert h.messages[0].data == b"abc"


@pytest.mark.parametrize("argument", [b"", b"x", b"-1", b"5 LASTX", b"5 LAST more", b"1" * 21, b"LAST"])
def test_an_unreadable_size_is_a_syntax_error_and_reads_no_chunk(h, argument):
    """bdat_syntax, and the next bytes are commands again (no size, so no chunk to skip)."""
    opened(h)
    assert h.send(b"BDAT " + argument + b"\r\nNOOP\r\n") == b"501 5.5.4 Invalid arguments\r\n250 OK\r\n"


def test_malformed_bdat_counts_as_a_bad_command(tmp_path):
    """bdat_syntax counts against limits: bad_commands like the syntax_* replies: the second closes."""
    h = Harness(chunking_persona.load(tmp_path, "limits: {bad_commands: 2}\n"))
    h.connect()
    assert h.send(b"BDAT x\r\nBDAT\r\n") == (b"501 5.5.4 Invalid arguments\r\n501 5.5.4 Invalid arguments\r\n"
                                             b"421 mail.example.test Too many errors, closing connection\r\n")
    assert h.closed == "close"


def test_bdat_without_mail_or_rcpt_is_refused_after_its_chunk(h):
    """need_mail / need_rcpt, sent once the refused chunk has been read and discarded, so that its
    bytes are never taken for commands."""
    h.send(b"EHLO c\r\n")
    assert h.send(b"BDAT 6\r\nQUIT\r\nNOOP\r\n") == b"503 Bad sequence of commands\r\n250 OK\r\n"
    h.send(b"MAIL FROM:<a@b>\r\n")
    assert h.send(b"BDAT 6 LAST\r\nRSET\r\n") == b"503 Bad sequence of commands\r\n"
    assert not h.messages and not h.closed


def test_data_after_a_chunk_is_a_sequence_error(h):
    """RFC 3030 section 2: DATA in a transaction that has BDAT chunks gets bdat_sequence; after RSET
    the session may use DATA again (both are allowed in one session, not in one transaction)."""
    opened(h)
    h.send(b"BDAT 2\r\nab")
    assert h.send(b"DATA\r\n") == b"503 5.5.2 Bad sequence of commands\r\n"
    assert h.send(b"RSET\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n") == (
        b"250 OK\r\n" + ENVELOPE_REPLIES + b"354 Send data.  End with CRLF.CRLF\r\n250 OK\r\n")
    assert [m.data for m in h.messages] == [b"hi\r\n"]


def test_bdat_after_data_needs_a_new_transaction(h):
    """A message sent by DATA ends its transaction: a BDAT after it is refused (need_mail) and its
    chunk skipped."""
    opened(h)
    h.send(b"DATA\r\nhi\r\n.\r\n")
    assert h.send(b"BDAT 2 LAST\r\nab") == b"503 Bad sequence of commands\r\n"
    assert len(h.messages) == 1


def test_binarymime_allows_only_bdat(h):
    """MAIL ... BODY=BINARYMIME to a server listing BINARYMIME: DATA gets bdat_sequence (RFC 3030
    section 3), BDAT carries the binary body (NUL, bare CR and lines past text_line included)."""
    h.send(b"EHLO c\r\n")
    assert h.send(b"MAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\n") == ENVELOPE_REPLIES
    assert h.send(b"DATA\r\n") == b"503 5.5.2 Bad sequence of commands\r\n"
    body = b"\x00\xff\r" + b"y" * 2000
    assert h.send(b"BDAT %d LAST\r\n" % len(body) + body) == b"250 OK\r\n"
    assert h.messages[0].data == body


def test_binarymime_is_ignored_where_the_profile_does_not_list_it(tmp_path):
    """Without BINARYMIME in the EHLO list the parameter is ignored, as before: DATA still goes."""
    h = Harness(chunking_persona.load(tmp_path, extra='ehlo_keywords: ["CHUNKING"]\n'))
    h.connect()
    out = h.send(b"HELO c\r\nMAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n")
    assert out.endswith(b"354 Send data.  End with CRLF.CRLF\r\n250 OK\r\n")


def test_a_text_body_by_bdat_keeps_the_text_line_limit(h):
    """Without BINARYMIME a message by BDAT is text: a line over limits: text_line refuses it at LAST,
    as at DATA's end."""
    opened(h)
    body = b"x" * 999 + b"\r\n"
    assert h.send(b"BDAT %d LAST\r\n" % len(body) + body) == b"500 Line too long\r\n"
    assert not h.messages
    assert h.transcript.events("message_rejected")[0].fields == {"reason": "text_line", "bytes": 1001}


def test_message_size_counts_every_chunk(tmp_path):
    """limits: message_size holds over the chunks together: the chunk that passes it is read and
    refused with message_too_big, and the transaction ends (RFC 3030: its state is indeterminate)."""
    h = Harness(chunking_persona.load(tmp_path, extra="limits: {message_size: 10}\n"))
    h.connect()
    opened(h)
    assert h.send(b"BDAT 6\r\n123456") == b"250 2.0.0 6 bytes received\r\n"
    assert h.send(b"BDAT 5 LAST\r\n12345") == b"552 Requested mail action aborted: exceeded storage allocation\r\n"
    assert h.send(b"BDAT 1 LAST\r\nx") == b"503 Bad sequence of commands\r\n"
    assert not h.messages
    assert h.transcript.events("message_rejected")[0].fields == {"reason": "size", "bytes": 11}


def test_a_message_of_exactly_the_limit_is_taken(tmp_path):
    """Chunks adding up to message_size exactly are within it."""
    h = Harness(chunking_persona.load(tmp_path, extra="limits: {message_size: 10}\n"))
    h.connect()
    opened(h)
    assert h.send(b"BDAT 6\r\n123456BDAT 4 LAST\r\n7890") == b"250 2.0.0 6 bytes received\r\n250 OK\r\n"
    assert h.messages[0].data == b"1234567890"


def test_a_lost_connection_between_chunks_delivers_nothing(h):
    """Chunks taken without LAST are no message: the loss is recorded as message_aborted."""
    opened(h)
    h.send(b"BDAT 3\r\nabcBDAT 5\r\nde")
    h.lose()
    assert not h.messages
    assert h.transcript.events("message_aborted")[0].fields == {"bytes": 5}


def test_rset_forgets_the_chunks(h):
    """RSET ends the transaction: its chunks are gone, the next message starts afresh."""
    opened(h)
    h.send(b"BDAT 3\r\nabcRSET\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
    assert h.send(b"BDAT 2 LAST\r\nde") == b"250 OK\r\n"
    assert h.messages[0].data == b"de"


def test_storage_failure_answers_data_failed(h):
    """A message by BDAT is stored before data_ok, like one by DATA: a failed store gets data_failed."""
    h.fail_storage = True
    opened(h)
    assert h.send(b"BDAT 2 LAST\r\nab") == b"451 Requested action aborted: local error in processing\r\n"


def test_the_data_timeout_applies_inside_a_chunk(h):
    """While a chunk is read the silence allowed is limits: data_timeout, not the idle timeout."""
    opened(h)
    h.send(b"BDAT 10\r\nab")
    assert h.conn.time_left(0) == h.conn.profile.limits.data_timeout


def test_a_data_end_fault_fires_at_bdat_last(persona):
    """The end of a message by BDAT is the data_end step, as DATA's terminator is: a fault there
    answers instead of data_ok and nothing is delivered."""
    h = Harness(persona, faults=[parse("data_end:reply=451 later")])
    h.connect()
    opened(h)
    assert h.send(b"BDAT 2 LAST\r\nab") == b"451 later\r\n"
    assert not h.messages


def test_shipped_5x_personas_do_not_know_bdat():
    """The shipped 5.x personas have no BDAT: it is an unknown command there, as before."""
    h = Harness("ims55sp4")
    h.connect()
    assert h.send(b"HELO c\r\nBDAT 0 LAST\r\n") == b"250 OK\r\n500 Unrecognized command\r\n"


def test_chunk_reader_takes_exactly_its_count_from_the_buffer():
    """ChunkReader.take copies only the chunk out of a buffer and leaves what follows it there."""
    buffer = bytearray(b"abcdeNOOP\r\n")
    reader = ChunkReader(5)
    assert reader.take(buffer) == b"abcde" and buffer == bytearray(b"NOOP\r\n")
    reader = ChunkReader(5, keep=False)
    assert reader.take(bytearray(b"abc")) is None and reader.feed(b"de!") == (b"", b"!")
