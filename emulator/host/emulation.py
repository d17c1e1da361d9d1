"""
One profile as served: its TLS context, stores and cross-connection state,
and the protocol factories for its listeners.

L{build} makes one from a L{emulator.host.recipe.Recipe}, for every way of
serving (C{twistd emulator}, C{emulator serve}, the control API's profile
switch, the fixtures, C{start_server}), and every listener gets its factory
here, so a plaintext listener, a STARTTLS listener and an implicit-TLS
listener of one emulation share messages, transcripts and the per-peer
memory of quirks.  With a middlebox (the profile's C{middlebox:} section,
or C{middlebox=}), every listener serves the middlebox in front of the
profile; with C{upstream=} too, in front of that real server instead.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from emulator.capture.maildir import MessageStore
from emulator.capture.transcript import TranscriptStore
from emulator.host.protocol import EmulatorFactory, EventLog
from emulator.host.recipe import Recipe, new_server, seed_for
from emulator.profiles import loader as profiles
from emulator.tls.context import context_for, default_state_dir


def build(recipe: Recipe, *, sharing: "Emulation | None" = None) -> "Emulation":
    """The emulation C{recipe} describes, its faults added.  With
    C{sharing}, it keeps its messages, transcripts and log in that one's
    stores (the control API's profile switch); otherwise it opens its own:
    the Maildir and transcript folders are created, and the TLS context may
    generate certificates in the state folder.

    @raise emulator.profiles.loader.ProfileError: the profile or middlebox does not load.
    @raise ValueError: it cannot be served that way (an upstream without a
        middlebox, unusable TLS settings or certificate files).
    @raise OSError: a folder or file could not be made or read.
    """
    profile, box = recipe.loaded(), recipe.loaded_middlebox()
    if sharing is None:
        budget = {} if recipe.memory_budget is None else {"budget": recipe.memory_budget}
        with _storage("maildir", recipe.maildir):
            store = MessageStore(recipe.maildir, fsync=recipe.fsync, **budget)
        with _storage("transcripts", recipe.transcripts):
            transcripts = TranscriptStore(recipe.transcripts, **budget)
        events = EventLog(recipe.log_format, sys.stdout, direct=recipe.log_direct, enabled=recipe.log_connections)
    else:
        store, transcripts, events = sharing.store, sharing.transcripts, sharing.events
    state_dir = Path(recipe.state_dir) if recipe.state_dir else default_state_dir()
    with _storage("state-dir", state_dir):
        emulation = Emulation(profile, hostname=recipe.hostname, state_dir=state_dir, tls_cert=recipe.tls_cert,
                              tls_key=recipe.tls_key, store=store, transcripts=transcripts, events=events,
                              middlebox=box, upstream=recipe.upstream, seed=recipe.seed)
    for fault in recipe.faults:
        emulation.add_fault(fault)
    return emulation


class StorageError(OSError):
    """A folder the emulation needs could not be made or written: C{what}
    names it as its option does (C{maildir}, C{transcripts}, C{state-dir}),
    C{path} is the folder, C{problem} the cause in a few words."""

    def __init__(self, what: str, path, problem: str):
        super().__init__(f"{what} {path}: {problem}")
        self.what, self.path, self.problem = what, path, problem


@contextmanager
def _storage(what: str, folder):
    """Turn an C{OSError} about C{folder} (or a file below it) into a L{StorageError}."""
    try:
        yield
    except StorageError:
        raise
    except OSError as e:
        name = str(getattr(e, "filename", "") or "")
        if folder is None or not name.startswith(str(folder)):
            raise
        raise StorageError(what, folder, f"cannot write there: {e.strerror or e}") from e


@dataclass
class Emulation:
    """A loaded profile with everything its listeners share.

    C{seed} seeds the quirks' dice: this one, else the profile's C{seed:},
    else a random one chosen now; every transcript's header records it.
    """

    profile: profiles.Profile
    hostname: str | None = None
    state_dir: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    store: MessageStore = field(default_factory=MessageStore)
    transcripts: TranscriptStore = field(default_factory=TranscriptStore)
    events: EventLog = field(default_factory=EventLog)
    shared: dict = field(default_factory=dict)
    middlebox: object = None  # an emulator.middlebox.Middlebox; default: the profile's section
    upstream: str | None = None  # client endpoint of a real server behind the middlebox
    seed: int | None = None

    def __post_init__(self):
        self.hostname = self.hostname or self.profile.hostname
        if self.middlebox is None:
            self.middlebox = self.profile.middlebox
        if self.upstream and self.middlebox is None:
            raise ValueError("an upstream server needs a middlebox in front of it")
        self.seed = seed_for(self.profile, self.seed)
        self.faults: list = []
        self.state_dir = Path(self.state_dir) if self.state_dir else default_state_dir()
        self.tls_context = context_for(self.profile.tls, hostname=self.hostname,
                                       state_dir=self.state_dir, base=self.profile.path.parent,
                                       cert=self.tls_cert, key=self.tls_key)
        self.factories: list[EmulatorFactory] = []

    def factory(self, listener: str = "", *, implicit_tls: bool = False, reactor=None):
        """The protocol factory of one listener; with C{implicit_tls}, TLS
        starts with the connection (SMTPS) and the SMTP factory is wrapped."""
        if implicit_tls and self.tls_context is None:
            raise ValueError("implicit TLS needs a certificate (profile tls: certificate, or --tls-cert)")
        server = new_server(self.profile, hostname=self.hostname, shared=self.shared, seed=self.seed,
                            faults=self.faults, tls_available=self.tls_context is not None and not implicit_tls)
        smtp = EmulatorFactory(server, store=self.store, transcripts=self.transcripts, events=self.events,
                               tls_context=self.tls_context, implicit_tls=implicit_tls,
                               listener=listener, reactor=reactor)
        self.factories.append(smtp)
        if self.middlebox is not None:
            return self._middlebox_factory(smtp, listener, implicit_tls, reactor)
        if not implicit_tls:
            return smtp
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return TLSMemoryBIOFactory(self.tls_context, False, smtp)

    def _middlebox_factory(self, smtp: EmulatorFactory, listener: str, implicit_tls: bool, reactor):
        from emulator.host.middlebox import EmulatedUpstream, EndpointUpstream, MiddleboxFactory

        if implicit_tls:
            raise ValueError("a middlebox inspects plaintext SMTP; it cannot stand in front of implicit TLS")
        if self.upstream:
            upstream, label = EndpointUpstream(self.upstream, reactor), ""
        else:
            upstream, label = EmulatedUpstream(smtp), self.profile.name
        return MiddleboxFactory(self.middlebox, upstream, transcripts=self.transcripts, events=self.events,
                                listener=listener, profile=label, reactor=reactor)

    @property
    def served(self) -> str:
        """What the listeners serve, for the log: the profile, maybe behind a middlebox."""
        if self.middlebox is None:
            return self.profile.name
        behind = self.upstream or self.profile.name
        return f"{self.middlebox.type} in front of {behind}"

    def add_fault(self, quirk) -> None:
        """Add a fault (any quirk; see L{emulator.quirks.spec.parse}) to every
        listener, open connections included, ahead of the profile's quirks.
        Safe from a test's thread: each listener's hook table is replaced in
        one assignment, and a session sees it from its next step on."""
        self.faults.append(quirk)
        self._update_faults()

    def clear_faults(self) -> None:
        """Remove every fault added with L{add_fault} (or C{--fault}); the
        profile's own quirks stay."""
        self.faults.clear()
        self._update_faults()

    def _update_faults(self) -> None:
        for factory in self.factories:
            factory.server.set_faults(self.faults)

    def reset(self) -> None:
        """Forget captured messages, transcripts and cross-connection state."""
        self.shared.clear()
        self.store.clear()
        self.transcripts.clear()
