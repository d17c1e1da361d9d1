"""Reference server for the benchmark: a twisted.mail ESMTP server that
discards mail, or with --maildir stores each message in a Maildir before its 250.

Usage: python bench/ref_twisted.py --port 0 [--maildir DIR] [--tls-cert FILE --tls-key FILE]

Listens on 127.0.0.1 only and prints exactly one line, ``PORT <n>``, once the
socket is listening.  Its banner names it: ``220 ref-twisted ... ESMTP``.
STARTTLS is advertised only when a certificate is given.  With --maildir it
does the same work as the emulator with --maildir: every message goes through
the standard library's ``mailbox.Maildir`` (written to tmp/, renamed into
new/) before the server confirms it.
"""

import argparse
import mailbox

from twisted.internet import defer, protocol, reactor, ssl
from twisted.mail import smtp
from zope.interface import implementer

# twisted.mail.smtp already ran socket.getfqdn() on import (module constant
# DNSNAME); we cannot avoid that, but we can keep the banner independent of it.
HOSTNAME = b"ref-twisted"


@implementer(smtp.IMessage)
class DiscardMessage:
    def lineReceived(self, line):
        pass

    def eomReceived(self):
        return defer.succeed(None)

    def connectionLost(self):
        pass


@implementer(smtp.IMessage)
class MaildirMessage:
    """Collects the message's lines; stores it whole before the 250."""

    def __init__(self, box):
        self.box = box
        self.lines = []

    def lineReceived(self, line):
        self.lines.append(line)

    def eomReceived(self):
        self.lines.append(b"")
        self.box.add(b"\n".join(self.lines))
        return defer.succeed(None)

    def connectionLost(self):
        self.lines = []


@implementer(smtp.IMessageDelivery)
class DiscardDelivery:
    """Accepts every sender and recipient; each message goes nowhere, or
    into C{box} (a C{mailbox.Maildir}) when one is given."""

    def __init__(self, box=None):
        self.box = box

    def receivedHeader(self, helo, origin, recipients):
        # None: no Received: header is built, as nothing is stored anyway.
        return None

    def validateFrom(self, helo, origin):
        return origin

    def validateTo(self, user):
        if self.box is None:
            return DiscardMessage
        return lambda: MaildirMessage(self.box)


class BenchESMTP(smtp.ESMTP):
    def connectionMade(self):
        # Request/response SMTP suffers from Nagle + delayed ACK; asyncio and
        # the driver set TCP_NODELAY, so do the same here for a fair comparison.
        self.transport.setTcpNoDelay(True)
        super().connectionMade()

    def do_NOOP(self, rest):
        # twisted.mail's SMTP has no NOOP (RFC 5321 requires one), and the
        # latency figure cycles through NOOP: answer it as any server would.
        self.sendCode(250, b"OK")


class DiscardFactory(protocol.ServerFactory):
    def __init__(self, context_factory, box=None):
        self.context_factory = context_factory
        self.box = box

    def buildProtocol(self, addr):
        proto = BenchESMTP(contextFactory=self.context_factory)
        proto.host = HOSTNAME
        proto.delivery = DiscardDelivery(self.box)
        proto.factory = self
        return proto


def context_factory(cert_file, key_file):
    with open(key_file) as key, open(cert_file) as cert:
        return ssl.PrivateCertificate.loadPEM(key.read() + cert.read()).options()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--maildir", help="store every message here (stdlib mailbox.Maildir)")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    tls = context_factory(args.tls_cert, args.tls_key) if args.tls_cert else None
    box = mailbox.Maildir(args.maildir, factory=None, create=True) if args.maildir else None
    port = reactor.listenTCP(args.port, DiscardFactory(tls, box), interface="127.0.0.1")
    print(f"PORT {port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
