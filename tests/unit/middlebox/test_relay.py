"""Middleboxes, sans-IO: each rewrite as exact bytes on both legs, the
registry, the profile section and middlebox files."""

import textwrap

import pytest
from hypothesis import given, strategies as st

from emulator import middlebox

from emulator.profiles import loader as profiles
from emulator.middlebox import build
from emulator.core.actions import Send, SendUpstream
from emulator.middlebox.relay import Relay
from emulator.testing.middlebox import MiddleboxHarness
from emulator.profiles.loader import ProfileError, SectionError

IMS_BANNER = b"220 mail.example.test ESMTP Server (Microsoft Exchange Internet Mail Service 5.5.2653.13) ready\r\n"
# Every byte of the text but the one "2" (of 2653) masked, the length kept.
PIX_BANNER = b"220 " + b"*" * 77 + b"2" + b"*" * 13 + b"\r\n"
TRANSACTION = b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
ACCEPTED = b"250 OK\r\n250 OK - mail from <a@b>\r\n250 OK - Recipient <c@d>\r\n354 Send data.  End with CRLF.CRLF\r\n"


def pix(**attributes):
    return build({"type": "pix-mailguard", "attributes": attributes})


def server_leg(h):
    """The bytes the server received, as the middlebox forwarded them."""
    return b"".join(r.data for r in h.transcript.records if r.leg and r.dir == "c")


def postfix_sees_pix(greeting: bytes) -> bool:
    """Postfix's PIX test in Python (smtp_proto.c, smtp_helo(), Postfix 2.4+):

        if (resp->str[strspn(resp->str, "20 *\\t\\n")] == 0)
            ... "enabling PIX workarounds: disable_esmtp delay_dotcrlf" ...

    where resp->str is the whole greeting as smtp_chat_resp() (smtp_chat.c)
    builds it: every line, reply code included, without its CRLF, the lines
    joined by a newline."""
    text = b"\n".join(line.rstrip(b"\r\n") for line in greeting.splitlines(keepends=True))
    span = len(text) - len(text.lstrip(b"20 *\t\n"))
    return span == len(text)


# -- pix-mailguard: the banner ---------------------------------------------


def test_pix_masks_the_ims_banner_to_asterisks_keeping_2_and_0():
    """The client gets the banner with every character but '2' and '0' masked,
    code and space kept, length unchanged (KB Q295725, MS KB 320027)."""
    h = MiddleboxHarness("pix-mailguard", "ims55sp4")
    assert h.connect() == PIX_BANNER
    assert len(PIX_BANNER) == len(IMS_BANNER)
    assert "<= 220 mail.example.test ESMTP Server" in h.human()  # the server leg is unmasked


def test_the_masked_banner_triggers_postfix_pix_workarounds():
    """Postfix turns on disable_esmtp and delay_dotcrlf for exactly this
    banner: the emulated PIX banner passes Postfix's strspn test, the real
    IMS banner does not."""
    assert postfix_sees_pix(PIX_BANNER)
    assert not postfix_sees_pix(IMS_BANNER)


@pytest.mark.parametrize("name", ["ims55sp2", "ims55sp3", "ims55sp4", "netscape-ms"])
def test_every_one_line_banner_behind_pix_triggers_postfix(name):
    """Whatever digits a profile's banner holds (build numbers, dates), only
    2 and 0 survive, so Postfix's test holds for every one-line banner."""
    greeting = MiddleboxHarness("pix-mailguard", name).connect()
    assert greeting.startswith(b"220 ") and postfix_sees_pix(greeting)


def test_a_surviving_digit_would_defeat_postfix_detection():
    """Keeping any character besides 2, 0, space and * (here '5' of the build
    number) is enough for Postfix not to detect the PIX."""
    greeting = MiddleboxHarness(pix(banner_keep="205"), "ims55sp4").connect()
    assert b"5" in greeting[4:] and not postfix_sees_pix(greeting)


