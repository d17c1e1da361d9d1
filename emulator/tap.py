"""
C{twistd emulator}: options and service, an entry point beside
L{emulator.cli} (the dropin in C{twisted/plugins} names this module): it
builds the listeners and the control API, so it sits above the host and
L{emulator.control}.

    twistd -n emulator --profile ims55sp4 --listen tcp:2525:interface=127.0.0.1

Note the order: twistd's own C{--profile} (its profiler) comes before the
subcommand; ours comes after it, and has no short form for that reason.

Parsing the options (L{Options}) only reads and checks them: the profile and
middlebox are loaded, nothing is opened or generated.  L{emulation} builds
what they describe (the Maildir, the transcript folder, the TLS context and
its certificates), and L{makeService} starts a listener for each endpoint;
C{emulator serve} (L{emulator.cli}) parses the same options and calls both
the same way, then runs the service itself, without twistd.
"""

from __future__ import annotations

import re
import sys

from twisted.application import service
from twisted.internet import endpoints
from twisted.python import usage

from emulator.auth import mechanisms as auth
from emulator.control.listeners import Control
from emulator.host.emulation import Emulation, StorageError, build
from emulator.host.endpoints import EndpointError, ListenError, server_endpoint, with_backlog
from emulator.host.recipe import DEFAULT_PROFILE, Recipe, load_profile
from emulator.profiles import loader as profiles

DEFAULT_LISTEN = "tcp:2525:interface=127.0.0.1"
_HOSTNAME = re.compile(r"\A[A-Za-z0-9.\-\[\]:_]{1,255}\Z")


def _endpoint(option: str, text: str) -> str:
    """C{text} as a checked server endpoint (see L{emulator.host.endpoints}),
    or a usage error naming the option."""
    try:
        return server_endpoint(text)
    except EndpointError as e:
        raise usage.UsageError(f"{option} {text}: {e}") from None


