"""
Public helpers for testing against the emulator without sockets.

L{Harness} drives the sans-IO core in memory and records the same
L{Transcript} the network host records, so a test reads like a session::

    h = Harness("ims55sp4")
    h.connect()
    assert h.send(b"HELO client\\r\\n") == b"250 OK\\r\\n"
    assert "<- 250 OK" in h.human()
"""

from __future__ import annotations

import socket
import sys
import time

from emulator.auth import mechanisms as auth

from emulator.profiles import loader as profiles
from emulator.core.actions import Close, Delay, Deliver, Event, Message, Send, StartTLS
from emulator.capture.transcript import Transcript
from emulator.core.connection import Server, ServerConnection

DATE = "Mon, 23 Nov 2026 10:00:00 +0000"

#: The command that runs twistd in this interpreter, to which twistd's own
#: arguments are added (C{python -m twisted.scripts.twistd} would exit at once:
#: that module has no C{__main__} block).
TWISTD = (sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.exit(run())")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel picked and let go again, for a server in another
    process that cannot report back the port 0 gave it before it listens.
    Racy: another process may take it first, which tests accept."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_for_banner(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> bytes:
    """The first bytes a server sends once it listens on C{port} (its 220
    banner); raises C{TimeoutError} if none arrive within C{timeout} seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=2) as conn:
                banner = conn.recv(1024)
                if banner:
                    return banner
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"no banner on {host}:{port} within {timeout} s")


class Harness:
    """One in-memory connection to an emulated server.

    @ivar messages: messages the server accepted (as L{Message}).
    @ivar closed: the server closed the connection (C{"close"} or C{"abort"}).
    @ivar tls_pending: the server asked for a TLS handshake; call L{handshake}.

    C{accounts} are added to the profile's (C{"user:password"},
    C{"DOMAIN\\user:password"} or L{emulator.auth.accounts.Account}), as
    C{--account} does.
    """

    def __init__(self, profile, *, tls_available: bool = False, peer=("192.0.2.10", 1025),
                 hostname: str | None = None, server: Server | None = None, session_id: str = "s1",
                 accounts=(), seed: int = 0, faults=()):
        if server is None:
            server = Server(_load(profile, accounts), hostname=hostname, tls_available=tls_available, seed=seed)
            server.set_faults(faults)
        self.server = server
        self.conn = ServerConnection(server, peer=peer, session_id=session_id, date=DATE)
        self.transcript = Transcript(session_id, server.profile.name, f"{peer[0]}:{peer[1]}", seed=server.seed)
        self.messages: list[Message] = []
        self.closed: str | None = None
        self.tls = False
        self.tls_pending = False
        self.delays: list[float] = []
        self.fail_storage = False

    def connect(self) -> bytes:
        """Open the connection; return the greeting bytes."""
        return self._run(self.conn.connect())

    def send(self, data: bytes) -> bytes:
        """Client bytes in; the server's bytes out."""
        self.transcript.received(0, data, self.tls)
        return self._run(self.conn.receive(data))

    def handshake(self, **info) -> bytes:
        """Complete the TLS handshake the server asked for."""
        assert self.tls_pending, "the server did not ask for TLS"
        self.tls_pending, self.tls = False, True
        self.transcript.event(0, "tls_established", **info)
        return self._run(self.conn.tls_established(info))

    def lose(self) -> bytes:
        """The client goes away."""
        return self._run(self.conn.connection_lost())

    def timeout(self) -> bytes:
        """The idle timer fires."""
        self.transcript.event(0, "idle_timeout")
        return self._run(self.conn.timed_out())

    def human(self) -> str:
        return self.transcript.human()

    def _run(self, actions) -> bytes:
        out = []
        for action in actions:
            kind = type(action)
            if kind is Send:
                out.append(action.data)
                self.transcript.sent(0, action.data, self.tls)
            elif kind is Deliver:
                reply = action.failed if self.fail_storage else action.accepted
                if not self.fail_storage:
                    self.messages.append(action.message)
                    self.transcript.event(0, "message_accepted", bytes=len(action.message.data),
                                          recipients=len(action.message.recipients))
                out.append(reply)
                self.transcript.sent(0, reply, self.tls)
            elif kind is Event:
                self.transcript.event(0, action.name, **action.fields)
            elif kind is StartTLS:
                self.tls_pending = True
                self.transcript.event(0, "tls_starting")
            elif kind is Close:
                self.closed = "abort" if action.abort else "close"
                self.transcript.event(0, "closed", abort=action.abort)
            elif kind is Delay:
                self.delays.append(action.seconds)
                self.transcript.event(0, "delay", seconds=action.seconds)
        return b"".join(out)


