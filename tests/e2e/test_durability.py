"""Nothing accepted is lost: SIGKILL under load, and clients that vanish mid-DATA."""

import signal
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from emulator.testing.harness import TWISTD, free_port, wait_for_banner

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def start(tmp_path, port):
    proc = subprocess.Popen([*TWISTD, "--nodaemon", "--pidfile=", "emulator", "--listen", f"tcp:{port}",
                             "--maildir", "mail"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_banner(port)
    except TimeoutError:
        proc.kill()
        raise
    return proc


def message_ids(maildir):
    return sorted(p.read_bytes().split(b"\r\n", 1)[0].decode() for p in (maildir / "new").iterdir())


def test_sigkill_under_load_loses_no_accepted_message(tmp_path):
    """Eight clients send as fast as they can; the server is killed with SIGKILL mid-stream. Every
    message a client saw answered 250 is in new/ exactly once, and tmp/ holds no stray whole message."""
    port = free_port()
    proc = start(tmp_path, port)
    accepted, lock, stop = [], threading.Lock(), threading.Event()

    def sender(n):
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                for m in range(10_000):
                    if stop.is_set():
                        return
                    mid = f"Message-ID: <k{n}-{m}@t>"
                    client.sendmail("a@example.org", ["b@example.test"], f"{mid}\r\n\r\nbody\r\n")
                    with lock:
                        accepted.append(mid)
        except (smtplib.SMTPException, OSError):
            return

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(accepted) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=20)
    assert len(accepted) >= 200
    stored = message_ids(tmp_path / "mail")
    assert len(stored) == len(set(stored))
    assert set(accepted) <= set(stored)
    assert len(stored) - len(accepted) <= 8  # at most the one in flight per client


def test_client_vanishing_mid_data_leaves_nothing_in_new(tmp_path):
    """A client that resets the connection in the middle of DATA delivers nothing."""
    port = free_port()
    proc = start(tmp_path, port)
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        raw.recv(1024)
        raw.sendall(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        time.sleep(0.2)
        raw.sendall(b"Subject: half\r\n\r\nhalf a mess")
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        raw.close()  # linger 0: a TCP reset
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@example.org", ["b@example.test"], "Message-ID: <whole@t>\r\n\r\nwhole\r\n")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert message_ids(tmp_path / "mail") == ["Message-ID: <whole@t>"]