class Options(usage.Options):
    """Command-line options of C{twistd emulator} (and C{emulator serve})."""

    synopsis = "[options]"
    longdesc = (
        "Runs emulated legacy Microsoft Exchange / IIS SMTP servers, each defined by a YAML "
        "profile (list them with `emulator profiles`).  Listeners bind 127.0.0.1 unless an "
        "endpoint names another interface.  twistd's own --profile (its profiler) goes before "
        "the subcommand; this --profile goes after it."
    )
    optParameters = [
        ["profile", None, DEFAULT_PROFILE, "Profile to emulate: a name from `emulator profiles` or a path to a YAML file."],
        ["hostname", None, None, "Host name the server announces (default: the profile's)."],
        ["transcripts", None, None, "Folder for one JSON-lines transcript per session (default: memory only)."],
        ["maildir", None, None, "Maildir that receives every accepted message (default: memory only)."],
        ["log-format", None, "text", "Connection log format: text (twistd's log) or json (one object per line on stdout)."],
        ["log-connections", None, "yes", "yes: one log line per connection; no: none (for load tests)."],
        ["memory-budget", None, None, "Bytes of recent messages, and as many of recent sessions, kept in memory for the API, console and fixtures (default: 4194304 each)."],
        ["tls-cert", None, None, "PEM certificate (chain) that replaces the profile's certificate."],
        ["tls-key", None, None, "PEM private key of --tls-cert."],
        ["state-dir", None, None, "Folder for generated certificates and the test CA (default: $XDG_STATE_HOME/legacy-smtp-emulator)."],
        ["middlebox", None, None, "Firewall in front of the server: a type (pix-mailguard, starttls-intercept, starttls-strip) or a YAML file with type and attributes (default: the profile's middlebox: section, if any)."],
        ["upstream", None, None, "Proxy mode: a real SMTP server behind --middlebox, as a Twisted client endpoint (e.g. tcp:127.0.0.1:25); --profile is then not served."],
        ["api", None, None, "Endpoint of the HTTP control API and web console, e.g. tcp:8025 (127.0.0.1 unless an interface is named; default: none)."],
        ["api-token", None, None, "Token every request to the API and console must bring (default: none on loopback; made up and printed when --api listens beyond it)."],
        ["matrix-report", None, None, "Folder of an `emulator matrix --out` run, served under /matrix/ and linked from the console."],
    ]
    optFlags = [
        ["fsync", None, "fsync each message and its folder before confirming it (durable against a machine crash; slower)."],
    ]

    #: True when C{emulator serve} parses them (L{emulator.cli} sets it):
    #: mistakes are then raised for it to say, and named after it, and the
    #: log goes to standard output, as under C{twistd -n}.
    serve = False

    def __init__(self):
        super().__init__()
        self.built: Emulation | None = None  # see emulation()
        self["listen"] = []
        self["listen-tls"] = []
        self["fault"] = []
        self["accounts"] = []
        self["seed"] = None

    @property
    def program(self) -> str:
        """How messages name the command: C{twistd emulator} or C{emulator serve}."""
        return "emulator serve" if self.serve else "twistd emulator"

    def parseOptions(self, options=None) -> None:
        """Parse; as twistd's subcommand, say a mistake in one line (twistd
        would print its whole usage first): C{twistd emulator: PROBLEM (see
        twistd emulator --help)}, exit status 2 (1 for a profile that does
        not load, as for every C{emulator} command).  Parsed on their own,
        or by C{emulator serve}, the options raise C{UsageError}."""
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if self.parent is None or self.serve:
                raise
            print(f"twistd emulator: {e} (see twistd emulator --help)", file=sys.stderr)
            raise SystemExit(getattr(e, "status", 2)) from None

    def opt_seed(self, seed: str) -> None:
        """Seed of the faults' dice (default: the profile's seed:, else random); transcripts record it."""
        try:
            self["seed"] = int(seed)
        except ValueError:
            raise usage.UsageError(f"--seed {seed}: must be a whole number") from None

    def opt_listen_tls(self, endpoint: str) -> None:
        """Server endpoint where TLS starts with the connection (SMTPS, e.g. tcp:4650); only for profiles whose product offered it (tls: implicit: true)"""
        self["listen-tls"].append(_endpoint("--listen-tls", endpoint))

    def opt_fault(self, spec: str) -> None:
        """Add a fault, e.g. 'rcpt:reply=452 4.5.3 Too many recipients:times=2' (repeatable; `emulator faults` lists the types)"""
        from emulator.quirks.spec import FaultError, parse

        try:
            self["fault"].append(parse(spec))
        except FaultError as e:
            raise usage.UsageError(f"--fault: {e}") from None

    def opt_listen(self, endpoint: str) -> None:
        """Server endpoint: PORT, HOST:PORT, tcp:PORT[:interface=ADDRESS] or unix:PATH (repeatable; 127.0.0.1 unless an address is named) [default: tcp:2525:interface=127.0.0.1]"""
        self["listen"].append(_endpoint("--listen", endpoint))

    def opt_account(self, account: str) -> None:
        """Account added to the profile's, user:password or 'DOMAIN\\user:password' (repeatable)."""
        try:
            self["accounts"].append(auth.parse_account(account))
        except ValueError as e:  # never echo the argument: it holds a password
            raise usage.UsageError(f"--account: {e}") from None

    # -- fidelity options: relay refusal and the slow banner (KB Q193922, Q286375) --

    def opt_local_domain(self, domain: str) -> None:
        """A domain whose recipients are taken from anyone; RCPT to any other gets the profile's relay_denied unless the peer is allowed by --relay-from (repeatable; adds to the profile's relay: section)"""
        self.setdefault("local-domain", []).append(domain)

    def opt_relay_from(self, network: str) -> None:
        """ADDRESS/PREFIX of peers that may relay to any domain, e.g. 192.0.2.0/24 (repeatable)"""
        self.setdefault("relay-from", []).append(network)

    def opt_slow_banner(self, seconds: str) -> None:
        """Wait this many seconds before the 220 greeting, as a slow IMS did (KB Q286375, Q258745: 5 to 20 s); the same as --fault connect:delay=SECONDS"""
        from emulator.quirks.spec import FaultError, parse

        try:
            self["fault"].append(parse(f"connect:delay={seconds}"))
        except FaultError:
            raise usage.UsageError(f"--slow-banner: {seconds!r} is not a number of seconds, 0 or more") from None

    def _relay_options(self) -> None:
        """Add --local-domain/--relay-from to the loaded profile's relay rules."""
        from emulator.host.recipe import with_relay

        domains, networks = tuple(self.get("local-domain", ())), tuple(self.get("relay-from", ()))
        if (domains or networks) and self["upstream"]:
            raise usage.UsageError("--local-domain/--relay-from act on the emulated server; proxy mode (--upstream) serves none")
        try:
            self["loaded_profile"] = with_relay(self["loaded_profile"], domains, networks)
        except ValueError as e:
            text = str(e)
            option = ("--relay-from" if "ADDRESS/PREFIX" in text else
                      "--local-domain" if "domain name" in text else "--local-domain/--relay-from")
            raise usage.UsageError(f"{option}: {e}") from None

    # -- end of the fidelity options --

    def postOptions(self) -> None:
        if not self["listen"] and not self["listen-tls"]:
            self["listen"] = [DEFAULT_LISTEN]
        every = self["listen"] + self["listen-tls"]
        if len(set(every)) != len(every):
            raise usage.UsageError("--listen/--listen-tls name the same endpoint twice")
        if self["api"]:
            self["api"] = _endpoint("--api", self["api"])
        for option in ("api-token", "matrix-report"):  # the web console's (emulator.control.api)
            if self[option] is not None and not self["api"]:
                raise usage.UsageError(f"--{option} needs --api")
        if self["api-token"] is not None and not re.fullmatch(r"[A-Za-z0-9._~-]{8,}", self["api-token"]):
            raise usage.UsageError("--api-token: 8 or more letters, digits or ._~- (it goes in URLs and cookies)")
        if self["log-format"] not in ("text", "json"):
            raise usage.UsageError("--log-format must be text or json")
        if self["log-connections"] not in ("yes", "no"):
            raise usage.UsageError("--log-connections must be yes or no")
        if self["memory-budget"] is not None:
            self["memory-budget"] = _budget(self["memory-budget"])
        if self["log-format"] == "json" and self.parent is not None and not self.parent.get("logger"):
            # every log event as JSON, twistd's own included, not only the connection lines
            self.parent["logger"] = "emulator.host.edge.json_observer"
        if self["hostname"] is not None and not _HOSTNAME.match(self["hostname"]):
            raise usage.UsageError(f"--hostname {self['hostname']!r} is not a host name")
        if self["fsync"] and not self["maildir"]:
            raise usage.UsageError("--fsync needs --maildir")
        if bool(self["tls-cert"]) != bool(self["tls-key"]):
            raise usage.UsageError("--tls-cert and --tls-key go together")
        try:
            self["loaded_profile"] = load_profile(self["profile"])
        except profiles.ProfileError as e:
            error = usage.UsageError(f"bad profile: {e}")
            error.status = 1  # as for every command: a profile that does not load is exit status 1
            raise error from None
        if self["accounts"] and not set(auth.VERBS) & set(self["loaded_profile"].commands):
            raise usage.UsageError(f"--account: profile {self['profile']} has no AUTH or XAUTH")
        self["loaded_profile"] = load_profile(self["loaded_profile"], self["accounts"])
        _middlebox_options(self)
        self._relay_options()
        tls = self["loaded_profile"].tls
        if self["listen-tls"] and not tls.implicit:
            raise usage.UsageError(
                f"--listen-tls: {self['profile']} never offered TLS from the first byte (tls: implicit: false); "
                "a client configured for SMTPS gets connection refused, as in KB Q218430")
        if self["fault"] and self["upstream"]:
            raise usage.UsageError("--fault acts on the emulated server; proxy mode (--upstream) serves none")

    def recipe(self) -> Recipe:
        """What the options ask to serve."""
        return Recipe(self["loaded_profile"], hostname=self["hostname"], middlebox=self["loaded_middlebox"],
                      upstream=self["upstream"], seed=self["seed"], faults=tuple(self["fault"]),
                      state_dir=self["state-dir"], tls_cert=self["tls-cert"], tls_key=self["tls-key"],
                      maildir=self["maildir"], fsync=self["fsync"], transcripts=self["transcripts"],
                      log_format=self["log-format"], log_connections=self["log-connections"] == "yes",
                      log_direct=self["log-format"] == "text" and (self.serve or _logs_to_stdout(self.parent)),
                      memory_budget=self["memory-budget"])


