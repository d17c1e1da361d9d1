"""
Run-time control of served emulations: listeners whose profile can be
switched, reset, sessions, messages, server-side errors and faults.

L{Listener} is the protocol factory every listener of C{twistd emulator} and
of the pytest fixtures listens with: it hands each new connection to the
current emulation's factory (so switching the profile affects new
connections only) and keeps the live connections, so that a reset can close
them.  L{Control} is what the HTTP control API (L{emulator.control.api}) drives: the
listeners of one process, the emulations they have served, and the stores
those share.  L{Control.serve} is the one way a listener starts, under
twistd (as a service of the application) and in the fixtures' and
C{start_server}'s reactor thread alike.

Everything here runs in the reactor thread.
"""

from __future__ import annotations

import weakref

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.internet.protocol import Factory

from emulator.host.edge import log
from emulator.host.endpoints import ListenError, with_backlog
from emulator.host.emulation import Emulation, build
from emulator.host.recipe import Recipe


class Listener(Factory):
    """The factory of one listening port: delegates to the current
    emulation's factory and remembers live connections.

    @ivar endpoint: the endpoint description it was created for.
    @ivar address: C{(host, port)} once bound.
    """

    noisy = False

    def __init__(self, endpoint: str, emulation: Emulation, *, implicit_tls: bool = False, reactor=None):
        self.endpoint = endpoint
        self.implicit_tls = implicit_tls
        self.reactor = reactor
        self.address: tuple[str, int] | None = None
        self._targets: dict[int, Factory] = {}
        self._live: weakref.WeakSet = weakref.WeakSet()
        self.emulation = emulation
        self.target = self._target(emulation)

    def _target(self, emulation: Emulation) -> Factory:
        if self.implicit_tls and not emulation.profile.tls.implicit:
            raise ValueError(f"{emulation.profile.name} never offered TLS from the first byte "
                             "(tls: implicit: false), as KB Q218430 describes for Exchange 5.5")
        key = id(emulation)
        if key not in self._targets:
            self._targets[key] = emulation.factory(self.endpoint, implicit_tls=self.implicit_tls,
                                                   reactor=self.reactor)
        return self._targets[key]

    def switch(self, emulation: Emulation) -> None:
        """Serve new connections from C{emulation}; open ones keep theirs.

        @raise ValueError: this listener is implicit TLS and C{emulation}
            cannot serve that (its profile never offered it, or it has no
            certificate).
        """
        target = self._target(emulation)
        if target is self.target:
            return
        if self.numPorts:
            target.doStart()
            self.target.doStop()
        self.emulation, self.target = emulation, target

    def bound(self, port) -> None:
        """The listening port is open (the fixtures and C{twistd emulator} call this)."""
        address = port.getHost()
        self.address = (address.host, address.port)

    def buildProtocol(self, addr):
        protocol = self.target.buildProtocol(addr)
        if protocol is not None:
            self._live.add(protocol)
        return protocol

    def startFactory(self) -> None:
        self.target.doStart()

    def stopFactory(self) -> None:
        self.target.doStop()

    def logPrefix(self) -> str:
        return self.target.logPrefix()

    def live(self) -> list:
        """The protocols whose connection is still open."""
        return [p for p in list(self._live) if _open(p)]

    def close_connections(self) -> defer.Deferred:
        """Abort every open connection; fires once all of them are closed
        (their sessions finished), after at most 100 reactor turns."""
        live = self.live()
        for protocol in live:
            protocol.transport.abortConnection()
        return _until(self.reactor, lambda: not any(_open(p) for p in live))

    def describe(self) -> dict:
        host, port = self.address or (None, None)
        return {"endpoint": self.endpoint, "host": host, "port": port,
                "profile": self.emulation.profile.name, "serves": self.emulation.served,
                "implicit_tls": self.implicit_tls,
                "open_connections": len(self.live())}


def _open(protocol) -> bool:
    transport = getattr(protocol, "transport", None)
    return bool(transport is not None and getattr(transport, "connected", False)
                and not getattr(transport, "disconnected", False))


def _until(reactor, done, turns: int = 100) -> defer.Deferred:
    """A Deferred that fires when C{done()} is true, checked once per reactor
    turn, or after C{turns} turns at most."""
    result = defer.Deferred()

    def check(left: int) -> None:
        if done() or left == 0:
            result.callback(None)
        else:
            reactor.callLater(0, check, left - 1)

    check(turns)
    return result


def headed(transcript) -> str:
    """A session's arrow form under a C{=== session ...} line (as C{emulator transcript} prints it)."""
    head = f"=== session {transcript.session_id} profile {transcript.profile} peer {transcript.peer}\n"
    return head + transcript.human()


