"""Every fenced block of README.md and docs/*.md runs, in the way its info
string names (see L{docpages}), or says explicitly that it does not."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import yaml

from docpages import ROOT, Block, all_blocks, blocks
from emulator.testing import free_port, wait_for_banner

BIN = Path(sys.executable).parent
PORTS = (2525, 2526, 2527, 4650, 8025)
_PORT = re.compile(r"(?<!\d)(%s)(?!\d)" % "|".join(map(str, PORTS)))
TAGS = {"no-run", "serve", "file", "section", "middlebox", "starts", "golden", "faults", "walk"}
NOT_RUN = {"sh", "console", "text"}  # the only languages a block may mark no-run
PACKAGE_EXTRAS = {"cli", "tap", "dropin"}  # diagram nodes that are not packages of emulator/
BLOCKS = all_blocks()
WAIT = 30.0  # seconds a server may take to start; every wait below is bounded


def kind(block: Block) -> str:
    """How C{block} runs; C{AssertionError} says why it cannot be told."""
    unknown = set(block.tags) - TAGS
    assert not unknown, f"{block.id}: unknown tags {sorted(unknown)}"
    if "no-run" in block.tags:
        assert block.language in NOT_RUN, f"{block.id}: a {block.language} block must run"
        return "no-run"
    if "walk" in block.tags:
        walker = ROOT / block.tags["walk"]
        assert walker.is_file() and block.page.name in walker.read_text(), \
            f"{block.id}: walk={block.tags['walk']} must be a test that runs this page"
        return "walk"
    if block.language == "python":
        return "test-file" if block.test_file else "script"
    if block.language == "yaml":
        for tag in ("section", "middlebox"):
            if tag in block.tags:
                return tag
        document = yaml.safe_load(block.text)
        assert isinstance(document, dict) and "name" in document, \
            f"{block.id}: a yaml block is a profile (name:) or tagged section or middlebox"
        return "profile"
    if block.language == "sh":
        return "starts" if "starts" in block.tags else "shell"
    if block.language == "console":
        return "console"
    if block.language == "text":
        assert "golden" in block.tags or "faults" in block.tags, \
            f"{block.id}: a text block is golden=PATH, faults or no-run"
        return "golden" if "golden" in block.tags else "faults"
    if block.language == "mermaid":
        return "diagram"
    raise AssertionError(f"{block.id}: no runner for language {block.language!r}")


def test_every_block_says_how_it_runs():
    """Each block has a known language and tags, so none is skipped silently;
    test files have distinct names (they run in one pytest session)."""
    kinds = [kind(block) for block in BLOCKS]
    assert "test-file" in kinds and "script" in kinds and "profile" in kinds and "console" in kinds
    names = [block.test_file for block in BLOCKS if block.test_file]
    assert len(names) == len(set(names)), names


# "walk" blocks are one sequence against a real server, which the page's own test runs.
RUNNABLE = [pytest.param(block, id=block.id) for block in BLOCKS
            if kind(block) not in ("no-run", "test-file", "walk")]


@pytest.mark.parametrize("block", RUNNABLE)
def test_example_runs(block: Block, tmp_path):
    """The block does what the page says: scripts exit 0, profiles pass
    `emulator check`, console commands print exactly the output shown."""
    ports = {port: free_port() for port in PORTS}
    example = Example(block, tmp_path, ports)
    with ExitStack() as stack:
        if "serve" in block.tags:
            stack.enter_context(example.serving(block.tags["serve"] or "ims55sp4"))
        RUNNERS[kind(block)](example)


def test_example_test_files_pass(pytester):
    """Every complete test file of the pages passes in one fresh pytest
    session, none skipped, with the plugin loaded from its entry point."""
    files = {block.test_file: block.text for block in BLOCKS if block.test_file}
    pytester.makepyfile(**{name[:-3]: text for name, text in files.items()})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    outcomes = result.parseoutcomes()
    functions = sum(len(re.findall(r"^def test_", text, re.M)) for text in files.values())
    assert result.ret == 0, result.stdout.str()
    assert set(outcomes) == {"passed"} and outcomes["passed"] >= functions


class Example:
    """One block in a folder of its own: the page's files written, the
    checkout's examples/ and profiles/ and the environment's .venv/bin linked."""

    def __init__(self, block: Block, folder: Path, ports: dict[int, int]):
        self.block, self.folder, self.ports, self.api = block, folder, ports, None
        (folder / ".venv").mkdir()
        (folder / ".venv" / "bin").symlink_to(BIN)
        for name in ("examples", "profiles"):
            (folder / name).symlink_to(ROOT / name)
        for other in blocks(block.page):
            name = other.tags.get("file") or (f"{yaml.safe_load(other.text)['name']}.yaml"
                                               if kind(other) == "profile" else None)
            if name:
                (folder / name).write_text(self.ported(other.text))
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                    "XDG_STATE_HOME": str(folder / "state")}

    def ported(self, text: str) -> str:
        """C{text} with the pages' ports replaced by this example's free ones."""
        return _PORT.sub(lambda m: str(self.ports[int(m.group(1))]), text)

    def run(self, argv, **options) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=self.folder, env=self.env, capture_output=True, text=True,
                              timeout=180, **options)

    def shell(self, line: str) -> subprocess.CompletedProcess:
        result = self.run(["bash", "-euo", "pipefail", "-c", line])
        self.settle()
        return result

    @contextmanager
    def serving(self, profile: str):
        """What `make run` serves (PROFILE=C{profile}), plus the control API on port 8025."""
        log = self.folder / "serve.log"
        argv = ["emulator", "serve", "--profile", profile, "--listen", "tcp:2525", "--api", "tcp:8025",
                "--maildir", "var/maildir", "--transcripts", "var/transcripts", "--state-dir", "var/state"]
        with self.started(self.ported(shlex.join(argv)), log):
            deadline = time.monotonic() + WAIT
            while log.read_text().count("emulator: listening on") < 2:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            self.api = self.ports[8025]
            yield

    @contextmanager
    def started(self, line: str, log: Path):
        """C{line} running in the background until the block is done."""
        with open(log, "w") as out:
            process = subprocess.Popen(shlex.split(line), cwd=self.folder, env=self.env, stdout=out,
                                       stderr=subprocess.STDOUT)
        try:
            yield process
            assert process.poll() is None, f"{line}: exited with {process.returncode}:\n{log.read_text()}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def settle(self) -> None:
        """Wait until the served emulator has seen every connection close
        (it writes a transcript when its session ends)."""
        if self.api is None:
            return
        deadline = time.monotonic() + 5.0
        while any(session["open"] for session in self.get("/sessions")):
            assert time.monotonic() < deadline, "connections still open after 5 s"
            time.sleep(0.02)

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api}{path}", timeout=10) as response:
            return json.load(response)


def _lines(text: str) -> list[str]:
    """Logical lines of a shell block: continuations joined, comments and blanks dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def run_script(example: Example) -> None:
    (example.folder / "example.py").write_text(example.ported(example.block.text))
    result = example.run([sys.executable, "example.py"])
    example.settle()
    assert result.returncode == 0, f"{example.block.id}:\n{result.stdout}\n{result.stderr}"


