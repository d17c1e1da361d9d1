"""Start-up time (issue 19): spawn to the 220 banner of `twistd -n emulator`,
`emulator serve` and the Twisted + Maildir reference, interleaved.

    python bench/startup.py                          # 9 spawns of each
    python bench/startup.py --spawns 15 --compare /path/to/other/checkout

Each round spawns every server once, in an order rotated from round to
round, so drift on the machine hits all of them alike; a warm-up round (not
counted) fills the page cache first.  The emulator runs as bench/run.py
starts it (`--profile ims55sp4 --listen ... --transcripts DIR --maildir DIR`,
see servers.py), under twistd and under `emulator serve`; `--compare`
adds both of another checkout.  Prints a Markdown table on stdout: the
median and min–max in ms and the median's ratio to the reference's.
Figures, never assertions.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from servers import (EMULATOR, EMULATOR_SERVE, SERVERS, ServerSpec, ServerStartError, emulator_from,
                     emulator_serve_from, running)

REFERENCE = next(spec for spec in SERVERS if spec.name == "twisted-maildir")
MAX_SPAWNS = 100


def measure(specs, spawns, scratch):
    """Start-up seconds of each spec, C{spawns} times, interleaved (one
    uncounted warm-up round first); a spec that fails to start is dropped."""
    times = {spec.name: [] for spec in specs}
    alive = list(specs)
    for round_ in range(spawns + 1):
        shift = round_ % len(alive) if alive else 0
        for spec in alive[shift:] + alive[:shift]:
            try:
                with running(spec, scratch) as server:
                    if round_:
                        times[spec.name].append(server.startup_s)
            except ServerStartError as e:
                print(f"{spec.title}: did not start: {e}", file=sys.stderr)
                alive.remove(spec)
        print(f"round {round_}/{spawns}{' (warm-up)' if not round_ else ''} done", file=sys.stderr)
    return times


def table(specs, times) -> str:
    reference = times.get(REFERENCE.name) or []
    base = statistics.median(reference) if reference else None
    lines = ["| server | median (ms) | min–max (ms) | spawns | median / reference |", "|---|---|---|---|---|"]
    for spec in specs:
        got = times[spec.name]
        if not got:
            lines.append(f"| {spec.title} | n/a | n/a | 0 | n/a |")
            continue
        median = statistics.median(got)
        ratio = f"{median / base:.2f}×" if base else "n/a"
        lines.append(f"| {spec.title} | {median * 1e3:.0f} | {min(got) * 1e3:.0f}–{max(got) * 1e3:.0f} "
                     f"| {len(got)} | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spawns", type=int, default=9, help=f"counted spawns of each server (1 to {MAX_SPAWNS})")
    parser.add_argument("--compare", metavar="CHECKOUT", help="also start the emulator of another checkout")
    args = parser.parse_args(argv)
    if not 1 <= args.spawns <= MAX_SPAWNS:
        parser.error(f"--spawns must be 1 to {MAX_SPAWNS}")
    specs: list[ServerSpec] = [EMULATOR, EMULATOR_SERVE]
    if args.compare:
        specs += [emulator_from(args.compare), emulator_serve_from(args.compare)]
    specs.append(REFERENCE)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as scratch:
        times = measure(specs, args.spawns, Path(scratch))
    print(table(specs, times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