def _budget(text: str) -> int:
    """C{--memory-budget}: a whole number of bytes, 0 or more."""
    try:
        budget = int(text)
    except ValueError:
        budget = -1
    if budget < 0:
        raise usage.UsageError(f"--memory-budget {text}: must be a whole number of bytes, 0 or more")
    return budget


def _logs_to_stdout(twistd) -> bool:
    """Whether twistd's own log observer writes its text lines to standard
    output (C{-n} without C{--logfile}, C{--logger} or C{--syslog}), as
    C{emulator serve}'s always does: then the connection lines may be
    written there directly, in the same form (see
    L{emulator.host.edge.EventLog}), instead of through twisted.logger."""
    if twistd is None or twistd.get("logger") or twistd.get("syslog"):
        return False
    logfile = twistd.get("logfile") or ""
    return logfile == "-" or (bool(twistd.get("nodaemon")) and not logfile)


def emulation(options: Options) -> Emulation:
    """The emulation parsed C{options} describe, built on the first call and
    the same one after it (C{emulator serve} builds it to say what it serves,
    then L{makeService} takes it): the Maildir and transcript
    folders are created, and certificates may be generated.

    @raise usage.UsageError: it cannot be built, in one line.
    """
    if options.built is None:
        try:
            built = build(options.recipe())
        except StorageError as e:  # a folder of an option: name the option and the path
            raise usage.UsageError(f"--{e.what} {e.path}: {e.problem}") from None
        except (ValueError, OSError) as e:
            raise usage.UsageError(f"TLS: {e}") from None
        if options["listen-tls"] and built.tls_context is None:
            raise usage.UsageError("--listen-tls needs a certificate: the profile's tls: certificate, or --tls-cert/--tls-key")
        options.built = built
    return options.built