def check_profile(example: Example, text: str | None = None) -> None:
    name = f"{yaml.safe_load(example.block.text)['name']}.yaml" if text is None else "example.yaml"
    if text is not None:
        (example.folder / name).write_text(text)
    result = example.run(["emulator", "check", name])
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{name}: ok\n", ""), example.block.id


def check_section(example: Example) -> None:
    check_profile(example, "name: example\nextends: ims55sp4\n" + example.block.text)


def check_middlebox(example: Example) -> None:
    indented = "".join(f"  {line}" for line in example.block.text.splitlines(keepends=True))
    check_profile(example, "name: example\nextends: ims55sp4\nmiddlebox:\n" + indented)


def run_shell(example: Example) -> None:
    """Each logical line on its own, in order; each must succeed."""
    for line in _lines(example.block.text):
        result = example.shell(example.ported(line))
        assert result.returncode == 0, f"{example.block.id}: {line}\n{result.stdout}\n{result.stderr}"


def run_starts(example: Example) -> None:
    """All lines started; each answers on its --listen ports; then all stopped."""
    with ExitStack() as stack:
        for number, line in enumerate(_lines(example.block.text)):
            line = example.ported(line)
            listens = re.findall(r"--listen[= ]tcp:(\d+)", line)
            assert listens, f"{example.block.id}: {line}: a started server names its --listen port"
            process = stack.enter_context(example.started(line, example.folder / f"started-{number}.log"))
            for port in listens:
                try:
                    banner = wait_for_banner(int(port), timeout=WAIT)
                except TimeoutError:
                    raise AssertionError(f"{line}: no banner\n{process.poll()}\n"
                                         f"{(example.folder / f'started-{number}.log').read_text()}")
                assert banner.startswith(b"220"), banner


