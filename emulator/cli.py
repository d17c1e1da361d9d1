"""
The C{emulator} command.

    emulator profiles            list the profiles: name, product, version, description
    emulator show NAME|PATH      the resolved profile (after extends:) as YAML
    emulator check PATH...       validate profile files; print file:key: problem
    emulator transcript FILE     a JSON-lines transcript in the human arrow form
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
    from emulator.capture.transcript import Transcript

    transcript = Transcript.from_jsonl(Path(args.file).read_text(encoding="ascii"))
    seed = "" if transcript.seed is None else f" seed {transcript.seed}"
    print(f"=== session {transcript.session_id} profile {transcript.profile} peer {transcript.peer}"
          + (f" middlebox {transcript.middlebox} upstream {transcript.upstream}" if transcript.middlebox else "")
          + seed)
    sys.stdout.write(transcript.human())
    return 0


def cmd_ca_export(args) -> int:
    from emulator.tls.certs import CertStore
    from emulator.tls.context import default_state_dir

    store = CertStore(Path(args.state_dir) if args.state_dir else default_state_dir())
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
    print(f"emulator matrix: wrote {Path(args.out) / 'matrix.md'} and {Path(args.out) / 'matrix.html'}",
          file=sys.stderr)
    missing = [row.note for row in rows if row.note.startswith("client not")]
    if missing:
        print(f"emulator matrix: {missing[0]}", file=sys.stderr)
        return 1
    return 0


def cmd_serve(options: list[str]) -> int:
    """twistd --nodaemon --pidfile= emulator OPTIONS, with one-line errors
    and progress on stderr ("listening on ..." per listener)."""
    from twisted.logger import formatEvent, globalLogPublisher
    from twisted.python import usage
    from twisted.scripts.twistd import ServerOptions, runApp

    from emulator.host import tap

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
    if emulation.tls_context is not None and profile.tls.certificate == "generated" \
            and not emulation.tls_cert:
        from emulator.tls.certs import CertStore

        progress(f"TLS certificate from the test CA {CertStore(emulation.state_dir).ca_path()}")
    globalLogPublisher.addObserver(lambda event: event.get("announce") and progress(formatEvent(event)))
    runApp(config)
    return 0


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
            return 0
    parser = _Parser(prog="emulator", description="Emulated legacy Exchange/IIS SMTP servers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("profiles", help="list the profiles").set_defaults(func=cmd_profiles)
    show = sub.add_parser("show", help="print a resolved profile as YAML")
    show.add_argument("profile", metavar="NAME|PATH")
    show.set_defaults(func=cmd_show)
    check = sub.add_parser("check", help="validate profile files (exit 1 on a problem)")
    check.add_argument("paths", nargs="+", metavar="PATH")
    check.set_defaults(func=cmd_check)
    transcript = sub.add_parser("transcript", help="print a .jsonl transcript in arrow form")
    transcript.add_argument("file", metavar="FILE")
    transcript.set_defaults(func=cmd_transcript)
    ca = sub.add_parser("ca", help="the test CA that signs generated certificates")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True, metavar="ACTION")
    export = ca_sub.add_parser("export", help="write the CA certificate (PEM) for clients to trust")
    export.add_argument("dest", metavar="PATH", help="file, or folder to write ca.pem into")
    export.add_argument("--state-dir", help="the emulator's state folder (default: $XDG_STATE_HOME/legacy-smtp-emulator)")
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
    matrix = sub.add_parser("matrix", help="run a client command against every server persona; write a table")
    matrix.add_argument("--client", required=True, metavar="COMMAND",
                        help="the client command, with {host} {port} {cafile} {mode} {hostname} placeholders")
    matrix.add_argument("--profiles", nargs="+", metavar="NAME", help="server personas (default: all)")
    matrix.add_argument("--out", default="emulator-matrix", metavar="DIR",
                        help="folder for matrix.md, matrix.html and transcripts/ (default emulator-matrix)")
    matrix.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="time each client run may take (default 30)")
    matrix.add_argument("--state-dir", help="the emulator's state folder (test CA and certificates)")
    matrix.set_defaults(func=cmd_matrix)
    sub.add_parser("serve", help="run the server in the foreground (emulator serve --help)", add_help=False)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (profiles.ProfileError, OSError, ValueError) as e:
        print(f"emulator: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
