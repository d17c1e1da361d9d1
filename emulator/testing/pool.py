"""
Emulated servers for client test suites: a pool of listeners on 127.0.0.1,
started or reused by profile, reset between tests, checked for server-side
errors.  The pytest plugin (L{emulator.testing.plugin}) is a thin layer over
this; another runner can use it directly::

    pool = ServerPool(state_dir)
    pool.begin_test()
    server = pool.start("ims55sp4")      # host, port, ca_path, transcripts, messages
    ...                                   # run the client against server.host, server.port
    pool.check_errors()                   # raises ServerSideError if the emulator failed
    pool.close()

One reactor serves every server, in a background thread (L{ReactorThread});
each server has its own emulation (messages, transcripts, cross-connection
state).  A test that asks again for a server it used earlier in the session
gets the same listener, reset: its open connections closed, its messages,
transcripts, per-peer memory and recorded errors forgotten.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

from emulator.control.listeners import headed
from emulator.host.emulation import build
from emulator.host.recipe import DEFAULT_PROFILE, Recipe, load_profile, with_relay
from emulator.profiles import loader as profiles
from emulator.testing.harness import ReactorThread, listen

LOOPBACK = "127.0.0.1"


class ServerSideError(Exception):
    """The emulator raised an exception while it served a test's client."""


@dataclasses.dataclass(eq=False)
class _Server:
    """One pooled listener and its emulation."""

    profile: profiles.Profile
    emulation: "Emulation"  # noqa: F821
    listener: "Listener"  # noqa: F821
    port: object
    host: str
    number: int
    keep: tuple = ()

    @property
    def label(self) -> str:
        return f"{self.emulation.served} on {self.host}:{self.number}"


