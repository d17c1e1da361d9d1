"""
Soak test: real SMTP clients on loopback against `twistd emulator` with
Maildir and transcripts; then a check that every message a client saw
accepted is in the Maildir exactly once.

    python bench/soak.py [--clients 1000] [--messages 5] [--profile ims55sp4] [--timeout 300]
    python bench/soak.py --clients 20 --sessions 100000 --size 102400 --consume --max-rss-growth 10

First a burst: --burst clients (1,000 by default) connect at the same moment
and the soak counts the banners that arrive within 1 s (all of them must).
Then --clients concurrent clients run --sessions sessions in all (one each
by default), each sending --messages messages of about --size bytes.  The
server's RSS is read once the first tenth of the sessions is done (the load
pauses for it) and again at the end; --max-rss-growth PCT makes more growth
than that a failure.  --consume keeps the disk bounded on long runs: while
the load runs the soak checks and deletes delivered messages, as a mail
client would, and empties the transcript files (like logrotate's
copytruncate).

Prints sessions/s, messages/s, errors, the burst, RSS and the Maildir check;
exits 1 if a message a client saw accepted is missing or duplicated, or a
check above failed.  Loopback only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emulator.testing.harness import TWISTD, free_port, wait_for_banner
from smtpload import burst, run_async  # run_async: uvloop when installed (make bench installs it)

BURST_WINDOW = 1.0  # seconds: issue 19's target for 1,000 clients at once
# The listen backlog of the soak's listener.  Twisted's default (50) drops
# the handshakes of a 1,000-client burst, whose clients retry a second or
# more later; the issue asks for a default fit for load tests.
BACKLOG = 2048


def raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def start_server(profile: str, port: int, state: Path, backlog: int | None) -> subprocess.Popen:
    listen = f"tcp:{port}:interface=127.0.0.1" + (f":backlog={backlog}" if backlog else "")
    proc = subprocess.Popen([*TWISTD, "--nodaemon", "--pidfile=", "emulator", "--profile", profile,
                             "--listen", listen,
                             "--maildir", str(state / "maildir"), "--transcripts", str(state / "transcripts")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_banner(port, timeout=30)
    except TimeoutError:
        proc.kill()
        raise SystemExit("the emulator did not start") from None
    return proc


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.M).group(1)) / 1024


async def reply(reader: asyncio.StreamReader) -> bytes:
    """Read one (possibly multi-line) SMTP reply."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return line


def message(mid: str, size: int) -> bytes:
    """A message whose first line is its Message-ID, about size bytes long."""
    head = f"Message-ID: {mid}\r\nSubject: soak\r\n\r\n".encode()
    line = b"x" * 78 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line)) + b".\r\n"


async def session(port: int, number: int, messages: int, size: int, accepted: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reply(reader)
        writer.write(b"EHLO soak.example\r\n")
        await reply(reader)
        for m in range(messages):
            mid = f"<soak-{number}-{m}@soak.example>"
            writer.write(b"MAIL FROM:<a@soak.example>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
            for _ in range(3):
                await reply(reader)
            writer.write(message(mid, size))
            if (await reply(reader)).startswith(b"250"):
                accepted.append(mid)
        writer.write(b"QUIT\r\n")
        await reply(reader)
    finally:
        writer.close()


async def run_sessions(port: int, numbers: range, clients: int, messages: int, size: int,
                       accepted: list, errors: list, deadline: float) -> None:
    """clients concurrent clients run the sessions numbered numbers, until
    they are done or the deadline (time.monotonic()) passes."""
    todo = iter(numbers)

    async def client() -> None:
        for number in todo:
            if time.monotonic() >= deadline:
                return
            try:
                await session(port, number, messages, size, accepted)
            except (OSError, ConnectionError) as e:
                errors.append(f"session {number}: {e!r}")

    if not numbers:
        return
    tasks = [asyncio.create_task(client()) for _ in range(min(clients, len(numbers)))]
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()) + 30)
    for task in pending:
        task.cancel()
    if pending or time.monotonic() >= deadline:
        left = sum(1 for _ in todo)
        errors.append(f"the load did not finish within --timeout ({left} sessions never started)")


