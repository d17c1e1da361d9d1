#!/usr/bin/env python3
"""A typical modern client for `emulator matrix`: Python's smtplib.

    python3 examples/smtplib_client.py HOST PORT [--cafile PEM] [--mode smtp|smtps]

It sends one message: over SMTPS with --mode smtps, else in plaintext with
STARTTLS whenever the server lists it (and gives up if STARTTLS fails).
Certificates are checked as smtplib does, against the host it was given:
dialling 127.0.0.1, an FQDN-only certificate fails, which is KB Q273948's
pre-SP4 behaviour in a modern library.  Exit status 0 when the message was
accepted, 1 otherwise; the last reply goes to stdout.
"""

import argparse
import smtplib
import ssl
import sys

MESSAGE = b"From: <a@example.org>\r\nTo: <b@example.test>\r\nSubject: matrix\r\n\r\nHello from smtplib.\r\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--cafile", help="CA certificate(s) to trust (PEM)")
    parser.add_argument("--mode", choices=("smtp", "smtps"), default="smtp")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.cafile)
    client = None
    try:
        if args.mode == "smtps":
            client = smtplib.SMTP_SSL(args.host, args.port, context=context, timeout=args.timeout)
        else:
            client = smtplib.SMTP(args.host, args.port, timeout=args.timeout)
            client.ehlo()
            if client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
        client.sendmail("a@example.org", ["b@example.test"], MESSAGE)
        print("delivered:", client.quit())
        return 0
    except (smtplib.SMTPException, ssl.SSLError, OSError) as e:
        print(f"not delivered: {type(e).__name__}: {e}")
        return 1
    finally:
        if client is not None:
            client.close()


if __name__ == "__main__":
    sys.exit(main())
