"""Transcripts of finished sessions, as a host records them, for the capture tests."""

from emulator.capture.transcript import Transcript

KIB = 1024


def session(number, size=KIB):
    """A finished one-message session as the host records it."""
    t = Transcript(f"s{number:06d}", "ims55sp4", f"192.0.2.10:{1024 + number}", 100.0, "tcp:2525", seed=7)
    for client, server in [(b"EHLO c\r\n", b"250 OK\r\n"), (b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
                                                             b"250 OK\r\n250 OK\r\n354 go\r\n"),
                           (b"x" * size + b"\r\n.\r\n", b""), (b"QUIT\r\n", b"221 bye\r\n")]:
        t.received(100.1, client)
        if server:
            t.sent(100.2, server)
    t.event(100.3, "message_accepted", name=f"m{number}", bytes=size, recipients=1)
    t.event(100.4, "closed", reason="done")
    return t
