"""
The C{emulator} command.

    emulator profiles            list the profiles: name, product, version, description
    emulator show NAME|PATH      the resolved profile (after extends:) as YAML
    emulator check PATH...       validate profile files; print file:key: problem
    emulator transcript PATH...  list the sessions of transcripts, or print them in arrow form
    emulator ca export PATH      write the test CA certificate for clients to trust
    emulator faults              every fault type with its attributes (for --fault and quirks:)
    emulator serve [OPTIONS]     run the server in the foreground, as twistd -n emulator does (without
                                 twistd), saying "listening on ..." for each listener on stderr
    emulator personas            list the sender personas (client profiles)
    emulator send --persona NAME --to ENDPOINT
                                 send one message as a legacy client; exit 0 delivered, 1 not, 2 usage
    emulator matrix --client CMD run a client command against every server persona; Markdown and HTML table
    emulator record --upstream ENDPOINT --transcripts DIR
                                 record sessions with a real server, passing every byte unchanged
    emulator learn TRANSCRIPTS... -o NAME.yaml
                                 write a server profile from recorded sessions
    emulator learn --probe ENDPOINT --rcpt ADDRESS [--out DIR] [-o NAME.yaml]
                                 record the probe's fixed sessions with a real server (then learn)
    emulator diff A B            compare the server bytes of two sessions (or folders of them); exit 0 same, 1 not
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from emulator.profiles import loader as profiles


def cmd_profiles(args) -> int:
    return _list(profiles)


def cmd_personas(args) -> int:
    from emulator.sender import profile as clientprofile

    return _list(clientprofile)


def _list(loader) -> int:
    """One row per profile of a loader module (profile or clientprofile)."""
    rows = []
    for name in loader.names():
        p = loader.load(name)
        rows.append((p.name, p.product, p.version, p.describes))
    widths = [max(len(r[i]) for r in rows + [("NAME", "PRODUCT", "VERSION", "")]) for i in range(3)]
    print(f"{'NAME':<{widths[0]}}  {'PRODUCT':<{widths[1]}}  {'VERSION':<{widths[2]}}  DESCRIPTION")
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")
    return 0


def cmd_show(args) -> int:
    from emulator.sender import profile as clientprofile

    client = clientprofile.is_client(profiles.resolve(args.profile))
    document = (clientprofile if client else profiles).resolved_document(args.profile)
    document.pop("extends", None)
    yaml.dump(document, sys.stdout, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
    return 0


class _Dumper(yaml.SafeDumper):
    """Quote every string, so that the output is itself a valid profile."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style='"'))


def cmd_check(args) -> int:
    from emulator.sender import profile as clientprofile

    status = 0
    for path in args.paths:
        try:
            client = clientprofile.is_client(profiles.resolve(Path(path)))
            checked = (clientprofile if client else profiles).check(Path(path))
            print(f"{path}: ok{' (abstract)' if checked is None else ''}")
        except profiles.ProfileError as e:
            print(e)
            status = 1
    return status


def cmd_transcript(args) -> int:
    """One session: its arrow form.  Several: one line each, or with
    C{--session}/C{--full} the arrow form of those chosen.  C{--follow}:
    the sessions a running server finishes, as their files appear."""
    from emulator.capture import transcript as transcripts

    if args.follow:
        return _follow(args, transcripts)
    sessions = []
    for source in args.paths:
        for name, text in _transcript_texts(source):
            try:
                found, notes = transcripts.read_sessions(text)
            except transcripts.TranscriptError as e:
                raise CommandError(f"{name}: {e}") from None
            for note in notes:
                print(f"emulator transcript: {name}: {note}", file=sys.stderr)
            sessions += found
    if args.session:
        chosen = [t for t in sessions if any(t.session_id.startswith(s) for s in args.session)]
        missing = [s for s in args.session if not any(t.session_id.startswith(s) for t in sessions)]
        if missing:
            raise CommandError(f"no session {missing[0]!r} in {', '.join(args.paths)}")
        sessions = chosen
    if args.full or (len(sessions) == 1 and not args.list):
        for transcript in sessions:
            _print_session(transcript)
    else:
        print(_LISTING_HEAD)
        for transcript in sessions:
            print(_listing_line(transcript))
    return 0