def test_multi_line_banner_keeps_its_continuation_markers():
    """Each line keeps its code and separator, so the reply still parses;
    the hyphen is why Postfix does not detect a PIX there [P]."""
    greeting = MiddleboxHarness("pix-mailguard", "iis4-smtp-128bit").connect()
    first, second = greeting.splitlines(keepends=True)
    assert first.startswith(b"220-") and set(first[4:-2]) <= set(b"20*")
    assert second == b"220 " + b"*" * len(b"ESMTP spoken here") + b"\r\n"
    assert not postfix_sees_pix(greeting)


def test_banner_masking_can_be_turned_off():
    """mask_banner: false passes the banner as it is."""
    assert MiddleboxHarness(pix(mask_banner=False), "ims55sp4").connect() == IMS_BANNER


# -- pix-mailguard: commands -----------------------------------------------


@pytest.mark.parametrize("sent, forwarded", [
    (b"EHLO client.example\r\n", b"XXXX client.example\r\n"),
    (b"ehlo [127.0.0.1]\r\n", b"XXXX [127.0.0.1]\r\n"),  # smtplib's spelling
    (b"STARTTLS\r\n", b"XXXXXXXX\r\n"),
    (b"AUTH LOGIN\r\n", b"XXXX LOGIN\r\n"),
    (b"VRFY postmaster\r\n", b"XXXX postmaster\r\n"),
    (b"ETRN example.org\r\n", b"XXXX example.org\r\n"),
])
def test_pix_overwrites_other_verbs_with_x_of_the_same_length(sent, forwarded):
    """A verb outside RFC 821's seven reaches the server as X's, arguments
    kept, and the client gets the server's unknown-command reply (KB Q295725)."""
    h = MiddleboxHarness("pix-mailguard", "ims55sp4")
    h.connect()
    assert h.send(sent) == b"500 Unrecognized command\r\n"
    assert server_leg(h) == forwarded and len(forwarded) == len(sent)


def test_pix_passes_the_rfc821_commands_unchanged():
    """HELO, MAIL, RCPT, DATA, the message, RSET, NOOP and QUIT pass as sent."""
    h = MiddleboxHarness("pix-mailguard", "ims55sp4")
    h.connect()
    session = [TRANSACTION, b"hi\r\n.\r\n", b"RSET\r\n", b"noop\r\n", b"QUIT\r\n"]
    out = b"".join(h.send(segment) for segment in session)
    assert server_leg(h) == b"".join(session)
    assert out == ACCEPTED + b"250 OK\r\n250 OK\r\n250 OK\r\n221 closing connection\r\n"
    assert [m.data for m in h.messages] == [b"hi\r\n"]
    assert h.closed


def test_pix_commands_attribute_sets_the_allowed_verbs():
    """The ASA's larger list lets EHLO through."""
    h = MiddleboxHarness(pix(commands=["HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT"]), "ims55sp4")
    h.connect()
    assert h.send(b"EHLO c\r\n").startswith(b"250-mail.example.test Hello")


def test_pix_session_transcript_shows_both_legs(golden):
    """The human form interleaves the client leg (-> <-) and the server leg
    (=> <=) with the middlebox's events: EHLO refused, HELO fallback, a message."""
    h = MiddleboxHarness("pix-mailguard", "ims55sp4")
    h.connect()
    for segment in [b"EHLO client.example\r\n", b"HELO client.example\r\n", TRANSACTION[8:],
                    b"Subject: t\r\n\r\nhello\r\n.\r\n", b"QUIT\r\n"]:
        h.send(segment)
    golden("middlebox/pix-mailguard-ims55sp4", h.human())


# -- pix-mailguard: the CRLF.CRLF bug (CSCds90792) ------------------------


def _in_data(box):
    h = MiddleboxHarness(box, "ims55sp4")
    h.connect()
    assert h.send(TRANSACTION) == ACCEPTED
    return h


def test_dot_crlf_in_its_own_segment_is_dropped():
    """The final '.\\r\\n' in a segment after the one ending in '\\r\\n' never
    reaches the server: no 250, no message (KB Q295725)."""
    h = _in_data(pix())
    assert h.send(b"Subject: t\r\n\r\nhello\r\n") == b""
    assert h.send(b".\r\n") == b""
    assert server_leg(h).endswith(b"DATA\r\nSubject: t\r\n\r\nhello\r\n")
    assert h.messages == [] and h.server.conn.phase.value == "data"
    assert [e.fields for e in h.transcript.events("end_of_data_dropped")] == [{"bytes": 3}]