def _error_lists(emulations, listeners) -> list[list]:
    """The C{errors} lists of the emulations' SMTP factories and of the
    listeners' targets (a middlebox in front has its own)."""
    factories = [f for e in emulations for f in e.factories]
    factories += [t for l in listeners for t in l._targets.values() if hasattr(t, "errors")]
    return list({id(f.errors): f.errors for f in factories}.values())


def take_errors(emulations, listeners=()) -> list[BaseException]:
    """The server-side exceptions the emulations' (and listeners')
    connections raised since the last call; they are forgotten."""
    errors = []
    for found in _error_lists(emulations, listeners):
        errors.extend(found)
        found.clear()
    return errors


def reset(emulations, listeners) -> defer.Deferred:
    """Close the listeners' open connections, then forget messages,
    transcripts, cross-connection state and server-side errors."""
    closing = defer.gatherResults([listener.close_connections() for listener in listeners])

    def forget(_):
        for emulation in emulations:
            emulation.reset()
        take_errors(emulations, listeners)

    return closing.addCallback(forget)


class ListenerService(service.Service):
    """Listens on an endpoint, says where, and makes the process fail if it cannot.

    What C{twisted.application.internet.StreamServerEndpointService} does
    for an endpoint that listens at once (every endpoint the emulator
    takes), without importing that module: it brings C{ClientService} and
    its state machine library, a few ms of every start.

    @ivar endpoint: the server endpoint to listen on.
    @ivar factory: the protocol factory it listens with.
    @ivar port: the listening port, once started (a TCP endpoint listens
        during C{privilegedStartService}; a failure raises there).
    """

    description = ""
    profile = ""
    port = None
    option = "--listen"  # how the user named the endpoint, for a failure to listen

    def __init__(self, endpoint, factory):
        self.endpoint = endpoint
        self.factory = factory
        self._waiting: defer.Deferred | None = None  # the endpoint's listen(), once called

    def privilegedStartService(self):
        """Listen; a failure is a L{ListenError} naming the option, the
        endpoint and the cause (L{emulator.tap}'s service says it in one line).
        A failure that comes later (an endpoint that does not listen at
        once) is logged."""
        super().privilegedStartService()
        starting, failed = True, []

        def failure(reason):
            if starting:
                failed.append(reason)
            elif not reason.check(defer.CancelledError):
                log.failure("{description} could not listen", reason, description=self.description)

        try:
            self._waiting = self.endpoint.listen(self.factory)
        except Exception as e:
            raise ListenError(self.option, self.description.split(" ", 1)[0], e) from e
        self._waiting.addCallbacks(self._listening, failure)
        starting = False
        if failed:
            cause = failed[0].value
            raise ListenError(self.option, self.description.split(" ", 1)[0], cause) from cause

    def startService(self):
        """Listen, unless L{privilegedStartService} did already."""
        super().startService()
        if self._waiting is None:
            self.privilegedStartService()

    def stopService(self):
        """Stop listening, or cancel the attempt to; the Deferred fires
        once the port is closed."""
        if self._waiting is None:
            return super().stopService()
        self._waiting.cancel()

        def stop(port):
            if port is not None:
                return port.stopListening()

        def stopped(passthrough):
            self.running = False
            return passthrough

        return self._waiting.addCallback(stop).addBoth(stopped)

    def _listening(self, port):
        self.port = port
        address = port.getHost()
        getattr(self.factory, "bound", lambda port: None)(port)
        log.info("listening on {host}:{port} ({description}), profile {profile}",
                 host=address.host, port=address.port, description=self.description,
                 profile=self.profile, announce=True)
        return port


