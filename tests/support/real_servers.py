"""Real SMTP servers on loopback for the learned-persona tests: aiosmtpd,
Twisted's twisted.mail ESMTP, and Postfix in a throwaway instance.

Each is configured as a small site would be: a host name, STARTTLS with a
certificate from a throwaway CA (trustme), a recipient domain it relays
nothing to (C{refused.example}), a queue id in the reply after DATA.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from emulator.testing.harness import ReactorThread, free_port, wait_for_banner

REFUSED = "refused.example"
RECIPIENT = "postmaster@example.test"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"


def _server_context(hostname: str) -> ssl.SSLContext:
    import trustme

    cert = trustme.CA().issue_cert(hostname)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@contextlib.contextmanager
def aiosmtpd_server(hostname: str = "mx.aiosmtpd.test"):
    """aiosmtpd's SMTP with STARTTLS, AUTH listed outside TLS too, SIZE; yields its port."""
    from aiosmtpd.controller import Controller

    class Handler:
        queued = 0

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address.lower().endswith("@" + REFUSED):
                return "550 5.7.1 Relaying denied"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            Handler.queued += 1
            return f"250 2.0.0 Ok: queued as A{Handler.queued:05d}X{time.monotonic_ns() % 10**6:06d}"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, server_hostname=hostname,
                            tls_context=_server_context(hostname), auth_require_tls=False,
                            data_size_limit=10_240_000)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextlib.contextmanager
def twisted_server(hostname: str = "mx.twisted.test"):
    """twisted.mail.smtp.ESMTP with STARTTLS and AUTH LOGIN/PLAIN listed, in the
    reactor thread the emulator's helpers run; yields its port."""
    from OpenSSL import crypto
    from twisted.internet import protocol, ssl as tssl
    from twisted.mail import smtp
    from twisted.mail.imap4 import LOGINCredentials, PLAINCredentials
    import trustme

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from ref_twisted import DiscardDelivery  # the benchmark's reference server: message and delivery

    cert = trustme.CA().issue_cert(hostname)
    options = tssl.CertificateOptions(
        privateKey=crypto.load_privatekey(crypto.FILETYPE_PEM, cert.private_key_pem.bytes()),
        certificate=crypto.load_certificate(crypto.FILETYPE_PEM, cert.cert_chain_pems[0].bytes()))

    class Delivery(DiscardDelivery):
        """The benchmark's discarding delivery, refusing one domain."""

        def validateTo(self, user):
            if user.dest.domain.decode() == REFUSED:
                raise smtp.SMTPBadRcpt(user)
            return super().validateTo(user)

    class Factory(protocol.ServerFactory):
        def buildProtocol(self, addr):
            p = smtp.ESMTP({b"LOGIN": LOGINCredentials, b"PLAIN": PLAINCredentials}, options)
            p.host = hostname.encode()
            p.delivery = Delivery()
            p.factory = self
            return p

    def listen():
        from twisted.internet import reactor
        return reactor.listenTCP(0, Factory(), interface="127.0.0.1")

    port = ReactorThread.call(listen)
    try:
        yield port.getHost().port
    finally:
        ReactorThread.call(port.stopListening)


_MAIN_CF = """\
    compatibility_level = 3.6
    queue_directory = {dir}/queue
    data_directory = {dir}/data
    command_directory = /usr/sbin
    daemon_directory = /usr/lib/postfix/sbin
    meta_directory = /etc/postfix
    shlib_directory = /usr/lib/postfix
    mail_owner = postfix
    setgid_group = postdrop
    myhostname = {hostname}
    mydomain = example.test
    myorigin = $myhostname
    mydestination = $myhostname, example.test
    inet_interfaces = 127.0.0.1
    inet_protocols = ipv4
    mynetworks = 127.0.0.0/8
    smtpd_relay_restrictions = reject_unauth_destination
    local_transport = discard
    default_transport = discard
    relay_transport = discard
    alias_maps =
    alias_database =
    local_recipient_maps =
    maillog_file = {dir}/maillog
    maillog_file_prefixes = {dir}
    syslog_name = postfix-learn-test
    smtpd_banner = $myhostname ESMTP $mail_name
    # No session shows BDAT's replies and the rfc5321 base has none, so a learned profile cannot list CHUNKING
    # (docs/own-server.md, "What a learned persona cannot say").
    smtpd_discard_ehlo_keywords = chunking
    """