def _transcript_texts(source: str):
    """(name, text) of each transcript file C{source} names: a file, a
    folder (its C{*.jsonl} files, in name order: session ids sort by time)
    or C{-} (standard input)."""
    if source == "-":
        yield "(stdin)", sys.stdin.read()
        return
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
    elif path.exists():
        files = [path]
    else:
        raise CommandError(f"{source}: no such file or folder")
    for file in files:
        try:
            yield str(file), file.read_text(encoding="latin-1")
        except OSError as e:
            raise CommandError(f"{file}: cannot read: {e.strerror or e}") from None


def _print_session(transcript) -> None:
    seed = "" if transcript.seed is None else f" seed {transcript.seed}"
    print(f"=== session {transcript.session_id} profile {transcript.profile} peer {transcript.peer}"
          + (f" middlebox {transcript.middlebox} upstream {transcript.upstream}" if transcript.middlebox else "")
          + seed)
    sys.stdout.write(transcript.human())


_LISTING_COLUMNS = (("started (UTC)", 19), ("session", 22), ("persona", 16), ("peer", 21), ("TLS", 7),
                    ("auth", 12), ("msgs", 4), ("last reply", 34), ("ended", 0))
_LISTING_HEAD = "  ".join(f"{name:<{width}}" for name, width in _LISTING_COLUMNS).rstrip()


def _listing_line(transcript) -> str:
    import time

    from emulator.capture.summary import summarize

    summary = summarize(transcript)
    tls, auth = summary["tls"], summary["auth"]
    cells = [time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(summary["started"])), summary["session"],
             summary["persona"], summary["peer"], tls["version"] if tls else "-",
             auth["user"] if auth and auth["outcome"] == "ok" else "-", str(summary["messages"]),
             summary["last_reply"] or "-", summary["ended"]]
    out = []
    for (_, width), cell in zip(_LISTING_COLUMNS, cells):
        if width and len(cell) > width:
            cell = cell[:width - 1] + "\u2026"
        out.append(f"{cell:<{width}}" if width else cell)
    return "  ".join(out)


def _follow(args, transcripts) -> int:
    """Print each session a running server writes to the folder from now on
    (it appends each session, as it ends, to its run's file; a new run
    starts a new file), for C{--seconds} or until interrupted.

    A session that had spooled is appended in several writes (its header,
    its spooled records, the rest), so while a file is still growing the
    last session read is held back until the next session's header
    follows it, or the file has stopped growing for one look."""
    import time

    if len(args.paths) != 1 or not Path(args.paths[0]).is_dir():
        raise CommandError("--follow takes one folder (a server's --transcripts)")
    folder = Path(args.paths[0])
    read = {path: path.stat().st_size for path in folder.glob("*.jsonl")}  # what was there before: not shown
    ends: dict[Path, int] = {}  # where each file ended at the last look
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    if not args.full:
        print(_LISTING_HEAD, flush=True)
    try:
        while deadline is None or time.monotonic() < deadline:
            for path in sorted(folder.glob("*.jsonl")):
                try:
                    with path.open("rb") as file:
                        file.seek(read.get(path, 0))
                        new = file.read()
                except OSError as e:
                    print(f"emulator transcript: {path}: {e.strerror or e}", file=sys.stderr)
                    continue
                start = read.get(path, 0)
                end, ends[path] = ends.get(path), start + len(new)
                whole = _ready(new, growing=end != start + len(new))
                if not whole:
                    continue
                read[path] = read.get(path, 0) + len(whole)
                try:
                    found, _ = transcripts.read_sessions(whole.decode("latin-1"))
                except transcripts.TranscriptError as e:
                    print(f"emulator transcript: {path}: {e}", file=sys.stderr)
                    continue
                for transcript in found:
                    _print_session(transcript) if args.full else print(_listing_line(transcript))
                sys.stdout.flush()
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    return 0


def _ready(new: bytes, *, growing: bool) -> bytes:
    """Of C{new}, the bytes a run's file gained since the last look, those
    to print now: whole lines (a record still being written waits for its
    line end) and, while the file is C{growing}, only up to the last
    session's header, since that session may still be being written."""
    whole = new[:new.rfind(b"\n") + 1]
    if growing:
        whole = whole[:whole.rfind(b'\n{"session": ') + 1]  # headers alone begin so; records begin {"t":
    return whole