def run_console(example: Example) -> None:
    """Each "$ command" prints exactly the lines that follow it (stdout and stderr)."""
    steps, text = [], example.ported(example.block.text)
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append([line[2:], []])
        elif steps and steps[-1][0].endswith("\\") and not steps[-1][1]:
            steps[-1][0] = steps[-1][0][:-1] + " " + line.strip()
        else:
            assert steps, f"{example.block.id}: output before the first command"
            steps[-1][1].append(line.rstrip())
    for command, expected in steps:
        result = example.shell(f"{command} 2>&1")
        shown = [line.rstrip() for line in result.stdout.rstrip("\n").splitlines()]
        assert shown == expected, f"{example.block.id}: $ {command}"


def check_golden(example: Example) -> None:
    """The excerpt's runs of lines (split at "...") appear in order in the golden file."""
    golden = (ROOT / "tests" / "golden" / f"{example.block.tags['golden']}.txt").read_text().splitlines()
    position = 0
    for run in re.split(r"^\.\.\.\n", example.block.text, flags=re.M):
        lines = run.splitlines()
        if not lines:
            continue
        found = next((i for i in range(position, len(golden) - len(lines) + 1)
                      if golden[i:i + len(lines)] == lines), None)
        assert found is not None, f"{example.block.id}: not in the golden file, in order:\n{run}"
        position = found + len(lines)


def check_faults(example: Example) -> None:
    from emulator.quirks.spec import parse

    for line in example.block.text.splitlines():
        words = shlex.split(line)
        assert len(words) == 2 and words[0] == "--fault", f"{example.block.id}: {line}"
        parse(words[1])


def check_diagram(example: Example) -> None:
    """One node per package of emulator/ (and the CLI and the twistd dropin)."""
    nodes = set(re.findall(r"^\s*(\w+)[\[(]", example.block.text, re.M))
    packages = {path.parent.name for path in (ROOT / "emulator").glob("*/__init__.py")}
    assert nodes == packages | PACKAGE_EXTRAS, (sorted(nodes), sorted(packages))


RUNNERS = {"script": run_script, "profile": check_profile, "section": check_section,
           "middlebox": check_middlebox, "shell": run_shell, "starts": run_starts, "console": run_console,
           "golden": check_golden, "faults": check_faults, "diagram": check_diagram}


def test_every_runner_is_exercised():
    """Each kind of block appears at least once, so no runner is dead code."""
    kinds = {kind(block) for block in BLOCKS}
    assert kinds >= set(RUNNERS), sorted(set(RUNNERS) - kinds)


def test_a_failing_example_fails(tmp_path):
    """The runners are not vacuous: a wrong output, a bad profile and a
    failing script are each caught."""
    page = tmp_path / "page.md"
    page.write_text("```console\n$ echo one\ntwo\n```\n```yaml\nname: bad\nnope: 1\n```\n"
                    "```python\nraise SystemExit(3)\n```\n")
    for number, block in enumerate(blocks(page)):
        folder = tmp_path / str(number)
        folder.mkdir()
        with pytest.raises(AssertionError):
            RUNNERS[kind(block)](Example(block, folder, {port: free_port() for port in PORTS}))
