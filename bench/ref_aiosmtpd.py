"""Reference server for the benchmark: an aiosmtpd server that discards
mail, or with --maildir stores it through aiosmtpd's own Mailbox handler.

Usage: python bench/ref_aiosmtpd.py --port 0 [--maildir DIR] [--tls-cert FILE --tls-key FILE]

Listens on 127.0.0.1 only and prints exactly one line, ``PORT <n>``, once the
socket is listening (so ``--port 0`` needs no port-picking race in the
driver).  Its banner names it: ``220 ref-aiosmtpd ...``.  STARTTLS is
advertised only when a certificate is given.  With --maildir, every message
goes through ``aiosmtpd.handlers.Mailbox`` (the standard library's
``mailbox.Maildir``) before the server confirms it.
"""

import argparse
import asyncio
import logging
import ssl

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP

# An explicit name keeps aiosmtpd from calling socket.getfqdn(), which can
# stall on machines with slow DNS and would then pollute the startup figure.
HOSTNAME = "ref-aiosmtpd"


class DiscardHandler:
    """Accepts every message and keeps nothing."""

    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


def tls_context(cert_file, key_file):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


async def serve(port, context, handler):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname=HOSTNAME, tls_context=context),
        host="127.0.0.1",
        port=port,
    )
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--maildir", help="store every message here (aiosmtpd.handlers.Mailbox)")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    # The driver reads stdout for the PORT line only; aiosmtpd's per-session
    # warnings (e.g. a client dropping the connection) are expected under load.
    logging.disable(logging.WARNING)
    context = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    handler = Mailbox(args.maildir) if args.maildir else DiscardHandler()
    asyncio.run(serve(args.port, context, handler))


if __name__ == "__main__":
    main()