def cmd_ca_export(args) -> int:
    """Write the test CA of a state folder, saying which folder; a CA is made
    only with C{--create} (a new one would not verify a running server)."""
    from emulator.tls.certs import CertStore
    from emulator.tls.context import default_state_dir

    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir()
    store = CertStore(state_dir)
    if not store.has_ca():
        if not args.create:
            raise CommandError(f"no test CA in {state_dir} (a server makes one when it first generates a "
                               "certificate; `make run` keeps its own in var/state: give --state-dir, "
                               "or --create to make one now)")
        print(f"emulator ca export: created a test CA in {state_dir}", file=sys.stderr)
    print(f"emulator ca export: the test CA of {state_dir}", file=sys.stderr)
    print(store.export_ca(Path(args.dest)))
    return 0


def cmd_faults(args) -> int:
    from emulator.quirks.spec import catalogue

    sys.stdout.write(catalogue())
    return 0


def cmd_send(args) -> int:
    from emulator.sender import profile as clientprofile
    from emulator.sender import host as sender

    try:
        persona = clientprofile.load(args.persona)
    except profiles.ProfileError as e:  # as for every command: an unknown or broken profile is exit 1
        print(f"emulator send: {e}", file=sys.stderr)
        return 1
    try:
        host, port = sender.parse_endpoint(args.to, persona.port)
        message = Path(args.message).read_bytes() if args.message else None
        if args.cafile and not Path(args.cafile).is_file():
            raise ValueError(f"--cafile {args.cafile}: no such file")
        if (args.user is None) != (args.password is None):
            raise ValueError("--user and --password go together")
        if args.timeout <= 0:
            raise ValueError("--timeout must be more than 0 seconds")
    except (profiles.ProfileError, ValueError, OSError) as e:
        print(f"emulator send: {e}", file=sys.stderr)
        return 2
    credentials = None
    if args.user is not None:
        domain, _, user = args.user.rpartition("\\")
        credentials = clientprofile.Credentials(user, args.domain if args.domain is not None else domain,
                                                args.password)
    result = sender.send(persona, host, port, sender=args.sender, recipients=args.rcpt or [sender.DEFAULT_RECIPIENT],
                         message=message, server_name=args.server_name, cafile=args.cafile,
                         credentials=credentials, helo_name=args.helo, timeout=args.timeout)
    sys.stdout.write(result.human())
    return result.status


