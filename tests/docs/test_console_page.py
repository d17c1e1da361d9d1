"""docs/console.md's commands run as written: each ```sh block, on free loopback ports, in a scratch folder."""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.testing.harness import free_port
from hosts import read_lines_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "console.md"
BLOCK = re.compile(r"```sh[^\n]*\n(.*?)```", re.S)
CONSOLE = r"console at (http://127\.0\.0\.1:\d+/)"


def blocks() -> list[list[str]]:
    """The page's sh blocks, as lists of command lines."""
    return [[line for line in block.splitlines() if line.strip()] for block in BLOCK.findall(PAGE.read_text())]


def test_the_page_has_its_examples():
    """The page shows make run, emulator serve with the API, the matrix report and the token, each with the
    requests that go with them."""
    firsts = [block[0].split(" --", 1)[0] for block in blocks()]
    assert firsts == ["make run"] + [".venv/bin/emulator serve"] * 3
    assert sum(len(block) - 1 for block in blocks()) == 4


@pytest.mark.parametrize("block", blocks(), ids=lambda block: block[0][:60])
def test_a_block_runs(block, tmp_path):
    """The block's first line starts a server that prints the console's address (on ports of this test's
    choosing: 2525 and 8025 become free ones, .venv/bin the test's interpreter's folder, make run's state goes
    to a scratch folder); every other line then runs and exits 0."""
    smtp, web = free_port(), free_port()
    bin_dir = str(Path(sys.executable).parent)

    def ours(line: str) -> str:
        line = line.replace("tcp:2525", f"tcp:{smtp}").replace("8025", str(web)).replace(".venv/bin/", bin_dir + "/")
        if line == "make run":
            line = (f"make -C {shlex.quote(str(ROOT))} run LISTEN=tcp:{smtp}:interface=127.0.0.1 "
                    f"API=tcp:{web}:interface=127.0.0.1 STATE={shlex.quote(str(tmp_path / 'var'))}")
        return line

    server = subprocess.Popen(shlex.split(ours(block[0])), cwd=tmp_path, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        lines = read_lines_until(server.stdout, 1, CONSOLE, time.monotonic() + 120)
        url = re.search(CONSOLE, "\n".join(lines)).group(1)
        assert url == f"http://127.0.0.1:{web}/"
        for line in block[1:]:
            done = subprocess.run(ours(line), shell=True, cwd=tmp_path, capture_output=True, timeout=30)
            assert done.returncode == 0, (line, done.stderr)
            assert done.stdout.strip(), line
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.communicate(timeout=30)
