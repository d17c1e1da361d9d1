"""Quirks around STARTTLS and TLS sessions."""

from __future__ import annotations

from collections import Counter

from emulator.core.hooks import Quirk
from emulator.schema import Count, Record


class StartTLSBufferLeak(Record, Quirk):
    """Execute plaintext pipelined after STARTTLS as if it had arrived inside
    TLS: the STARTTLS command-injection bug (CVE-2011-0411, VU#555316; Postfix
    before 2.7.3, qmail-based servers, and Twisted's ESMTP today).  The safe
    default (RFC 3207 section 6) discards those bytes.

    Source: http://www.postfix.org/CVE-2011-0411.html (docs/sources.md
    §11.1); no Microsoft product is named there, so profiles use this only
    as a known-bad persona.
    """

    type = "starttls_buffer_leak"
    boundary_sensitive = True  # what leaks depends on what came in the same read

    def on_starttls(self, conn, pending: bytes) -> bytes:
        if pending:
            conn.event("starttls_plaintext_kept", bytes=len(pending))
        return pending


class TLSSessionNotSecure(Record, Quirk):
    """IIS 4.0 SMTP with "128-bit encryption" required (KB Q279214): after
    C{220 SMTP server ready} and a completed handshake, the first session
    from a sending host is not marked secure, so its MAIL FROM gets C{505
    Must issue a STARTTLS command first} and the sender QUITs; a later
    message from the same host goes through.  Fixed in smtpsvc 5.5.1877.51/.64.

    What the KB states: the replies, that the first message fails and the
    second from the same host succeeds, and that it happens only with 128-bit
    encryption required.  Modelling choices: the per-host memory counts TLS
    sessions by peer IP address, lives in the listener's shared state (reset
    between tests), and the first C{sessions} of them fail.

    @ivar sessions: how many TLS sessions per peer address are not marked secure.
    """

    type = "tls_session_not_secure"

    sessions: Count = 1

    def after_tls(self, conn) -> None:
        seen = conn.server.shared.setdefault("tls_session_not_secure", Counter())
        seen[conn.session.peer_ip] += 1
        if seen[conn.session.peer_ip] <= self.sessions:
            conn.session.tls_secure = False
            conn.event("tls_not_marked_secure", peer=conn.session.peer_ip, session=seen[conn.session.peer_ip])


#: The TLS family.
TYPES = (StartTLSBufferLeak, TLSSessionNotSecure)
