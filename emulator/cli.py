"""
The C{emulator} command.

    emulator profiles            list the profiles: name, product, version, description
    emulator show NAME|PATH      the resolved profile (after extends:) as YAML
    emulator check PATH...       validate profile files; print file:key: problem
    emulator transcript PATH...  list the sessions of transcripts, or print them in arrow form
    emulator ca export PATH      write the test CA certificate for clients to trust
    emulator faults              every fault type with its attributes (for --fault and quirks:)
    emulator serve [OPTIONS]     run the server in the foreground (twistd -n emulator),
                                 saying "listening on ..." for each listener on stderr
    emulator personas            list the sender personas (client profiles)
    emulator send --persona NAME --to ENDPOINT
                                 send one message as a legacy client; exit 0 delivered, 1 not, 2 usage
    emulator matrix --client CMD run a client command against every server persona; Markdown and HTML table
"""

from __future__ import annotations

import argparse
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
            print(_listing_line(transcript.summary()))
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


def _listing_line(summary: dict) -> str:
    import time

    cells = [time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(summary["started"])), summary["session"],
             summary["persona"], summary["peer"], summary["tls"].split(" ")[0] or "-", summary["auth"] or "-",
             str(summary["messages"]), summary["last_reply"] or "-", summary["ended"]]
    out = []
    for (_, width), cell in zip(_LISTING_COLUMNS, cells):
        if width and len(cell) > width:
            cell = cell[:width - 1] + "\u2026"
        out.append(f"{cell:<{width}}" if width else cell)
    return "  ".join(out)


def _follow(args, transcripts) -> int:
    """Print each session as its file appears in the folder (a server
    writes a session's file when the session ends), for C{--seconds} or
    until interrupted."""
    import time

    if len(args.paths) != 1 or not Path(args.paths[0]).is_dir():
        raise CommandError("--follow takes one folder (a server's --transcripts)")
    folder = Path(args.paths[0])
    seen = set(folder.glob("*.jsonl")) if not args.full and not args.list else set()
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    if not args.full:
        print(_LISTING_HEAD, flush=True)
    try:
        while deadline is None or time.monotonic() < deadline:
            for path in sorted(set(folder.glob("*.jsonl")) - seen):
                seen.add(path)
                try:
                    found, _ = transcripts.read_sessions(path.read_text(encoding="latin-1"))
                except (OSError, transcripts.TranscriptError) as e:
                    print(f"emulator transcript: {path}: {e}", file=sys.stderr)
                    continue
                for transcript in found:
                    _print_session(transcript) if args.full else print(_listing_line(transcript.summary()))
                sys.stdout.flush()
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    return 0


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
    """twistd --nodaemon --pidfile= emulator OPTIONS, with one-line errors
    and progress on stderr ("listening on ..." per listener)."""
    from twisted.logger import formatEvent, globalLogPublisher
    from twisted.python import usage
    from twisted.scripts.twistd import ServerOptions, runApp

    from emulator.host import tap

    if "--version" in options:
        print(_version())
        return 0
    if "-h" in options or "--help" in options:
        table = str(tap.Options()).split("\n", 1)[1]  # its first line names twistd
        print(f"usage: emulator serve [OPTIONS]\n\nRuns the emulator in the foreground: the same as "
              f"`twistd --nodaemon --pidfile= emulator OPTIONS`.\n\n{table}")
        return 0
    config = ServerOptions()
    try:
        config.parseOptions(["--nodaemon", "--pidfile=", "emulator", *options])
    except usage.UsageError as e:
        print(f"emulator serve: {e}", file=sys.stderr)
        return 2
    stderr = sys.stderr  # twistd sends sys.stderr to its log once it starts

    def progress(text: str) -> None:
        print(f"emulator: {text}", file=stderr, flush=True)

    emulation = config.subOptions["emulation"]
    profile = emulation.profile
    if emulation.upstream:
        progress(f"serving {emulation.served}")
    else:
        behind = f", behind {emulation.middlebox.type}" if emulation.middlebox else ""
        progress(f"profile {profile.name}: {profile.product} {profile.version}{behind}")
    if emulation.tls_context is not None and profile.sections["tls"].certificate == "generated" \
            and not emulation.tls_cert:
        from emulator.tls.certs import CertStore

        progress(f"TLS certificate from the test CA {CertStore(emulation.state_dir).ca_path()}")
    globalLogPublisher.addObserver(lambda event: event.get("announce") and progress(formatEvent(event)))
    runApp(config)
    return 0


def _version() -> str:
    """The emulator's version, with Twisted's and Python's."""
    import platform
    from importlib.metadata import version

    import emulator

    return f"emulator {emulator.__version__} (Twisted {version('twisted')}, Python {platform.python_version()})"


class CommandError(Exception):
    """A command cannot do what was asked: one line, exit status 1."""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0")
    return value


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # every option after it is twistd emulator's
        try:
            return cmd_serve(argv[1:])
        except BrokenPipeError:
            _quiet_stdout()
            return 0
    parser = _Parser(prog="emulator", description="Emulated legacy Exchange/IIS SMTP servers.")
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