def test_terminator_split_after_the_dot_is_dropped_too():
    """'\\r\\n.' then '\\r\\n': the second segment is dropped, the server waits."""
    h = _in_data(pix())
    assert h.send(b"hello\r\n.") == b""
    assert h.send(b"\r\nQUIT\r\n") == b""
    assert server_leg(h).endswith(b"hello\r\n.") and h.messages == []


def test_terminator_in_one_segment_passes():
    """The same message with CRLF.CRLF inside one segment is delivered."""
    h = _in_data(pix())
    assert h.send(b"hello\r\n.\r\n") == b"250 OK\r\n"
    assert [m.data for m in h.messages] == [b"hello\r\n"]


def test_dot_crlf_after_a_data_segment_split_mid_line_passes():
    """Only a split terminator matters: content split anywhere else passes."""
    h = _in_data(pix())
    assert h.send(b"hel") == b""
    assert h.send(b"lo\r\n.\r\n") == b"250 OK\r\n"


def test_without_the_bug_a_split_terminator_passes():
    """dotcrlf_bug: false (a fixed PIX) passes the split terminator."""
    h = _in_data(pix(dotcrlf_bug=False))
    h.send(b"hello\r\n")
    assert h.send(b".\r\n") == b"250 OK\r\n"


def test_postfix_reading_lets_a_lone_dot_crlf_through():
    """lone_dotcrlf_passes: a '.\\r\\n' starting its own segment passes (what
    Postfix's delay_dotcrlf sends), a '.' split from its CRLF does not."""
    h = _in_data(pix(lone_dotcrlf_passes=True))
    h.send(b"hello\r\n")
    assert h.send(b".\r\n") == b"250 OK\r\n"
    h.send(TRANSACTION[8:])
    h.send(b"again\r\n.")
    assert h.send(b"\r\n") == b""


def test_reply_other_than_354_keeps_the_relay_in_commands():
    """DATA refused (no recipients): what follows is read as commands again."""
    h = MiddleboxHarness("pix-mailguard", "ims55sp4")
    h.connect()
    h.send(b"HELO c\r\n")
    assert h.send(b"DATA\r\nEHLO x\r\n") == b"503 Bad sequence of commands\r\n500 Unrecognized command\r\n"
    assert server_leg(h).endswith(b"DATA\r\nXXXX x\r\n")


def test_content_pipelined_before_354_waits_for_it():
    """Bytes after DATA in the same segment are held until the 354, then
    read as message content, not as commands."""
    relay = Relay(pix(dotcrlf_bug=False))
    relay.server_data(b"220 x\r\n")
    assert relay.client_data(b"DATA\r\nEHLO in the body\r\n.\r\n") == [SendUpstream(b"DATA\r\n")]
    assert relay.server_data(b"354 go\r\n") == [Send(b"354 go\r\n"), SendUpstream(b"EHLO in the body\r\n.\r\n")]


# -- starttls-intercept (KB Q237327) --------------------------------------


def test_intercept_answers_starttls_itself_and_the_server_never_sees_it():
    """The firewall's 220 goes to the client; the server leg carries EHLO only."""
    h = MiddleboxHarness("starttls-intercept", "ims55sp2")
    h.connect()
    assert h.send(b"EHLO c\r\n").endswith(b"250 STARTTLS\r\n")
    assert h.send(b"STARTTLS\r\n") == b"220 Ready to start TLS\r\n"
    assert server_leg(h) == b"EHLO c\r\n"
    assert h.transcript.events("tunnel")


def test_intercept_passes_the_client_hello_to_a_server_that_never_agreed():
    """After the firewall's 220 the ClientHello reaches the plaintext server
    unchanged, and its plaintext answer goes back to the client's TLS layer."""
    h = MiddleboxHarness("starttls-intercept", "ims55sp2")
    h.connect()
    h.send(b"EHLO c\r\n")
    h.send(b"STARTTLS\r\n")
    hello = b"\x16\x03\x01\x00\x2a\x01\x00\x00\x26\x03\x03" + b"\x0a" + b"\x00" * 10 + b"\r\n"
    assert h.send(hello) == b"500 Unrecognized command\r\n500 Unrecognized command\r\n"
    assert server_leg(h) == b"EHLO c\r\n" + hello
    assert h.messages == []




