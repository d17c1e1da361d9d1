"""Reference server for the benchmark: a twisted.mail ESMTP server that discards mail.

Usage: python bench/ref_twisted.py --port 0 [--tls-cert FILE --tls-key FILE]

Listens on 127.0.0.1 only and prints exactly one line, ``PORT <n>``, once the
socket is listening.  Its banner names it: ``220 ref-twisted ... ESMTP``.
STARTTLS is advertised only when a certificate is given.
"""

import argparse

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


@implementer(smtp.IMessageDelivery)
class DiscardDelivery:
    """Accepts every sender and recipient; each message goes nowhere."""

    def receivedHeader(self, helo, origin, recipients):
        # None: no Received: header is built, as nothing is stored anyway.
        return None

    def validateFrom(self, helo, origin):
        return origin

    def validateTo(self, user):
        return DiscardMessage


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
    def __init__(self, context_factory):
        self.context_factory = context_factory

    def buildProtocol(self, addr):
        proto = BenchESMTP(contextFactory=self.context_factory)
        proto.host = HOSTNAME
        proto.delivery = DiscardDelivery()
        proto.factory = self
        return proto


def context_factory(cert_file, key_file):
    with open(key_file) as key, open(cert_file) as cert:
        return ssl.PrivateCertificate.loadPEM(key.read() + cert.read()).options()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    tls = context_factory(args.tls_cert, args.tls_key) if args.tls_cert else None
    port = reactor.listenTCP(args.port, DiscardFactory(tls), interface="127.0.0.1")
    print(f"PORT {port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
