"""
What to serve, said once, and the one way to build it.

A L{Recipe} names a profile and everything that changes how it is served
(accounts, relay rules, host name, middlebox, upstream, seed, faults,
certificates, stores).  Every way of serving builds from one:

 - C{twistd emulator} and C{emulator serve} (L{emulator.tap.emulation}),
   the control API's profile switch (L{emulator.control.listeners.Control}),
   the fixture pool (L{emulator.testing.pool}) and C{start_server}
   (L{emulator.testing.harness}) build an
   L{emulator.host.emulation.Emulation} with L{emulator.host.emulation.build};
 - the in-memory L{emulator.testing.harness.Harness} takes its L{Server}
   from L{Recipe.server}, and every listener of an emulation takes its own
   from L{new_server}, the same way.

A recipe is plain data: making one opens nothing, and this module imports
no Twisted (the in-memory harness uses it without a reactor).  Building is
what opens the Maildir and may generate certificates.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from pathlib import Path

from emulator import middlebox as middleboxes
from emulator.auth import mechanisms as auth
from emulator.core.connection import Server
from emulator.core.relay import RelayRules
from emulator.profiles import loader as profiles

DEFAULT_PROFILE = "ims55sp4"


@dataclass(frozen=True)
class Recipe:
    """What to serve and how.

    @ivar profile: a name from C{emulator profiles}, a path, or a loaded
        L{emulator.profiles.loader.Profile}.
    @ivar accounts: accounts added to the profile's (C{"user:password"},
        C{"DOMAIN\\user:password"} or L{emulator.auth.accounts.Account}), as
        C{--account} adds them.
    @ivar hostname: the host name announced (default: the profile's).
    @ivar middlebox: a firewall in front (a type name, a YAML file or an
        L{emulator.middlebox.Middlebox}; default: the profile's C{middlebox:}).
    @ivar upstream: a real server behind the middlebox (a client endpoint).
    @ivar seed: the seed of the quirks' dice (see L{seed_for}).
    @ivar faults: quirks added ahead of the profile's (C{--fault}).
    @ivar state_dir: where generated certificates and the test CA live.
    @ivar tls_cert: a PEM certificate replacing the profile's, with C{tls_key}.
    @ivar maildir: the Maildir accepted messages go to (default: memory only),
        with C{fsync} for durability against a machine crash.
    @ivar transcripts: the folder of one JSON-lines file per session
        (default: memory only).
    @ivar log_format: the connection log: C{text} (twisted.logger) or
        C{json} (one object per line on standard output).
    @ivar local_domains: domains added to the profile's C{relay:
        local_domains} (C{--local-domain}); with them or C{relay_from}, a
        profile without a C{relay:} section gets one.
    @ivar relay_from: networks (C{ADDRESS/PREFIX}) added to its C{relay:
        relay_from} (C{--relay-from}).
    @ivar log_connections: false to log no line per connection (load tests).
    @ivar log_direct: text lines written straight to standard output in
        twistd's form, where twistd's log observer writes too (see
        L{emulator.host.edge.EventLog}); otherwise through twisted.logger.
    @ivar memory_budget: the bytes each store (messages, transcripts) keeps
        in memory for the API, console and fixtures (default:
        L{emulator.capture.budget.DEFAULT_BUDGET}).
    """

    profile: str | Path | profiles.Profile = DEFAULT_PROFILE
    accounts: tuple = ()
    hostname: str | None = None
    middlebox: object = None
    upstream: str | None = None
    seed: int | None = None
    faults: tuple = ()
    state_dir: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    maildir: Path | None = None
    fsync: bool = False
    transcripts: Path | None = None
    log_format: str = "text"
    local_domains: tuple = ()
    relay_from: tuple = ()
    log_connections: bool = True
    log_direct: bool = False
    memory_budget: int | None = None

    def loaded(self) -> profiles.Profile:
        """The profile, loaded, with the accounts and relay rules added.

        @raise emulator.profiles.loader.ProfileError: no such profile, or it does not load.
        @raise ValueError: a bad relay entry, or a profile that cannot refuse relaying.
        """
        return with_relay(load_profile(self.profile, self.accounts), self.local_domains, self.relay_from)

    def loaded_middlebox(self):
        """The middlebox given (loaded if named), or None for the profile's own.

        @raise emulator.profiles.loader.ProfileError: no such type, or a bad file.
        """
        box = self.middlebox
        return middleboxes.load(box) if isinstance(box, (str, Path)) else box

    def server(self, *, tls_available: bool = False) -> Server:
        """A server for in-memory connections (no listener, no TLS context):
        what L{emulator.testing.harness.Harness} drives."""
        loaded = self.loaded()
        return new_server(loaded, hostname=self.hostname, seed=seed_for(loaded, self.seed), faults=self.faults,
                          tls_available=tls_available)


def load_profile(profile, accounts=()) -> profiles.Profile:
    """A profile given by name, path or as loaded, with C{accounts} added."""
    loaded = profile if isinstance(profile, profiles.Profile) else profiles.load(profile)
    return auth.with_accounts(loaded, accounts)


def with_relay(profile: profiles.Profile, local_domains=(), relay_from=()) -> profiles.Profile:
    """C{profile} with C{local_domains} and C{relay_from} added to its
    C{relay:} rules (a section is made if it has none); unchanged when both
    are empty.

    @raise ValueError: an entry that is not a domain or C{ADDRESS/PREFIX},
        or a profile with no RCPT or no C{relay_denied} reply to refuse with.
    """
    if not local_domains and not relay_from:
        return profile
    if "RCPT" not in profile.commands or "relay_denied" not in profile.replies:
        raise ValueError(f"profile {profile.name} has no relay_denied reply to refuse relaying with "
                         "(add one under replies:)")
    rules = (profile.relay or RelayRules()).with_options(local_domains, relay_from)
    return dataclasses.replace(profile, relay=rules)


def seed_for(profile: profiles.Profile, seed: int | None) -> int:
    """The seed of the quirks' dice: C{seed}, else the profile's C{seed:},
    else a random one chosen now (every transcript's header records it)."""
    if seed is not None:
        return seed
    return profile.seed if profile.seed is not None else secrets.randbelow(2**32)


def new_server(profile: profiles.Profile, *, hostname: str | None = None, seed: int = 0, faults=(),
               tls_available: bool = False, shared: dict | None = None) -> Server:
    """The core's L{Server} for one listener (or one in-memory harness),
    with C{faults} ahead of the profile's quirks.  C{shared} is the
    cross-connection memory it shares with the other listeners of its
    emulation."""
    server = Server(profile, hostname=hostname, tls_available=tls_available, seed=seed,
                    shared={} if shared is None else shared)
    server.set_faults(faults)
    return server