class ReactorThread:
    """The global reactor, run once per process in a daemon thread.

    Tests and fixtures call into it with L{call}; the reactor is never
    stopped (it cannot be restarted), and nothing happens at import time.
    """

    _thread = None

    @classmethod
    def call(cls, function, *args, **kwargs):
        """Run C{function} in the reactor thread and return its result
        (waiting for it if it returns a Deferred).

        A reactor that something else already runs in another thread is
        used as it is; calling from the reactor's own thread (pytest-twisted
        runs it in the test's thread) is an error, where waiting would hang."""
        import threading

        from twisted.internet import reactor
        from twisted.internet.threads import blockingCallFromThread
        from twisted.python.threadable import isInIOThread

        ours = cls._thread
        if threading.current_thread() is ours or (ours is None and reactor.running and isInIOThread()):
            raise RuntimeError("the Twisted reactor runs in this thread (pytest-twisted?); the emulator's "
                               "helpers run it in a thread of their own and cannot wait for it here")
        cls._ensure_running()
        return blockingCallFromThread(reactor, function, *args, **kwargs)

    @classmethod
    def _ensure_running(cls) -> None:
        import threading

        from twisted.internet import reactor

        if cls._thread is None and not reactor.running:
            cls._thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                                           name="emulator-reactor", daemon=True)
            cls._thread.start()


class RunningServer:
    """An emulated server listening on 127.0.0.1 in the reactor thread.

    @ivar host: C{"127.0.0.1"}.
    @ivar port: the port the system gave (the listener binds port 0).
    @ivar emulation: the L{emulator.host.emulation.Emulation}, with its stores.
    """

    def __init__(self, emulation, port):
        self.emulation = emulation
        self._port = port
        self.host = port.getHost().host
        self.port = port.getHost().port

    @property
    def messages(self):
        return list(self.emulation.store.recent)

    @property
    def transcripts(self):
        return self.emulation.transcripts.all()

    @property
    def ca_path(self):
        """The test CA's certificate, for clients that verify the server."""
        from emulator.tls.certs import CertStore

        return CertStore(self.emulation.state_dir).ca_path()

    def stop(self) -> None:
        ReactorThread.call(self._port.stopListening)


def _load(profile, accounts=()) -> profiles.Profile:
    """A profile given by name, path or as loaded, with C{accounts} added."""
    loaded = profile if isinstance(profile, profiles.Profile) else profiles.load(profile)
    return auth.with_accounts(loaded, accounts)


def start_server(profile, *, maildir=None, transcripts=None, hostname=None, state_dir=None,
                 tls_cert=None, tls_key=None, implicit_tls: bool = False,
                 interface: str = "127.0.0.1", middlebox=None, upstream=None, accounts=(),
                 seed: int | None = None) -> RunningServer:
    """Start a server for C{profile} on C{interface}, port 0, in the reactor thread.

    The profile's C{tls:} section decides about certificates (generated ones
    are cached in C{state_dir}); C{tls_cert}/C{tls_key} replace them.
    C{middlebox} (a type name, file or L{emulator.middlebox.Middlebox})
    stands in front of the profile, or of C{upstream} (a client endpoint).
    C{accounts} are added to the profile's, as for L{Harness}."""
    from emulator.host.emulation import Emulation
    from emulator.capture.maildir import MessageStore
    from emulator.capture.transcript import TranscriptStore

    if isinstance(middlebox, str):
        from emulator.middlebox import load

        middlebox = load(middlebox)
    emulation = Emulation(_load(profile, accounts), hostname=hostname, state_dir=state_dir, tls_cert=tls_cert,
                          tls_key=tls_key, store=MessageStore(maildir), transcripts=TranscriptStore(transcripts),
                          middlebox=middlebox, upstream=upstream, seed=seed)

    def listen():
        from twisted.internet import reactor

        factory = emulation.factory(f"tcp:0:interface={interface}", implicit_tls=implicit_tls, reactor=reactor)
        return RunningServer(emulation, reactor.listenTCP(0, factory, interface=interface))

    return ReactorThread.call(listen)