class ServerPool:
    """Servers by profile and options, started once and reused.

    @ivar state_dir: where generated certificates and the test CA live.
    """

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self._servers: dict[tuple, _Server] = {}
        self._profiles: dict[str, profiles.Profile] = {}
        self._used: list[_Server] = []
        self._unhandled: list = []
        self._observing = False

    # -- starting ----------------------------------------------------------

    def start(self, profile: str | profiles.Profile = DEFAULT_PROFILE, **options) -> "LegacySMTP":
        """A new handle on a server for C{profile} (see L{LegacySMTP.start})."""
        return LegacySMTP(self).start(profile, **options)

    def acquire(self, profile, *, tls: bool = False, implicit_tls: bool = False, hostname: str | None = None,
                middlebox=None, accounts=(), local_domains=(), relay_from=()) -> _Server:
        """The pooled server for these options: started on first use, reset
        on the first use in each test."""
        loaded = self._load(profile)
        # Objects (a loaded profile, a middlebox) count by identity; the
        # server keeps them, so an id is never reused while it is the key.
        objects = tuple(o for o in (profile, middlebox) if o is not None and not isinstance(o, str))
        key = (profile if isinstance(profile, str) else id(profile), bool(tls), bool(implicit_tls), hostname,
               middlebox if middlebox is None or isinstance(middlebox, str) else id(middlebox), tuple(accounts),
               tuple(local_domains), tuple(relay_from))
        loaded = with_relay(load_profile(loaded, accounts), tuple(local_domains), tuple(relay_from))
        server = self._servers.get(key)
        if server is None:
            server = self._servers[key] = self._listen(loaded, tls=tls, implicit_tls=implicit_tls, hostname=hostname,
                                                       middlebox=middlebox)
            server.keep = objects
        elif server not in self._used:
            self.reset(server)
        if server not in self._used:
            self._used.append(server)
        return server

    def _load(self, profile) -> profiles.Profile:
        if isinstance(profile, profiles.Profile):
            return profile
        if profile not in self._profiles:
            self._profiles[profile] = profiles.load(profile)
        return self._profiles[profile]

    def _listen(self, loaded: profiles.Profile, *, tls: bool, implicit_tls: bool, hostname: str | None,
                middlebox) -> _Server:
        cert = key = None
        if tls:
            cert, key = self._loopback_certificate(loaded, hostname or loaded.hostname)
        emulation = build(Recipe(loaded, hostname=hostname, middlebox=middlebox, state_dir=self.state_dir,
                                 tls_cert=cert, tls_key=key))

        def start():
            self._observe()
            service = listen(emulation, LOOPBACK, implicit_tls=implicit_tls)
            port = service.port
            return _Server(loaded, emulation, service.factory, port, LOOPBACK, port.getHost().port)

        return ReactorThread.call(start)

    def _loopback_certificate(self, loaded: profiles.Profile, hostname: str) -> tuple[Path, Path]:
        """A certificate from the test CA for the host name, C{localhost} and
        127.0.0.1, with the profile's key type and expiry."""
        from emulator.tls.certs import CertSpec, CertStore

        config = loaded.tls
        names = dataclasses.replace(config, names=("{hostname}", "localhost", LOOPBACK))
        dns, ips = names.split_names(hostname)
        spec = CertSpec(dns_names=dns, ip_addresses=ips, expired=config.expired, self_signed=config.self_signed,
                        key_type=config.key_type, key_size=config.key_size)
        return CertStore(self.state_dir).leaf(spec)

    # -- between tests -----------------------------------------------------

    def begin_test(self) -> None:
        """A new test begins: the next use of each server resets it."""
        self._used = []

    def reset(self, server: _Server) -> None:
        """Close the server's connections; forget its messages, transcripts,
        cross-connection state and errors."""
        from emulator.control.listeners import reset

        ReactorThread.call(reset, [server.emulation], [server.listener])

    def check_errors(self, note: str = "") -> None:
        """Raise L{ServerSideError} for what the servers used in this test
        raised, with C{note} added to it."""
        __tracebackhide__ = True
        used = list(self._used)
        if not used and not self._unhandled:
            return
        errors, unhandled, sessions = ReactorThread.call(self._take_errors, used)
        every = errors + unhandled
        if not every:
            return
        first = every[0]
        where = ", ".join(s.label for s in used) or "the reactor thread"
        if sessions:
            where += f" (session {', '.join(sessions)})"
        summary = (str(first).splitlines() or [""])[0]
        more = f"; and {len(every) - 1} more" if len(every) > 1 else ""
        error = ServerSideError(f"{where}: the emulator raised {type(first).__name__}: {summary}{more}")
        if note:
            error.add_note(note)
        raise error from first

    def _take_errors(self, used: list[_Server]):
        from emulator.control.listeners import take_errors

        errors = take_errors([s.emulation for s in used], [s.listener for s in used])
        unhandled, self._unhandled = self._unhandled, []
        sessions = [t.session_id for s in used for t in s.emulation.transcripts.all()
                    if t.events("internal_error")] if errors else []
        return errors, unhandled, sessions

    def _observe(self) -> None:
        """Collect failures logged in the reactor thread outside a session,
        such as an exception in a delayed call (a session's own go to its
        factory's errors)."""
        if self._observing:
            return
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(self._log_event)
        self._observing = True

    def _log_event(self, event: dict) -> None:
        failure = event.get("log_failure")
        if (failure is not None and event.get("log_namespace") != "emulator"
                and threading.current_thread() is ReactorThread._thread):
            self._unhandled.append(failure.value)

    def report(self, limit: int = 20) -> str:
        """The arrow form of the last C{limit} sessions of each server used in
        this test (for a failing test's report)."""
        parts = []
        for server in list(self._used):
            transcripts = ReactorThread.call(_sessions, server)[-limit:]
            parts.append(f"--- {server.label}: {len(transcripts)} session(s) ---\n")
            parts.extend(headed(t) for t in transcripts)
        return "".join(parts)

    def close(self) -> None:
        """Stop every listener and close its connections (the reactor thread keeps running)."""
        servers, self._servers = list(self._servers.values()), {}
        if not servers and not self._observing:
            return

        def stop():
            from twisted.internet import defer
            from twisted.logger import globalLogPublisher

            if self._observing:
                globalLogPublisher.removeObserver(self._log_event)
                self._observing = False
            return defer.gatherResults([defer.maybeDeferred(s.port.stopListening) for s in servers]
                                       + [s.listener.close_connections() for s in servers])

        ReactorThread.call(stop)


def _sessions(server: _Server) -> list:
    return sorted(server.emulation.transcripts.all(), key=lambda t: t.session_id)