def test_intercept_reply_is_configurable_and_checked():
    """The firewall's text is an attribute; a bad reply does not build."""
    box = build({"type": "starttls-intercept", "attributes": {"reply": "220 Go ahead"}})
    h = MiddleboxHarness(box, "ims55sp4")
    h.connect()
    assert h.send(b"STARTTLS\r\n") == b"220 Go ahead\r\n"
    with pytest.raises(SectionError, match="does not start with a reply code") as raised:
        build({"type": "starttls-intercept", "attributes": {"reply": "Go ahead"}})
    assert raised.value.key == "attributes.reply"
    with pytest.raises(SectionError, match="literal text"):
        build({"type": "starttls-intercept", "attributes": {"reply": "220 {hostname}"}})


# -- starttls-strip (ASA no allow-tls) -------------------------------------

SP2_EHLO = (b"250-mail.example.test Hello [192.0.2.10]\r\n250-XEXCH50\r\n250-HELP\r\n250-ETRN\r\n"
            b"250-DSN\r\n250-SIZE 0\r\n250-AUTH LOGIN\r\n250-AUTH=LOGIN\r\n250-XAUTH\r\n")


def test_strip_removes_starttls_and_ends_the_reply_on_the_new_last_line():
    """ims55sp2 lists STARTTLS last; the client sees XAUTH as the last line."""
    h = MiddleboxHarness("starttls-strip", "ims55sp2")
    h.connect()
    assert h.send(b"EHLO c\r\n") == SP2_EHLO[:-len(b"250-XAUTH\r\n")] + b"250 XAUTH\r\n"
    assert server_leg(h) == b"EHLO c\r\n"


def test_strip_can_mask_in_place():
    """how: mask keeps the line and its length, as X's."""
    h = MiddleboxHarness(build({"type": "starttls-strip", "attributes": {"how": "mask"}}), "ims55sp2")
    h.connect()
    assert h.send(b"EHLO c\r\n") == SP2_EHLO + b"250 XXXXXXXX\r\n"


def test_strip_passes_a_starttls_the_client_sends_anyway():
    """Only the advertisement goes: a STARTTLS still reaches ims55sp2, which
    answers the KB's 554 (no certificate)."""
    h = MiddleboxHarness("starttls-strip", "ims55sp2")
    h.connect()
    assert h.send(b"STARTTLS\r\n") == b"554 Unable to initialize security subsystem\r\n"
    assert server_leg(h) == b"STARTTLS\r\n"


def test_strip_leaves_other_replies_alone():
    """HELO and error replies pass unchanged."""
    h = MiddleboxHarness("starttls-strip", "ims55sp2")
    h.connect()
    assert h.send(b"HELO c\r\n") == b"250 OK\r\n"


def test_starttls_accepted_by_the_server_turns_the_relay_into_a_tunnel():
    """A STARTTLS that the server accepts (it has a certificate) makes the
    relay pass everything after it unexamined."""
    h = MiddleboxHarness("starttls-strip", "ims55sp4-cert", tls_available=True)
    h.connect()
    assert h.send(b"STARTTLS\r\n") == b"220 Ready to start TLS\r\n"
    assert h.transcript.events("tunnel") and h.relay.phase == "tunnel"
    assert h.server.tls_pending


# -- properties --------------------------------------------------------------

SESSION = (b"EHLO c\r\nHELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")


@given(st.lists(st.integers(min_value=1, max_value=20), max_size=12), st.sampled_from(["pix", "strip"]))
def test_chunking_does_not_change_what_the_client_sees(cuts, kind):
    """Boundary-insensitive middleboxes (PIX without the bug, strip) give the
    same client bytes and the same delivered message however the client's
    input is cut (Toxiproxy's slicer as a property)."""
    box = pix(dotcrlf_bug=False) if kind == "pix" else "starttls-strip"

    def run(segments):
        h = MiddleboxHarness(box, "ims55sp4")
        out = h.connect() + h.send(SESSION[0])
        out += b"".join(h.send(s) for s in segments)
        return out, [m.data for m in h.messages]

    data, segments, at = SESSION[1], [], 0
    for cut in cuts:
        if at + cut < len(data):
            segments.append(data[at:at + cut])
            at += cut
    segments.append(data[at:])
    assert run(segments) == run([data])