class Consumer:
    """Checks and deletes delivered messages while the load runs (as a mail
    client would) and empties the transcript files, so a long soak's disk
    use stays bounded."""

    def __init__(self, state: Path):
        self.state = state
        self.seen: dict[str, int] = {}
        self.files = 0

    def sweep(self, delete: bool) -> None:
        new = self.state / "maildir" / "new"
        for path in list(new.iterdir()):
            with open(path, "rb") as file:
                mid = file.readline().rstrip(b"\r\n").decode().removeprefix("Message-ID: ")
            self.seen[mid] = self.seen.get(mid, 0) + 1
            self.files += 1
            if delete:
                path.unlink()
        if delete:
            for path in (self.state / "transcripts").glob("*.jsonl"):
                # The server appends with O_APPEND: its next session lands at
                # the new end; what it kept in memory of the old ones it can
                # no longer read back, which this soak never asks for.
                os.truncate(path, 0)

    async def run(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            self.sweep(delete=True)


async def soak(args, port: int, pid: int, state: Path) -> dict:
    results: dict = {"accepted": [], "errors": []}
    arrivals = await burst(port, args.burst, 10.0) if args.burst else []
    results["burst"] = arrivals
    consumer = Consumer(state)
    sweeper = asyncio.create_task(consumer.run()) if args.consume else None
    deadline = time.monotonic() + args.timeout
    # With many sessions per client the load pauses after the first tenth
    # to read the RSS; with about one each (all clients at once, the
    # default) the RSS before the load stands in for it.
    first = args.sessions // 10 if args.sessions >= 2 * args.clients else 0
    started = time.monotonic()
    await run_sessions(port, range(first), args.clients, args.messages, args.size,
                       results["accepted"], results["errors"], deadline)
    await asyncio.sleep(0.5)  # the last sessions' teardown
    results["rss_first"] = (first, rss_mib(pid))
    await run_sessions(port, range(first, args.sessions), args.clients, args.messages, args.size,
                       results["accepted"], results["errors"], deadline)
    results["elapsed"] = time.monotonic() - started
    await asyncio.sleep(0.5)
    results["rss_end"] = (args.sessions, rss_mib(pid))
    if sweeper:
        sweeper.cancel()
    results["consumer"] = consumer
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--clients", type=int, default=1000, help="concurrent clients (default 1000)")
    parser.add_argument("--sessions", type=int, help="sessions in all (default: one per client)")
    parser.add_argument("--messages", type=int, default=5, help="messages per session (default 5)")
    parser.add_argument("--size", type=int, default=0, help="bytes per message (default: a few dozen)")
    parser.add_argument("--burst", type=int, default=1000,
                        help="clients connecting at once before the load (default 1000; 0: no burst)")
    parser.add_argument("--backlog", type=int, default=BACKLOG,
                        help=f"the listener's accept backlog (default {BACKLOG}; 0: the server's default)")
    parser.add_argument("--consume", action="store_true",
                        help="delete checked messages and empty transcript files during the run (bounded disk)")
    parser.add_argument("--max-rss-growth", type=float, metavar="PCT",
                        help="fail if the server's RSS at the end exceeds that after the first tenth by more")
    parser.add_argument("--profile", default="ims55sp4")
    parser.add_argument("--state", type=Path, help="where the Maildir and transcripts go (default: a temporary folder)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole load")
    args = parser.parse_args(argv)
    args.sessions = args.sessions or args.clients
    raise_file_limit(max(args.clients, args.burst) * 2 + 256)
    state = Path(tempfile.mkdtemp(prefix="emulator-soak-", dir=args.state))
    port = free_port()
    server = start_server(args.profile, port, state, args.backlog)
    try:
        results = run_async(soak(args, port, server.pid, state))
    finally:
        server.terminate()
        server.wait(timeout=30)
    consumer, accepted, errors = results["consumer"], results["accepted"], results["errors"]
    consumer.sweep(delete=False)
    missing = [m for m in accepted if m not in consumer.seen]
    duplicated = [m for m, n in consumer.seen.items() if n > 1]
    elapsed = results["elapsed"]
    failed = bool(missing or duplicated or errors)
    print(f"clients {args.clients}, sessions {args.sessions}, messages per session {args.messages}, "
          f"size {args.size or 'small'}, profile {args.profile}")
    if args.burst:
        got = [t for t in results["burst"] if t is not None]
        within = sum(t <= BURST_WINDOW for t in got)
        last = f"{max(got):.2f} s" if got else "none"
        print(f"burst: {args.burst} clients at once, banners within {BURST_WINDOW:g} s: {within}; "
              f"in all {len(got)}, the last after {last}")
        failed |= within < args.burst
    print(f"elapsed {elapsed:.2f} s: {args.sessions / elapsed:.0f} sessions/s, {len(accepted) / elapsed:.0f} messages/s")
    print(f"accepted {len(accepted)} of {args.sessions * args.messages}; errors {len(errors)}")
    for error in errors[:10]:
        print(f"  {error}")
    (first, rss_first), (_, rss_end) = results["rss_first"], results["rss_end"]
    growth = (rss_end / rss_first - 1) * 100
    print(f"server RSS: {rss_first:.1f} MiB after {first:,} sessions{' (the burst only)' if not first else ''}, "
          f"{rss_end:.1f} MiB after {args.sessions:,} ({growth:+.1f}%)")
    if args.max_rss_growth is not None and growth > args.max_rss_growth:
        print(f"  more than --max-rss-growth {args.max_rss_growth:g}%")
        failed = True
    print(f"maildir: {consumer.files} files; accepted but missing {len(missing)}; duplicated {len(duplicated)}")
    shutil.rmtree(state, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