_MASTER_CF = """\
    127.0.0.1:{port} inet n - n - - smtpd
    pickup    unix  n - n 60 1 pickup
    cleanup   unix  n - n - 0 cleanup
    qmgr      unix  n - n 300 1 qmgr
    rewrite   unix  - - n - - trivial-rewrite
    bounce    unix  - - n - 0 bounce
    defer     unix  - - n - 0 bounce
    trace     unix  - - n - 0 bounce
    verify    unix  - - n - 1 verify
    proxymap  unix  - - n - - proxymap
    error     unix  - - n - - error
    retry     unix  - - n - - error
    discard   unix  - - n - - discard
    anvil     unix  - - n - 1 anvil
    scache    unix  - - n - 1 scache
    postlog   unix-dgram n - n - 1 postlogd
    """


def _settings(base: str, extra: str) -> str:
    """main.cf text: C{base} with each C{name = value} of C{extra} put in
    place of the line that sets the same name (or added).  A name set twice
    makes every Postfix process warn at start, and the warnings can fill the
    postlog socket until postlogd and smtpd block on it."""
    lines = base.splitlines()
    for line in extra.splitlines():
        name = line.split("=", 1)[0].strip()
        if "=" not in line or not name:
            continue
        at = [i for i, old in enumerate(lines) if old.split("=", 1)[0].strip() == name and "=" in old]
        if at:
            lines[at[0]] = line.strip()
        else:
            lines.append(line.strip())
    return "\n".join(lines) + "\n"


def postfix_installed() -> bool:
    return os.path.exists(POSTFIX) and os.path.isdir("/usr/lib/postfix/sbin") and os.geteuid() == 0


@contextlib.contextmanager
def postfix_server(hostname: str = "mx.postfix.test", *, main_cf: str = "", master_cf: str = "", folder_out=None):
    """A throwaway Postfix instance: its own configuration, queue and log in
    a temporary folder, smtpd on a loopback port; the system's Postfix
    configuration is never read or changed.  Yields its port.

    C{main_cf} holds settings that replace or add to the base ones,
    C{master_cf} lines added to the services; C{folder_out}, a list, gets the
    instance's folder (its C{maillog} is the log)."""
    folder = Path(tempfile.mkdtemp(prefix="postfix-learn-"))
    os.chmod(folder, 0o755)  # smtpd runs as the postfix user
    port = free_port()
    (folder / "conf").mkdir()
    (folder / "data").mkdir()
    (folder / "queue").mkdir()
    shutil.chown(folder / "data", "postfix")
    (folder / "conf" / "main.cf").write_text(_settings(textwrap.dedent(_MAIN_CF).format(dir=folder, hostname=hostname),
                                                       textwrap.dedent(main_cf)))
    (folder / "conf" / "master.cf").write_text(textwrap.dedent(_MASTER_CF).format(port=port)
                                               + textwrap.dedent(master_cf))
    if folder_out is not None:
        folder_out.append(folder)
    conf = str(folder / "conf")
    subprocess.run([POSTFIX, "-c", conf, "check"], check=True, timeout=60, capture_output=True)
    master = subprocess.Popen([POSTFIX, "-c", conf, "start-fg"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_banner(port, timeout=30)
        yield port
    finally:
        subprocess.run([POSTFIX, "-c", conf, "stop"], timeout=60, capture_output=True)
        try:
            master.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(master.pid, signal.SIGKILL)
            master.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