def cmd_matrix(args) -> int:
    """Exit 0 when every row with an expectation came out as history did,
    1 when a row differs or the client was not found, 2 on a usage error."""
    from emulator.sender import matrix

    names = [name for item in args.profiles or () for name in item.split(",") if name] or None
    try:
        if args.timeout <= 0:
            raise ValueError("--timeout must be more than 0 seconds")
        rows = matrix.run(args.client, names, out=Path(args.out), timeout=args.timeout, state_dir=args.state_dir,
                          progress=sys.stderr)
    except (profiles.ProfileError, ValueError) as e:
        print(f"emulator matrix: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(matrix.markdown(rows))
    written = [Path(args.out) / "matrix.md", Path(args.out) / "matrix.html"]
    if args.junit_xml:
        Path(args.junit_xml).write_text(matrix.junit_xml(rows), encoding="utf-8")
        written.append(Path(args.junit_xml))
    print(f"emulator matrix: wrote {', '.join(map(str, written))}", file=sys.stderr)
    print(f"emulator matrix: {matrix.summary(rows)}", file=sys.stderr)
    missing = [row.note for row in rows if row.note.startswith("client not")]
    if missing:
        print(f"emulator matrix: {missing[0]}", file=sys.stderr)
        return 1
    return 1 if any(row.history == "differs" for row in rows) else 0


def cmd_serve(options: list[str]) -> int:
    """What C{twistd --nodaemon --pidfile= emulator OPTIONS} does, without
    twistd: one-line errors, progress on stderr ("listening on ..." per
    listener) and the same log on stdout.  twistd's runner would add to
    the start-up (its own imports, and a scan of every plugin to find this
    one), so the service is run here (L{_run})."""
    from twisted.python import usage

    from emulator import tap

    if "--version" in options:
        print(_version())
        return 0
    if "-h" in options or "--help" in options:
        table = str(tap.Options()).split("\n", 1)[1]  # its first line names twistd
        print(f"usage: emulator serve [OPTIONS]\n\nRuns the emulator in the foreground, as "
              f"`twistd --nodaemon --pidfile= emulator OPTIONS` does (the same options and log on stdout), "
              f"without twistd, so it starts sooner; progress goes to stderr.\n\n{table}")
        return 0
    config = tap.Options()
    config.serve = True  # mistakes are raised for this function to say
    try:
        config.parseOptions(options)
        emulation = tap.emulation(config)  # makeService then serves this one
    except usage.UsageError as e:
        print(f"emulator serve: {e} (see emulator serve --help)", file=sys.stderr)
        return getattr(e, "status", 2)
    stderr = sys.stderr  # logging sends sys.stderr to the log once it starts

    def progress(text: str) -> None:
        print(f"emulator: {text}", file=stderr, flush=True)

    profile = emulation.profile
    if emulation.upstream:
        progress(f"serving {emulation.served}")
    else:
        behind = f", behind {emulation.middlebox.type}" if emulation.middlebox else ""
        progress(f"profile {profile.name}: {profile.product} {profile.version}{behind}")
    if emulation.tls_context is not None and profile.tls.certificate == "generated" \
            and not emulation.tls_cert:
        from emulator.tls.certs import CertStore

        progress(f"TLS certificate from the test CA {CertStore(emulation.state_dir).ca_path()}")
    return _run(tap.makeService(config), config["log-format"], progress)


def _run(top, log_format: str, progress) -> int:
    """Run the service C{top} as twistd -n runs an application: log to
    stdout (twistd's text lines, or JSON with C{--log-format json}),
    listen, start, run the reactor until a signal or C{reactor.stop()},
    stop the service, and end by the signal that stopped it, as twistd
    does.  A listener that cannot listen ends the process (exit status 1)
    before the reactor runs (L{emulator.tap.makeService})."""
    import gc
    import os
    import signal

    from twisted import copyright
    from twisted.internet import reactor
    from twisted.logger import Logger, formatEvent, globalLogBeginner, globalLogPublisher, textFileLogObserver
    from twisted.python import runtime

    import emulator
    from emulator.host import edge

    # Made before logging begins: it then sends sys.stdout to the log.
    observer = edge.json_observer() if log_format == "json" else textFileLogObserver(sys.stdout)
    globalLogPublisher.addObserver(lambda event: event.get("announce") and progress(formatEvent(event)))
    globalLogBeginner.beginLoggingTo([observer])
    log = Logger(namespace="emulator.serve")
    log.info("emulator serve {version} (Twisted {twisted}, {exe} {python}) starting up.",
             version=emulator.__version__, twisted=copyright.version, exe=sys.executable,
             python=runtime.shortPythonVersion())
    log.info("reactor class: {reactor}.", reactor=f"{type(reactor).__module__}.{type(reactor).__qualname__}")
    top.privilegedStartService()
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    # The start-up ran without the cyclic garbage collector (main turned it
    # off): its imports make some 50,000 objects the collector tracks, and
    # its 120 or so collections while importing freed under 2,000 of them
    # but cost 10 to 15 ms of every start.  What the start-up made lives as
    # long as the process: freeze it, so that no collection walks it again.
    gc.freeze()
    gc.enable()
    reactor.run()  # handles SIGINT and SIGTERM: stops the reactor, remembers the signal
    log.info("Server Shut Down.")
    stopped_by = getattr(reactor, "_exitSignal", None)
    if stopped_by is not None:
        signal.signal(stopped_by, signal.SIG_DFL)
        os.kill(os.getpid(), stopped_by)
    return 0


# -- learned personas: record, learn, diff (emulator.learn) -----------------


def cmd_record(args) -> int:
    from emulator.learn import record

    if args.sessions is not None and args.sessions < 1:
        print("emulator record: --sessions must be 1 or more", file=sys.stderr)
        return 2
    try:
        return record.run(args.upstream, args.listen, Path(args.transcripts), sessions=args.sessions,
                          progress=lambda text: print(f"emulator record: {text}", file=sys.stderr, flush=True))
    except (ValueError, TypeError, KeyError) as e:
        print(f"emulator record: --upstream {args.upstream}: {e}", file=sys.stderr)
        return 2


def cmd_learn(args) -> int:
    from emulator.learn import emit, infer
    from emulator.learn.dialogue import read
    from emulator.learn.files import read_transcripts, transcript_paths, write_text

    def say(text: str) -> None:
        print(f"emulator learn: {text}", file=sys.stderr, flush=True)

    if args.probe:
        if not args.rcpt:
            say("--probe needs --rcpt ADDRESS: the one recipient its message goes to")
            return 2
        paths = _probe(args, say)
        if paths is None or not args.output:
            return 0 if paths is not None else 2
        args.transcripts = [str(p) for p in paths]
    if not args.transcripts or not args.output:
        say("give TRANSCRIPTS... and -o NAME.yaml (or --probe ENDPOINT)")
        return 2
    output = Path(args.output)
    if output.suffix not in (".yaml", ".yml"):
        say(f"-o {output}: a profile file ends in .yaml")
        return 2
    try:
        sessions = [read(t) for p in transcript_paths(args.transcripts) for t in read_transcripts(p)]
        base = profiles.resolved_document(args.base)
    except ValueError as e:
        say(str(e))
        return 1
    learned = infer.learn(sessions, base, args.base)
    write_text(output, emit.render(learned, output.stem))
    try:
        profiles.check(output)
    except profiles.ProfileError as e:  # a bug here, never the user's: say so, keep the file to look at
        say(f"the profile written does not load: {e}")
        return 1
    say(f"wrote {output} from {len(sessions)} session(s): {len(learned.replies)} replies learned, "
        f"{len(learned.untouched.get('replies', []))} left to {args.base}")
    return 0


def _probe(args, say) -> list | None:
    """Print the probe's plan, then (unless --dry-run) run it; the transcripts' paths."""
    from emulator.learn import probe, script
    from emulator.sender.host import parse_endpoint

    try:
        parse_endpoint(args.probe, 25)
        if args.timeout <= 0:
            raise ValueError("--timeout must be more than 0 seconds")
    except ValueError as e:
        say(str(e))
        return None
    values = script.Values(args.rcpt, sender=args.sender, helo=args.helo, refused=args.refused_domain or "")
    say(f"the probe sends these sessions to {args.probe}, each command after the reply to the one before:")
    for session, lines in script.plan(values, versions=not args.no_tls_versions):
        condition = " (if the server lists STARTTLS)" if session.needs_starttls else ""
        print(f"  session {session.name}: {session.why}{condition}", file=sys.stderr)
        for line in lines:
            print(f"    {line}", file=sys.stderr)
    if args.dry_run:
        return []
    out = Path(args.out)
    paths = probe.run(args.probe, values, out, timeout=args.timeout, versions=not args.no_tls_versions,
                      server_name=args.server_name, progress=say)
    say(f"wrote {len(paths)} transcript(s) to {out}")
    return paths


def cmd_diff(args) -> int:
    from emulator.learn.diff import compare
    from emulator.learn.files import read_transcript

    a, b = Path(args.a), Path(args.b)
    if a.is_dir() != b.is_dir():
        print("emulator diff: compare two files or two folders", file=sys.stderr)
        return 2
    if a.is_dir():
        names = sorted({p.name for p in a.glob("*.jsonl")} | {p.name for p in b.glob("*.jsonl")})
        pairs = [(a / n, b / n) for n in names]
    else:
        pairs = [(a, b)]
    different = 0
    for left, right in pairs:
        if not (left.is_file() and right.is_file()):
            print(f"only in {left.parent if right.is_file() else right.parent}: {left.name}")
            different += 1
            continue
        try:
            lines = compare(read_transcript(left), read_transcript(right), (str(left), str(right)))
        except ValueError as e:
            print(f"emulator diff: {e}", file=sys.stderr)
            return 2
        if lines:
            different += 1
            print("\n".join(lines))
    print(f"emulator diff: {len(pairs) - different} of {len(pairs)} session(s) the same", file=sys.stderr)
    return 1 if different else 0


def _add_learn_commands(sub) -> None:
    """The subcommands of learned personas (docs/own-server.md)."""
    record = sub.add_parser("record", help="record sessions with a real server through a pass-through listener")
    record.add_argument("--upstream", required=True, metavar="ENDPOINT",
                        help="the real server, a Twisted client endpoint (tcp:HOST:PORT)")
    record.add_argument("--listen", default="tcp:2526", metavar="ENDPOINT",
                        help="where clients connect (default tcp:2526; 127.0.0.1 unless an interface is named)")
    record.add_argument("--transcripts", required=True, metavar="DIR", help="folder for one transcript per session")
    record.add_argument("--sessions", type=int, metavar="N", help="stop after N sessions (default: at Ctrl-C)")
    record.set_defaults(func=cmd_record)
    learn = sub.add_parser("learn", help="write a server profile from recorded sessions, or probe a server")
    learn.add_argument("transcripts", nargs="*", metavar="TRANSCRIPTS", help=".jsonl files or folders of them")
    learn.add_argument("-o", "--output", metavar="NAME.yaml", help="the profile to write (its name is the file's)")
    learn.add_argument("--base", default="rfc5321", metavar="PROFILE",
                       help="what the sessions did not show comes from this profile (default rfc5321)")
    learn.add_argument("--probe", metavar="ENDPOINT", help="run the probe's sessions against this server first")
    learn.add_argument("--rcpt", metavar="ADDRESS", help="the probe's one recipient (a mailbox you own)")
    learn.add_argument("--from", dest="sender", default="probe@example.org", metavar="ADDRESS",
                       help="the probe's envelope sender (default probe@example.org)")
    learn.add_argument("--helo", default="probe.example.org", metavar="NAME",
                       help="the name the probe gives in HELO/EHLO (default probe.example.org)")
    learn.add_argument("--refused-domain", metavar="DOMAIN",
                       help="a domain the server should refuse to relay to: one RCPT tries it")
    learn.add_argument("--out", default="probe", metavar="DIR", help="folder for the probe's transcripts (default probe)")
    learn.add_argument("--server-name", metavar="NAME", help="the name sent as SNI in the TLS sessions")
    learn.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                       help="the longest wait for one reply (default 10)")
    learn.add_argument("--no-tls-versions", action="store_true",
                       help="leave out the four handshakes that find the TLS version range")
    learn.add_argument("--dry-run", action="store_true", help="print what the probe would send, send nothing")
    learn.set_defaults(func=cmd_learn)
    diff = sub.add_parser("diff", help="compare two sessions' server bytes after template fields (exit 1 if not the same)")
    diff.add_argument("a", metavar="A", help="a .jsonl transcript, or a folder of them")
    diff.add_argument("b", metavar="B", help="the other (folders are paired by file name)")
    diff.set_defaults(func=cmd_diff)


