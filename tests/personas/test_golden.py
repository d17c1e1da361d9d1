"""Golden transcripts: whole sessions compared byte for byte with tests/golden/."""

from emulator.testing.harness import Harness


def test_ims55sp4_full_session(golden):
    """A complete ims55sp4 session (EHLO, MAIL with SIZE, two RCPT, DATA, RSET, QUIT)."""
    h = Harness("ims55sp4")
    h.connect()
    for line in [b"EHLO client.example.org\r\n", b"MAIL FROM:<JohnD@COMPANY1.com> SIZE=1460\r\n",
                 b"RCPT TO:<janed@company2.com>\r\n", b"RCPT TO:<bob@company2.com>\r\n", b"DATA\r\n",
                 b"Subject: hello\r\n\r\nHi Jane.\r\n..\r\n.\r\n", b"RSET\r\n", b"QUIT\r\n"]:
        h.send(line)
    golden("ims55sp4/full-session", h.human())
