"""
The C{emulator} command.

    emulator profiles            list the profiles: name, product, version, description
    emulator show NAME|PATH      the resolved profile (after extends:) as YAML
    emulator check PATH...       validate profile files; print file:key: problem
    emulator transcript FILE     a JSON-lines transcript in the human arrow form
    emulator ca export PATH      write the test CA certificate for clients to trust
    emulator faults              every fault type with its attributes (for --fault and quirks:)
    emulator serve [OPTIONS]     run the server in the foreground (twistd -n emulator)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from emulator import profile as profiles


def cmd_profiles(args) -> int:
    rows = []
    for name in profiles.names():
        p = profiles.load(name)
        rows.append((p.name, p.product, p.version, p.describes))
    widths = [max(len(r[i]) for r in rows + [("NAME", "PRODUCT", "VERSION", "")]) for i in range(3)]
    print(f"{'NAME':<{widths[0]}}  {'PRODUCT':<{widths[1]}}  {'VERSION':<{widths[2]}}  DESCRIPTION")
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")
    return 0


def cmd_show(args) -> int:
    document = profiles.resolved_document(args.profile)
    document.pop("extends", None)
    yaml.dump(document, sys.stdout, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
    return 0


class _Dumper(yaml.SafeDumper):
    """Quote every string, so that the output is itself a valid profile."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style='"'))


def cmd_check(args) -> int:
    status = 0
    for path in args.paths:
        try:
            checked = profiles.check(Path(path))
            print(f"{path}: ok{' (abstract)' if checked is None else ''}")
        except profiles.ProfileError as e:
            print(e)
            status = 1
    return status


def cmd_transcript(args) -> int:
    from emulator.transcript import Transcript

    transcript = Transcript.from_jsonl(Path(args.file).read_text(encoding="ascii"))
    seed = "" if transcript.seed is None else f" seed {transcript.seed}"
    print(f"=== session {transcript.session_id} profile {transcript.profile} peer {transcript.peer}"
          + (f" middlebox {transcript.middlebox} upstream {transcript.upstream}" if transcript.middlebox else "")
          + seed)
    sys.stdout.write(transcript.human())
    return 0


def cmd_ca_export(args) -> int:
    from emulator.certs import CertStore
    from emulator.tls import default_state_dir

    store = CertStore(Path(args.state_dir) if args.state_dir else default_state_dir())
    print(store.export_ca(Path(args.dest)))
    return 0


def cmd_faults(args) -> int:
    from emulator.faults import catalogue

    sys.stdout.write(catalogue())
    return 0


def cmd_serve(args) -> int:
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", "--nodaemon", "--pidfile=", "emulator", *args.options]
    run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emulator", description="Emulated legacy Exchange/IIS SMTP servers.")
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
    serve = sub.add_parser("serve", help="run the server in the foreground (see `twistd emulator --help`)",
                           add_help=False)
    serve.add_argument("options", nargs=argparse.REMAINDER)
    serve.set_defaults(func=cmd_serve)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except profiles.ProfileError as e:
        print(f"emulator: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