class Control:
    """The listeners of one process and everything they served.

    Emulations made when a listener switches profile share the first one's
    message store, transcript store and event log, so sessions and messages
    stay one stream; each profile keeps its own cross-connection state.
    """

    def __init__(self, emulation: Emulation, *, hostname: str | None = None, middlebox=None,
                 upstream: str | None = None, accounts=(), reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.base = emulation
        self.hostname = hostname
        # as given on the command line (--middlebox, --upstream, --account)
        self.middlebox, self.upstream, self.accounts = middlebox, upstream, tuple(accounts)
        self.emulations: dict[str, Emulation] = {emulation.profile.name: emulation}
        self.listeners: list[Listener] = []
        self.fault_specs: list[tuple[str, object]] = []
        self.started = reactor.seconds()

    # -- listeners ---------------------------------------------------------

    def listener(self, endpoint: str, *, implicit_tls: bool = False, profile: str | None = None) -> Listener:
        """A new listener serving C{profile} (default: the first emulation's);
        bind it, then call its C{bound}."""
        emulation = self.emulation(profile) if profile else self.base
        listener = Listener(endpoint, emulation, implicit_tls=implicit_tls, reactor=self.reactor)
        self.listeners.append(listener)
        return listener

    def serve(self, endpoint: str, *, implicit_tls: bool = False) -> ListenerService:
        """A new listener (see L{listener}) in a service that listens on
        C{endpoint} when started: by twistd as part of its application, or
        with C{startService()} in a running reactor."""
        listener = self.listener(endpoint, implicit_tls=implicit_tls)
        service = ListenerService(endpoints.serverFromString(self.reactor, with_backlog(endpoint)), listener)
        service.description = endpoint + (" (implicit TLS)" if implicit_tls else "")
        service.profile = listener.emulation.served
        return service

    def named(self) -> dict[str, Listener]:
        """The bound listeners by id: the port, or C{host:port} for a port
        that more than one interface listens on."""
        bound = [l for l in self.listeners if l.address]
        ports = [l.address[1] for l in bound]
        return {str(l.address[1]) if ports.count(l.address[1]) == 1 else f"{l.address[0]}:{l.address[1]}": l
                for l in bound}

    def find(self, listener_id: str) -> Listener | None:
        return self.named().get(listener_id)

    def switch(self, listener: Listener, profile_name: str) -> Listener:
        """New connections to C{listener} get C{profile_name}.

        @raise emulator.profiles.loader.ProfileError: no such profile, or it does not load.
        @raise ValueError: the listener cannot serve it (see L{Listener.switch}),
            or its TLS setup failed.
        """
        listener.switch(self.emulation(profile_name))
        return listener

    def emulation(self, profile_name: str) -> Emulation:
        """The emulation of C{profile_name}, made (and given the active faults) on first use."""
        if profile_name in self.emulations:
            return self.emulations[profile_name]
        base = self.base
        recipe = Recipe(profile_name, accounts=self.accounts, hostname=self.hostname, middlebox=self.middlebox,
                        upstream=self.upstream, faults=tuple(quirk for _, quirk in self.fault_specs),
                        state_dir=base.state_dir, tls_cert=base.tls_cert, tls_key=base.tls_key)
        try:
            emulation = build(recipe, sharing=base)
        except OSError as e:
            raise ValueError(f"TLS: {e}") from None
        self.emulations[profile_name] = emulation
        return emulation

    # -- state -------------------------------------------------------------

    def reset(self) -> defer.Deferred:
        return reset(self.emulations.values(), self.listeners)

    def sessions(self) -> list:
        return sorted(self.base.transcripts.all(), key=lambda t: t.session_id)

    def summaries(self, transcripts=None) -> list[dict]:
        """The summaries (L{emulator.capture.summary}) of C{transcripts}
        (default: every session, oldest first); a session behind a
        middlebox names the middlebox's session as C{behind}, and the
        middlebox's session counts the messages the server behind accepted."""
        from emulator.capture.summary import summarize  # the API's alone: not on every start

        store = self.base.transcripts
        behind = {t.upstream: t.session_id for t in store.all() if t.middlebox and t.upstream}
        rows = []
        for transcript in self.sessions() if transcripts is None else transcripts:
            upstream = store.get(transcript.upstream) if transcript.middlebox and transcript.upstream else None
            row = summarize(transcript, open=transcript.session_id in store.open, upstream=upstream)
            row["behind"] = behind.get(transcript.session_id)
            rows.append(row)
        return rows

    def session(self, session_id: str):
        return self.base.transcripts.get(session_id)

    def messages(self) -> list:
        return list(self.base.store.recent)

    def message(self, name: str):
        return next((c for c in self.base.store.recent if c.name == name), None)

    def errors(self) -> int:
        """How many server-side errors are on record (not forgotten)."""
        return sum(len(found) for found in _error_lists(self.emulations.values(), self.listeners))

    # -- faults ------------------------------------------------------------

    def add_fault(self, spec: str) -> None:
        """Add the fault C{spec} to every emulation, now and when one is made.

        @raise ValueError: a bad spec (as C{emulator.quirks.spec.parse} reports it).
        """
        from emulator.quirks import spec as faults  # the API's alone: not on every start

        quirk = faults.parse(spec)
        for emulation in self.emulations.values():
            emulation.add_fault(quirk)
        self.fault_specs.append((spec, quirk))

    def clear_faults(self) -> None:
        for emulation in self.emulations.values():
            emulation.clear_faults()
        self.fault_specs.clear()

