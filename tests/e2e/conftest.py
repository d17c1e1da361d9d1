"""Shared end-to-end fixtures."""

from dataclasses import dataclass

import pytest

from emulator.testing.harness import start_server


@pytest.fixture
def serve(tmp_path):
    """C{serve(profile, **start_server_options)} starts a server for the test, its certificate
    state and transcripts under C{tmp_path}; every server started is stopped afterwards."""
    running = []

    def start(profile, **kwargs):
        server = start_server(profile, **{"state_dir": tmp_path / "state", "transcripts": tmp_path / "transcripts",
                                          **kwargs})
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


@dataclass
class RunningConsole:
    """A control API (and its console) in the reactor thread, over a Control with real listeners.

    @ivar url: the API's base URL, C{http://127.0.0.1:PORT}.
    @ivar ports: the SMTP listeners' ports, in the order asked for (also their ids in the API).
    @ivar api: the L{emulator.control.api.API} resource (its C{token}, C{feed}).
    """

    control: object
    url: str
    ports: list
    api: object
    listening: list

    def stop(self):
        from twisted.internet import defer

        self.api.feed.close()
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.listening])


@pytest.fixture
def console_server(tmp_path):
    """C{console_server(listeners, maildir=True, **site_options)} serves a Control whose first listener's
    profile is the base, one listener per C{(profile, implicit_tls)} on 127.0.0.1 (each with an endpoint of
    its own, as twistd requires), and the API with C{site_options} (C{token}, C{matrix}); stopped afterwards."""
    from emulator.capture.maildir import MessageStore
    from emulator.capture.transcript import TranscriptStore
    from emulator.control import api
    from emulator.control.listeners import Control
    from emulator.host.emulation import Emulation
    from emulator.profiles import loader as profiles
    from emulator.testing.harness import ReactorThread, free_port

    started = []

    def start(listeners=(("ims55sp4", False),), *, maildir=True, **site_options):
        def listen():
            from twisted.internet import reactor

            emulation = Emulation(profiles.load(listeners[0][0]), state_dir=tmp_path / "state",
                                  store=MessageStore(tmp_path / "maildir" if maildir else None),
                                  transcripts=TranscriptStore(tmp_path / "transcripts"))
            control = Control(emulation, reactor=reactor)
            numbers, listening = [], []
            for profile, implicit in listeners:
                number = free_port()
                listener = control.listener(f"tcp:{number}:interface=127.0.0.1", implicit_tls=implicit,
                                            profile=profile)
                listening.append(reactor.listenTCP(number, listener, interface="127.0.0.1"))
                listener.bound(listening[-1])
                numbers.append(number)
            site = api.site(control, **site_options)
            listening.append(reactor.listenTCP(0, site, interface="127.0.0.1"))
            return RunningConsole(control, f"http://127.0.0.1:{listening[-1].getHost().port}", numbers,
                                  site.resource, listening)

        started.append(ReactorThread.call(listen))
        return started[-1]

    yield start
    for running in started:
        ReactorThread.call(running.stop)