# -- registry, profile section, files ----------------------------------------


def test_registry_lists_the_types():
    """The three types are registered, each documented with its source."""
    types = middlebox.types_()
    assert {"pix-mailguard", "starttls-intercept", "starttls-strip"} <= types.keys()
    for cls in types.values():
        assert "KB" in cls.__doc__ or "ASA" in cls.__doc__


@pytest.mark.parametrize("entry, key, problem", [
    ({"type": "nat-box"}, "type", "unknown middlebox type"),
    ({"type": "pix-mailguard", "attributes": {"bug": True}}, "attributes.bug", "unknown attribute"),
    ({"type": "pix-mailguard", "attributes": {"dotcrlf_bug": "yes"}}, "attributes.dotcrlf_bug", "true or false"),
    ({"type": "pix-mailguard", "attributes": {"commands": ["HELO", "E HLO"]}}, "attributes.commands[1]", "not an SMTP verb"),
    ({"type": "starttls-strip", "attributes": {"how": "drop"}}, "attributes.how", "remove or mask"),
    ({"type": "pix-mailguard", "name": "x"}, "name", "unknown key"),
])
def test_bad_entries_name_the_key(entry, key, problem):
    """Every mistake is a SectionError naming the attribute at fault."""
    with pytest.raises(SectionError, match=problem) as raised:
        build(entry)
    assert raised.value.key == key


BEHIND = textwrap.dedent("""\
    name: {name}
    extends: ims55sp4
    middlebox:
      type: pix-mailguard
      attributes: {attributes}
""")


def test_profile_section_builds_the_middlebox(tmp_path):
    """A profile's middlebox: section is loaded into Profile.middlebox."""
    path = tmp_path / "behind.yaml"
    path.write_text(BEHIND.format(name="behind", attributes="{dotcrlf_bug: false}"))
    loaded = profiles.load(path)
    assert loaded.middlebox == pix(dotcrlf_bug=False)
    assert profiles.load("ims55sp4").middlebox is None


def test_profile_section_errors_name_file_and_key(tmp_path):
    """A bad attribute stops the profile with file:middlebox.attributes.key."""
    path = tmp_path / "behind.yaml"
    path.write_text(BEHIND.format(name="behind", attributes="{dotcrlf: true}"))
    with pytest.raises(ProfileError) as raised:
        profiles.load(path)
    assert raised.value.key == "middlebox.attributes.dotcrlf" and str(path) in str(raised.value)


@pytest.mark.parametrize("name", ["ims55sp2-starttls-firewall", "ims55sp4-pix"])
def test_shipped_compositions_run_behind_their_middlebox(name):
    """A shipped composition profile greets through its own middlebox."""
    h = MiddleboxHarness(None, name)
    assert h.connect().startswith(b"220 ")
    assert h.box.type == profiles.load(name).middlebox.type


def test_middlebox_file_and_name_loading(tmp_path):
    """--middlebox takes a type name or a YAML file; problems name file and key."""
    assert middlebox.load("pix-mailguard") == pix()
    good = tmp_path / "fixed-pix.yaml"
    good.write_text("type: pix-mailguard\nattributes: {dotcrlf_bug: false}\n")
    assert middlebox.load(str(good)) == pix(dotcrlf_bug=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: pix-mailguard\nattributes: {mask: 1}\n")
    with pytest.raises(ProfileError, match=f"{bad}:attributes.mask: unknown attribute"):
        middlebox.load(str(bad))
    with pytest.raises(ProfileError, match="no middlebox type of that name"):
        middlebox.load("sidewinder")
    with pytest.raises(ProfileError, match="cannot read"):
        middlebox.load(str(tmp_path / "missing.yaml"))