def _version() -> str:
    """The emulator's version, with Twisted's and Python's."""
    import platform
    from importlib.metadata import version

    import emulator

    return f"emulator {emulator.__version__} (Twisted {version('twisted')}, Python {platform.python_version()})"


class CommandError(Exception):
    """A command cannot do what was asked: one line, exit status 1."""


def _positive(text: str) -> float:
    from argparse import ArgumentTypeError

    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise ArgumentTypeError(f"{text!r}: must be more than 0")
    return value


def _parser(**kwargs):
    """The command's argument parser, whose usage errors are one line
    (argparse is imported here: C{emulator serve} starts without it)."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")

    return Parser(**kwargs)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # every option after it is twistd emulator's
        import gc

        collecting = gc.isenabled()
        gc.disable()  # until the service has started (see _run)
        try:
            return cmd_serve(argv[1:])
        except BrokenPipeError:
            _quiet_stdout()
            return 0
        finally:
            if collecting:
                gc.enable()
    parser = _parser(prog="emulator", description="Emulated legacy Exchange/IIS SMTP servers.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("profiles", help="list the profiles").set_defaults(func=cmd_profiles)
    show = sub.add_parser("show", help="print a resolved profile as YAML")
    show.add_argument("profile", metavar="NAME|PATH")
    show.set_defaults(func=cmd_show)
    check = sub.add_parser("check", help="validate profile files (exit 1 on a problem)")
    check.add_argument("paths", nargs="+", metavar="PATH")
    check.set_defaults(func=cmd_check)
    transcript = sub.add_parser(
        "transcript", help="list sessions of .jsonl transcripts, or print them in arrow form",
        description="One session is printed in arrow form; several are listed one per line "
                    "(--session or --full print them in arrow form).")
    transcript.add_argument("paths", nargs="+", metavar="PATH",
                            help="a .jsonl file, a folder of them (a server's --transcripts), or - for stdin")
    transcript.add_argument("--session", action="append", metavar="ID",
                            help="print this session (an id or its start) in arrow form; repeatable")
    transcript.add_argument("--full", action="store_true", help="print every session in arrow form")
    transcript.add_argument("--list", action="store_true", help="list even a single session")
    transcript.add_argument("--follow", action="store_true",
                            help="print the sessions a running server writes to the folder PATH as they end")
    transcript.add_argument("--seconds", type=_positive, metavar="SECONDS",
                            help="with --follow: stop after this long (default: until interrupted)")
    transcript.set_defaults(func=cmd_transcript)
    ca = sub.add_parser("ca", help="the test CA that signs generated certificates")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True, metavar="ACTION")
    export = ca_sub.add_parser("export", help="write the CA certificate (PEM) for clients to trust")
    export.add_argument("dest", metavar="PATH", help="file, or folder to write ca.pem into")
    export.add_argument("--state-dir", help="the emulator's state folder (default: $XDG_STATE_HOME/legacy-smtp-emulator; "
                                            "`make run` uses var/state)")
    export.add_argument("--create", action="store_true", help="make a test CA if the state folder has none")
    export.set_defaults(func=cmd_ca_export)
    sub.add_parser("faults", help="list every fault type with its attributes").set_defaults(func=cmd_faults)
    sub.add_parser("personas", help="list the sender personas (client profiles)").set_defaults(func=cmd_personas)
    send = sub.add_parser("send", help="send one message as a legacy client persona (exit 0 delivered, 1 not)")
    send.add_argument("--persona", required=True, metavar="NAME|PATH", help="a name from `emulator personas`")
    send.add_argument("--to", required=True, metavar="ENDPOINT",
                      help="tcp:HOST:PORT, HOST:PORT, or HOST (the persona's port)")
    send.add_argument("--from", dest="sender", default="sender@example.org", metavar="ADDRESS",
                      help="envelope sender (default sender@example.org)")
    send.add_argument("--rcpt", action="append", metavar="ADDRESS",
                      help="envelope recipient, repeatable (default recipient@example.test)")
    send.add_argument("--message", metavar="FILE", help="the message to send (default: a short one naming the persona)")
    send.add_argument("--server-name", metavar="FQDN",
                      help="the server's host name for certificate checks (default: the endpoint's host if a name)")
    send.add_argument("--cafile", metavar="PEM", help="CA certificates to trust (`emulator ca export`)")
    send.add_argument("--user", metavar="[DOMAIN\\]USER", help="NT account to authenticate with (replaces the persona's)")
    send.add_argument("--password", help="the account's password")
    send.add_argument("--domain", help="NT domain (instead of DOMAIN\\ in --user)")
    send.add_argument("--helo", metavar="NAME", help="the name to give in EHLO/HELO (default: the persona's)")
    send.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                      help="limit for each network wait (default 30)")
    send.set_defaults(func=cmd_send)
    matrix = sub.add_parser("matrix", help="run a client command against every server persona; write a table "
                                           "(exit 1 if a row differs from history)")
    matrix.add_argument("--client", required=True, metavar="COMMAND",
                        help="the client command, with {host} {port} {cafile} {mode} {hostname} placeholders")
    matrix.add_argument("--profiles", nargs="+", metavar="NAME", help="server personas (default: all)")
    matrix.add_argument("--out", default="emulator-matrix", metavar="DIR",
                        help="folder for matrix.md, matrix.html and transcripts/ (default emulator-matrix)")
    matrix.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="time each client run may take (default 30)")
    matrix.add_argument("--state-dir", help="the emulator's state folder (test CA and certificates)")
    matrix.add_argument("--junit-xml", metavar="FILE",
                        help="also write a JUnit XML report: one test case per persona, failed where it differs")
    matrix.set_defaults(func=cmd_matrix)
    sub.add_parser("serve", help="run the server in the foreground (emulator serve --help)", add_help=False)
    _add_learn_commands(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # a reader such as `head` stopped reading: not an error
        _quiet_stdout()
        return 0
    except CommandError as e:
        name = " ".join(filter(None, (args.command, getattr(args, "ca_command", None))))
        print(f"emulator {name}: {e}", file=sys.stderr)
        return 1
    except (profiles.ProfileError, OSError, ValueError) as e:
        print(f"emulator: {e}", file=sys.stderr)
        return 1


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail
    again on the closed pipe (the Python documentation's advice for SIGPIPE)."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
