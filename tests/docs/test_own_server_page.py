"""docs/own-server.md runs as written: every `sh` block, in order, against a
real aiosmtpd server on the page's port 2525 (ports 2525-2527 mapped to free
ones), ending with an empty `emulator diff` and profiles that check."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from emulator.testing.harness import free_port

PAGE = Path(__file__).resolve().parents[2] / "docs" / "own-server.md"
BIN = Path(sys.executable).parent


def commands(text: str) -> list[str]:
    """The command lines of the page's sh blocks, in order."""
    lines = []
    for block in re.findall(r"```sh[^\n]*\n(.*?)```", text, re.DOTALL):
        lines += [line.strip() for line in block.replace("\\\n", " ").splitlines()
                  if line.strip() and not line.strip().startswith("#")]
    return lines


def _wait_listening(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise AssertionError(f"background command exited with {process.returncode}")
        # Read the kernel's table rather than connect: a connection would be
        # a session, and the recorder stops after --sessions of them.
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
        if any(row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "0A" for row in table):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout} s")


def test_the_own_server_walk_runs_as_written(tmp_path):
    """Probe, learn, check, serve, probe again, diff (exit 0), record, learn, check:
    each command of the page exits 0."""
    from real_servers import aiosmtpd_server

    lines = commands(PAGE.read_text(encoding="utf-8"))
    assert any(line.startswith("emulator diff") for line in lines) and any("emulator record" in line for line in lines)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    background, outputs = [], {}
    with aiosmtpd_server(hostname="mx.example.net") as real:
        ports = {"2525": str(real), "2526": str(free_port()), "2527": str(free_port())}
        try:
            for line in lines:
                command = re.sub(r"\b252[5-7]\b", lambda m: ports[m.group(0)], line)
                command = command.replace("python3 ", f"{shlex.quote(sys.executable)} ", 1)
                if command.endswith("&"):
                    process = subprocess.Popen(["bash", "-c", command[:-1]], cwd=tmp_path, env=env,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                               start_new_session=True)
                    background.append(process)
                    _wait_listening(int(re.search(r"--listen tcp:(\d+)", command).group(1)), process)
                    continue
                done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                                      text=True, timeout=300)
                assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
                outputs[line.split(" ", 2)[1]] = done.stderr
        finally:
            for process in background:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
    assert "9 of 9 session(s) the same" in outputs["diff"]
    assert len(list((tmp_path / "recorded").glob("*.jsonl"))) == 1
    assert "[V] captured from tcp:127.0.0.1:" in (tmp_path / "recorded-box.yaml").read_text()