class LegacySMTP:
    """The emulated SMTP server of one test (the C{legacy_smtp} fixture).

    Call L{start} (or use the C{legacy_smtp} marker, or parametrize the
    fixture) to get a server; then point the client under test at
    L{host}:L{port}, trust L{ca_path} for TLS, and assert on L{messages}
    and L{transcripts}.
    """

    def __init__(self, pool: ServerPool):
        self._pool = pool
        self._server: _Server | None = None

    def start(self, profile: str | profiles.Profile = DEFAULT_PROFILE, *, tls: bool = False,
              implicit_tls: bool = False, hostname: str | None = None, middlebox=None,
              accounts=(), local_domains=(), relay_from=()) -> "LegacySMTP":
        """Serve C{profile} (a name from C{emulator profiles}, a path, or a
        loaded profile) on 127.0.0.1, reusing the session's server for the
        same arguments (reset), and return this handle.

        @param tls: bind a certificate from the session's test CA that names
            the host name, C{localhost} and 127.0.0.1, instead of what the
            profile binds (often nothing: Exchange 5.5 without a certificate),
            so a verifying client that dials 127.0.0.1 accepts it.
        @param implicit_tls: TLS from the first byte (SMTPS); only for
            profiles whose product offered it (C{tls: implicit: true}).
        @param hostname: the host name the server announces (default: the profile's).
        @param middlebox: a firewall in front of the server (a type such as
            C{pix-mailguard}, a YAML file, or an L{emulator.middlebox.Middlebox});
            default: the profile's own C{middlebox:} section, if any.
        @param accounts: accounts added to the profile's (C{"user:password"},
            C{"DOMAIN\\user:password"} or L{emulator.auth.accounts.Account}), as C{--account} does.
        @param local_domains: domains whose recipients anyone may send to;
            RCPT to another domain gets the profile's C{relay_denied} unless
            the client's address is in C{relay_from} (as C{--local-domain}).
        @param relay_from: C{ADDRESS/PREFIX} networks allowed to relay (as
            C{--relay-from}); the client of a test comes from 127.0.0.1.
        @raise emulator.profiles.loader.ProfileError: an unknown or broken profile or middlebox.
        @raise ValueError: the profile cannot be served that way (or a bad relay entry).
        """
        self._server = self._pool.acquire(profile, tls=tls, implicit_tls=implicit_tls, hostname=hostname,
                                          middlebox=middlebox, accounts=accounts, local_domains=local_domains,
                                          relay_from=relay_from)
        return self

    @property
    def _current(self) -> _Server:
        if self._server is None:
            raise RuntimeError("no server started: call legacy_smtp.start(PROFILE), or mark the test "
                               "@pytest.mark.legacy_smtp(PROFILE)")
        return self._server

    @property
    def host(self) -> str:
        """C{"127.0.0.1"}."""
        return self._current.host

    @property
    def port(self) -> int:
        """The port the system gave the listener (it binds port 0)."""
        return self._current.number

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def profile(self) -> profiles.Profile:
        """The loaded profile served (C{.name}, C{.commands}, C{.tls}, ...)."""
        return self._current.profile

    @property
    def hostname(self) -> str:
        """The host name the server announces."""
        return self._current.emulation.hostname

    @property
    def ca_path(self) -> Path:
        """The test CA certificate (PEM) that signs generated server certificates."""
        from emulator.tls.certs import CertStore

        return CertStore(self._pool.state_dir).ca_path()

    @property
    def transcripts(self) -> list:
        """Every session since the test began, oldest first, open ones
        included (L{emulator.capture.transcript.Transcript}: C{.human()},
        C{.client_bytes()}, C{.server_bytes()}, C{.events(name)})."""
        return ReactorThread.call(_sessions, self._current)

    @property
    def messages(self) -> list:
        """Messages accepted since the test began, oldest first
        (L{emulator.capture.maildir.Captured}: C{.message.data} holds the bytes as
        sent, C{.envelope()} sender, recipients, HELO name, TLS state...)."""
        store = self._current.emulation.store
        return ReactorThread.call(lambda: list(store.recent))

    def human(self) -> str:
        """Every session in the arrow form, each under a C{=== session} line."""
        return "".join(headed(t) for t in self.transcripts)

    def wait_closed(self, timeout: float = 5.0) -> None:
        """Wait until every connection to the server has closed (the server
        processes a client's last bytes after the client has moved on).

        @raise TimeoutError: connections are still open after C{timeout} seconds.
        """
        server = self._current
        deadline = time.monotonic() + timeout
        while ReactorThread.call(lambda: bool(server.emulation.transcripts.open)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"connections to {server.label} still open after {timeout} s")
            time.sleep(0.002)

    def reset(self) -> None:
        """Close open connections; forget messages, transcripts, cross-connection
        state (such as IIS 4.0's per-peer memory) and recorded errors."""
        self._pool.reset(self._current)

    def check_errors(self) -> None:
        """Raise L{ServerSideError} now if the emulator failed while serving
        this test (the plugin also checks after the test and at teardown)."""
        self._pool.check_errors()

    def __repr__(self) -> str:
        return f"<LegacySMTP {self._current.label}>" if self._server else "<LegacySMTP (not started)>"
