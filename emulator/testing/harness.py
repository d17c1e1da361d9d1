"""
Public helpers for testing against the emulator without sockets.

L{Harness} drives the sans-IO core in memory and records the same
L{Transcript} the network host records (through the same interpreter of
actions, L{emulator.host.interpreter}), so a test reads like a session::

    h = Harness("ims55sp4")
    h.connect()
    assert h.send(b"HELO client\\r\\n") == b"250 OK\\r\\n"
    assert "<- 250 OK" in h.human()
"""

from __future__ import annotations

import socket
import sys
import time

from emulator.capture.transcript import Transcript
from emulator.core.actions import Message
from emulator.core.connection import Server, ServerConnection
from emulator.host.interpreter import Interpreter
from emulator.host.recipe import Recipe

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


class InMemory(Interpreter):
    """The wire of an in-memory host: what is written is collected and
    returned by the call that caused it, and no time passes (records at 0)."""

    def _now(self) -> float:
        return 0

    def _write(self, data: bytes) -> None:
        self._written.append(data)

    def _collect(self, step, *args) -> bytes:
        """Run C{step(*args)}; return what was written to the peer meanwhile."""
        self._written = []
        step(*args)
        written, self._written = self._written, []
        return b"".join(written)


class Harness(InMemory):
    """One in-memory connection to an emulated server.

    @ivar messages: messages the server accepted (as L{Message}).
    @ivar closed: the server closed the connection (C{"close"} or C{"abort"}).
    @ivar tls_pending: the server asked for a TLS handshake; call L{handshake}.
    @ivar delays: the seconds of each delay the server asked for (none is waited).
    @ivar fail_storage: set it, and storing a message fails (as a full disk would).

    C{accounts} are added to the profile's (C{"user:password"},
    C{"DOMAIN\\user:password"} or L{emulator.auth.accounts.Account}), as
    C{--account} does; C{local_domains} and C{relay_from} are added to its
    relay rules, as C{--local-domain} and C{--relay-from} do.
    """

    def __init__(self, profile, *, tls_available: bool = False, peer=("192.0.2.10", 1025),
                 hostname: str | None = None, server: Server | None = None, session_id: str = "s1",
                 accounts=(), seed: int = 0, faults=(), local_domains=(), relay_from=()):
        if server is None:
            recipe = Recipe(profile, accounts=tuple(accounts), hostname=hostname, seed=seed, faults=tuple(faults),
                            local_domains=tuple(local_domains), relay_from=tuple(relay_from))
            server = recipe.server(tls_available=tls_available)
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
        return self._collect(self._run, self.conn.connect())

    def send(self, data: bytes) -> bytes:
        """Client bytes in; the server's bytes out."""
        self._received(data)
        return self._collect(self._run, self.conn.receive(data))

    def handshake(self, **info) -> bytes:
        """Complete the TLS handshake the server asked for."""
        assert self.tls_pending, "the server did not ask for TLS"
        self.tls_pending = False
        self._secured(info)
        return self._collect(self._run, self.conn.tls_established(info))

    def lose(self) -> bytes:
        """The client goes away."""
        return self._collect(self._run, self.conn.connection_lost())

    def timeout(self) -> bytes:
        """The timer of the current phase fires (idle, DATA or handshake)."""
        return self._collect(self._run, self.conn.timed_out())

    def human(self) -> str:
        return self.transcript.human()

    # -- the wire (see emulator.host.interpreter) -------------------------

    def _start_tls(self) -> None:
        self.tls_pending = True

    def _close(self, abort: bool) -> None:
        self.closed = "abort" if abort else "close"
        self._ended(abort=abort)

    def _delay(self, seconds: float, rest: list) -> None:
        self.delays.append(seconds)
        self._record("delay", seconds=seconds)
        self._run(rest)

    def _store(self, message: Message) -> None:
        if self.fail_storage:
            raise OSError("fail_storage is set")
        self.messages.append(message)


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
    from emulator.host.emulation import build  # Twisted: imported only when a server starts

    emulation = build(Recipe(profile, accounts=tuple(accounts), hostname=hostname, middlebox=middlebox,
                             upstream=upstream, seed=seed, state_dir=state_dir, tls_cert=tls_cert, tls_key=tls_key,
                             maildir=maildir, transcripts=transcripts))
    service = ReactorThread.call(listen, emulation, interface, implicit_tls=implicit_tls)
    return RunningServer(emulation, service.port)


def listen(emulation, interface: str = "127.0.0.1", *, implicit_tls: bool = False):
    """Serve C{emulation} on C{interface}, a port the system picks, as
    C{twistd emulator} serves a C{--listen} endpoint
    (L{emulator.control.listeners.Control.serve}); call it in the reactor
    thread.  Returns the started L{emulator.control.listeners.ListenerService}:
    its C{factory} is the L{emulator.control.listeners.Listener}, its
    C{port} the listening port."""
    from twisted.internet import reactor

    from emulator.control.listeners import Control

    service = Control(emulation, reactor=reactor).serve(f"tcp:0:interface={interface}", implicit_tls=implicit_tls)
    service.startService()
    return service