def _middlebox_options(options: Options) -> None:
    """Check --middlebox and --upstream and load the middlebox."""
    from emulator import middlebox

    options["loaded_middlebox"] = None
    if options["middlebox"]:
        try:
            options["loaded_middlebox"] = middlebox.load(options["middlebox"])
        except profiles.ProfileError as e:
            raise usage.UsageError(f"bad middlebox: {e}") from None
    if options["upstream"]:
        if not options["middlebox"]:
            raise usage.UsageError("--upstream needs --middlebox: the emulator relays to a real server only through one")
        try:
            endpoints.clientFromString(None, options["upstream"])
        except (ValueError, TypeError, KeyError) as e:
            raise usage.UsageError(f"--upstream {options['upstream']}: {e}") from None
    if options["listen-tls"] and (options["loaded_middlebox"] or options["loaded_profile"].middlebox):
        raise usage.UsageError("--listen-tls: a middlebox inspects plaintext SMTP and cannot front implicit TLS")


def makeService(options: Options) -> service.MultiService:
    """One listener per C{--listen}/C{--listen-tls}, sharing one L{Emulation}."""
    from twisted.internet import reactor

    try:
        built = emulation(options)
    except usage.UsageError as e:
        raise SystemExit(f"{options.program}: {e}") from None  # one line; twistd would print a traceback
    top = _Serving()
    top.program = options.program
    control = Control(built, hostname=options["hostname"], middlebox=options["loaded_middlebox"],
                      upstream=options["upstream"], accounts=options["accounts"], reactor=reactor)
    plain = [(d, False) for d in options["listen"]]
    for description, implicit in plain + [(d, True) for d in options["listen-tls"]]:
        listener = control.serve(description, implicit_tls=implicit)
        listener.option = "--listen-tls" if implicit else "--listen"
        listener.setServiceParent(top)
    if options["api"]:
        from emulator.control.api import APIService

        api = APIService(endpoints.serverFromString(reactor, with_backlog(options["api"])), control,
                         token=options["api-token"], matrix=options["matrix-report"])
        api.option, api.description = "--api", options["api"]
        api.setServiceParent(top)
    return top


class _Serving(service.MultiService):
    """twistd's service: a listener that cannot listen ends the process
    with one line naming the option, the endpoint and the cause, and exit
    status 1, before the reactor runs (so no other listener serves on)."""

    program = "twistd emulator"

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except ListenError as e:
            # twistd has sent sys.stderr to its log by now: the line goes to the real one.
            print(f"{self.program}: {e}", file=sys.__stderr__, flush=True)
            raise SystemExit(1) from None
