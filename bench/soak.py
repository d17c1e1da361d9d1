"""
Soak test: N concurrent real SMTP clients on loopback, M messages each,
against `twistd emulator` with Maildir capture; then a check that every
message a client saw accepted is in the Maildir exactly once.

    python bench/soak.py [--clients 1000] [--messages 5] [--profile ims55sp4] [--timeout 300]

Prints sessions/s, messages/s, errors, and the Maildir check.  Exits 1 if a
message a client saw accepted is missing or duplicated.  Loopback only,
bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emulator.testing.harness import TWISTD, free_port, wait_for_banner

def raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def start_server(profile: str, port: int, state: Path) -> subprocess.Popen:
    proc = subprocess.Popen([*TWISTD, "--nodaemon", "--pidfile=", "emulator", "--profile", profile,
                             "--listen", f"tcp:{port}:interface=127.0.0.1:backlog=2048",
                             "--maildir", str(state / "maildir"), "--transcripts", str(state / "transcripts")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_banner(port, timeout=30)
    except TimeoutError:
        proc.kill()
        raise SystemExit("the emulator did not start") from None
    return proc


async def reply(reader: asyncio.StreamReader) -> bytes:
    """Read one (possibly multi-line) SMTP reply."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return line


async def client(port: int, number: int, messages: int, accepted: list, errors: list) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reply(reader)
        writer.write(b"EHLO soak.example\r\n")
        await reply(reader)
        for m in range(messages):
            mid = f"<soak-{number}-{m}@soak.example>"
            writer.write(b"MAIL FROM:<a@soak.example>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
            for _ in range(3):
                await reply(reader)
            writer.write(f"Message-ID: {mid}\r\nSubject: soak\r\n\r\nbody {number} {m}\r\n.\r\n".encode())
            if (await reply(reader)).startswith(b"250"):
                accepted.append(mid)
        writer.write(b"QUIT\r\n")
        await reply(reader)
        writer.close()
    except (OSError, ConnectionError) as e:
        errors.append(f"client {number}: {e!r}")


async def load(port: int, clients: int, messages: int, timeout: float):
    accepted, errors = [], []
    tasks = [asyncio.create_task(client(port, n, messages, accepted, errors)) for n in range(clients)]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    errors += [f"{len(pending)} clients did not finish in {timeout:.0f} s"] if pending else []
    return accepted, errors


def check_maildir(maildir: Path, accepted: list[str]) -> tuple[int, list[str], list[str]]:
    """Count Message-IDs in new/; return (files, missing, duplicated)."""
    seen: dict[str, int] = {}
    files = list((maildir / "new").iterdir())
    for path in files:
        head = path.read_bytes().split(b"\r\n", 1)[0].decode()
        mid = head.removeprefix("Message-ID: ")
        seen[mid] = seen.get(mid, 0) + 1
    missing = [m for m in accepted if m not in seen]
    duplicated = [m for m, n in seen.items() if n > 1]
    return len(files), missing, duplicated


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--profile", default="ims55sp4")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole load")
    args = parser.parse_args(argv)
    raise_file_limit(args.clients * 2 + 256)
    state = Path(tempfile.mkdtemp(prefix="emulator-soak-"))
    port = free_port()
    server = start_server(args.profile, port, state)
    try:
        started = time.monotonic()
        accepted, errors = asyncio.run(load(port, args.clients, args.messages, args.timeout))
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    files, missing, duplicated = check_maildir(state / "maildir", accepted)
    print(f"clients {args.clients}, messages per client {args.messages}, profile {args.profile}")
    print(f"elapsed {elapsed:.2f} s: {args.clients / elapsed:.0f} sessions/s, {len(accepted) / elapsed:.0f} messages/s")
    print(f"accepted {len(accepted)} of {args.clients * args.messages}; errors {len(errors)}")
    for error in errors[:10]:
        print(f"  {error}")
    print(f"maildir: {files} files; accepted but missing {len(missing)}; duplicated {len(duplicated)}")
    shutil.rmtree(state, ignore_errors=True)
    return 1 if missing or duplicated or errors else 0


if __name__ == "__main__":
    sys.exit(main())
