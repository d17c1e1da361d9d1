"""emulator matrix: a client command against server personas started in
this process on 127.0.0.1, the table in Markdown and HTML."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import pytest

from emulator import cli

from emulator.sender import matrix

from emulator.profiles import loader as profiles

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SMTPLIB_CLIENT = f"{shlex.quote(sys.executable)} {ROOT / 'examples' / 'smtplib_client.py'} " \
                 "{host} {port} --cafile {cafile} --mode {mode} --timeout 10"


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def smtplib_run(tmp_path_factory, state_dir):
    """The shipped smtplib example through three personas (run once for the module's tests)."""
    out = tmp_path_factory.mktemp("matrix")
    progress = out / "progress.txt"
    with progress.open("w") as stream:
        rows = matrix.run(SMTPLIB_CLIENT, ["ims55sp4", "ims55sp2", "netscape-ms"], out=out, timeout=30,
                          state_dir=state_dir, progress=stream)
    return rows, out, progress.read_text()


def table_rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        rows[cells[0]] = cells
    return rows


def test_markdown_table_has_one_row_per_persona_with_what_happened(smtplib_run):
    """Each row: profile, KB, the expected outcome with its source, exit status, delivered, whether that is
    what a client of the time got, the last reply the client saw, link."""
    _, out, _ = smtplib_run
    text = (out / "matrix.md").read_text()
    assert text.splitlines()[0] == ("| Profile | KB | Expected (historical) | Exit status | Delivered | As history "
                                    "| Last reply | Transcript |")
    rows = table_rows(text)
    assert list(rows) == ["ims55sp4", "ims55sp2", "netscape-ms"]
    assert rows["ims55sp4"][1:2] + rows["ims55sp4"][3:] == [
        "Q237327", "0", "yes", "matches", "221 closing connection", "[transcript](transcripts/ims55sp4.txt)"]
    # smtplib gives up when STARTTLS, which SP2 lists without a certificate, is answered 554
    # (a client of the time went on in plaintext and delivered: the row differs from history)
    assert rows["ims55sp2"][3:7] == ["1", "no", "differs", "554 Unable to initialize security subsystem"]
    assert "source: KB Q237327, SYMPTOMS" in rows["ims55sp2"][2]
    # smtplib checks the certificate against the host it dialled, 127.0.0.1, as pre-SP4 IMS did (Q273948)
    assert rows["netscape-ms"][1] == "Q218430" and rows["netscape-ms"][3:6] == ["1", "no", "differs"]
    # the handshake failed, so the client never saw the banner queued inside TLS: no last reply
    assert rows["netscape-ms"][6] == ""


def test_html_table_matches(smtplib_run):
    """The HTML page holds the same rows, escaped, with links to the transcripts."""
    _, out, _ = smtplib_run
    page = (out / "matrix.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<tr class=") == 3
    assert '<tr class="delivered"><td>ims55sp4</td><td>Q237327</td>' in page
    assert "<td>554 Unable to initialize security subsystem</td>" in page
    assert '<a href="transcripts/netscape-ms.txt">transcript</a>' in page


def test_transcript_files_hold_command_client_output_and_sessions(smtplib_run):
    """Each linked file has the command as run, the client's output and the server's session."""
    rows, out, _ = smtplib_run
    text = (out / "transcripts" / "ims55sp2.txt").read_text()
    assert "# command: " in text and "--mode smtp " in text and "{port}" not in text
    assert "not delivered: SMTPResponseException: (554" in text
    assert "-> STARTTLS\n<- 554 Unable to initialize security subsystem\n" in text
    assert rows[2].command[rows[2].command.index("--mode") + 1] == "smtps"  # netscape-ms is served as SMTPS
    assert (out / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_progress_goes_to_the_given_stream(smtplib_run):
    """One progress line per row: its number, the persona and the verdict."""
    _, _, progress = smtplib_run
    lines = progress.splitlines()
    assert lines[0].startswith("[1/3] ims55sp4 ... delivered, exit 0")
    assert lines[1].startswith("[2/3] ims55sp2 ... not delivered, exit 1")


def test_client_not_found_is_reported(tmp_path, state_dir, capsys):
    """A command that is not installed: every row says so, the table is still written, exit 1."""
    status = cli.main(["matrix", "--client", "no-such-smtp-client-8d1e {host} {port}", "--profiles", "ims55sp4",
                       "--out", str(tmp_path), "--state-dir", str(state_dir)])
    captured = capsys.readouterr()
    assert status == 1
    assert "emulator matrix: client not found: no-such-smtp-client-8d1e" in captured.err
    assert table_rows(captured.out)["ims55sp4"][3] == "client not found: no-such-smtp-client-8d1e"
    assert "client not found" in (tmp_path / "matrix.html").read_text()


def test_a_hanging_client_is_killed_after_the_timeout(tmp_path, state_dir):
    """A client that never finishes is stopped after --timeout; the row says it timed out."""
    hang = f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(600)' {{host}}"
    (row,) = matrix.run(hang, ["ims55sp4"], out=tmp_path, timeout=0.5, state_dir=state_dir, progress=None)
    assert row.status is None and row.note == "timed out after 0.5 s" and not row.delivered
    assert "| timed out after 0.5 s | no |" in (tmp_path / "matrix.md").read_text()


def test_cli_matrix_prints_the_markdown_and_exits_0(tmp_path, state_dir, capsys):
    """emulator matrix writes both files, prints the Markdown, reports progress on stderr."""
    status = cli.main(["matrix", "--client", SMTPLIB_CLIENT, "--profiles", "ims55sp3,ims55sp4", "--out", str(tmp_path),
                       "--state-dir", str(state_dir), "--timeout", "30"])
    captured = capsys.readouterr()
    assert status == 0
    assert list(table_rows(captured.out)) == ["ims55sp3", "ims55sp4"]
    assert "[2/2] ims55sp4 ... delivered, exit 0" in captured.err
    assert (tmp_path / "matrix.md").read_text() == captured.out and (tmp_path / "matrix.html").is_file()


def test_cli_matrix_usage_errors_exit_2(tmp_path, capsys):
    """An unknown persona or an empty command is a usage error."""
    assert cli.main(["matrix", "--client", "true", "--profiles", "nosuch", "--out", str(tmp_path)]) == 2
    assert "no server persona or composition of that name" in capsys.readouterr().err
    assert cli.main(["matrix", "--client", " ", "--out", str(tmp_path)]) == 2
    assert "the client command is empty" in capsys.readouterr().err


def test_every_server_persona_has_an_expected_outcome_with_a_source():
    """The matrix data names the KB article (an RFC or CVE for the attack personas), the outcome and its
    source for every shipped server persona."""
    import re

    expected = matrix.expectations()
    for name in profiles.names():
        entry = expected[name]
        assert re.fullmatch(r"Q\d+|RFC \d+|CVE-\d{4}-\d+", entry.kb), (name, entry.kb)
        assert entry.expected and (entry.source.startswith("KB ") or entry.kb in entry.source), name


def test_compositions_plug_in_as_target_sources(tmp_path, state_dir, monkeypatch):
    """The extension point: a source in TARGET_SOURCES adds rows with their own start()."""
    started = []

    def start(target, state):
        started.append(target.id)
        from emulator.testing.harness import start_server

        return start_server(target.profile, state_dir=state)

    def compositions(names):
        if names is None or "relay+ims55sp4" in names:
            yield matrix.Target("relay+ims55sp4", "ims55sp4", start=start)

    monkeypatch.setattr(matrix, "TARGET_SOURCES", [*matrix.TARGET_SOURCES, compositions])
    rows = matrix.run(SMTPLIB_CLIENT, ["relay+ims55sp4"], out=tmp_path, state_dir=state_dir, progress=None)
    assert started == ["relay+ims55sp4"] and rows[0].delivered
    assert "| relay+ims55sp4 |  | (no expectation recorded) | 0 | yes |" in (tmp_path / "matrix.md").read_text()


def test_middlebox_compositions_are_rows(tmp_path, state_dir):
    """A shipped composition (a profile with a middlebox) and a MIDDLEBOX+PROFILE name are rows; the last
    reply is what the client got through the middlebox, and both legs are in the transcript."""
    rows = matrix.run(SMTPLIB_CLIENT, ["ims55sp2-starttls-firewall", "pix-mailguard+ims55sp3", "pix-mailguard+netscape-ms"],
                      out=tmp_path, state_dir=state_dir, progress=None)
    firewall, pix, impossible = rows
    assert (firewall.expectation.kb, firewall.delivered, firewall.last_reply) == (
        "Q237327", False, "500 Unrecognized command")  # the server's answer to the TLS ClientHello
    # the example calls ehlo() itself and so never falls back to HELO when the PIX X's out EHLO
    assert (pix.target.profile, pix.target.middlebox, pix.delivered) == ("ims55sp3", "pix-mailguard", False)
    text = pix.transcript.read_text()
    assert "=== command_masked verb=EHLO\n=> XXXX [127.0.0.1]\n" in text and "<- 220 ****" in text
    assert impossible.note.startswith("server did not start: a middlebox inspects plaintext SMTP")
    assert "| pix-mailguard+ims55sp3 |  | (no expectation recorded) | 1 | no |" in (tmp_path / "matrix.md").read_text()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_through_the_matrix(tmp_path, state_dir):
    """The curl example of docs/senders.md: curl's SMTP client, checking the FQDN via --resolve and
    trying STARTTLS (--ssl), delivers over TLS to ims55sp3-cert and in plaintext after SP2's 554."""
    command = ("curl -sS --max-time 10 --url {mode}://{hostname}:{port} --resolve {hostname}:{port}:{host} "
               f"--cacert {{cafile}} --ssl --mail-from a@example.org --mail-rcpt b@example.test "
               f"--upload-file {ROOT / 'examples' / 'message.eml'}")
    rows = matrix.run(command, ["ims55sp3-cert", "ims55sp2"], out=tmp_path, state_dir=state_dir, progress=None)
    assert [(r.target.id, r.status, r.delivered) for r in rows] == [("ims55sp3-cert", 0, True), ("ims55sp2", 0, True)]
    assert "=== tls_established" in (tmp_path / "transcripts" / "ims55sp3-cert.txt").read_text()


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed (apt-get install swaks)")
def test_swaks_through_the_matrix(tmp_path, state_dir):
    """The swaks command of docs/senders.md: --tls-optional goes on in plaintext after SP2's 554 and delivers."""
    command = "swaks --server {host}:{port} --from a@example.org --to b@example.test --tls-optional " \
              "--tls-ca-path {cafile} --timeout 10"
    (row,) = matrix.run(command, ["ims55sp2"], out=tmp_path, state_dir=state_dir, progress=None)
    assert (row.status, row.delivered) == (0, True)
    assert "<- 554 Unable to initialize security subsystem" in (tmp_path / "transcripts" / "ims55sp2.txt").read_text()


def test_every_expectation_says_whether_a_client_of_the_time_delivered():
    """The matrix data gives each persona's historical outcome as a boolean, which the As history column
    compares with the row."""
    for name, entry in matrix.expectations().items():
        assert entry.delivered in (True, False), name


@pytest.mark.parametrize("client, message", [
    ("swaks --server {hots}:{port}",
     "emulator matrix: --client: unknown placeholder {hots} (did you mean {host}?); known: {host}, {port}, "
     "{cafile}, {mode}, {hostname}"),
    ("client {x}", "emulator matrix: --client: unknown placeholder {x}; known: {host}, {port}, {cafile}, {mode}, "
                   "{hostname}"),
])
def test_an_unknown_placeholder_is_refused_before_anything_runs(tmp_path, client, message):
    """A misspelled placeholder is one line, exit 2, and no row runs (it would have timed out)."""
    import subprocess

    result = subprocess.run([sys.executable, "-m", "emulator.cli", "matrix", "--client", client, "--out",
                             str(tmp_path / "out"), "--profiles", "ims55sp4"], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message + "\n")
    assert not (tmp_path / "out" / "matrix.md").exists()


def test_client_output_is_kept_up_to_a_limit(tmp_path, state_dir, monkeypatch):
    """A client that writes without end (stuck at a prompt) has at most OUTPUT_LIMIT bytes of each stream
    kept, with a marked truncation, and is still killed at its timeout."""
    monkeypatch.setattr(matrix, "OUTPUT_LIMIT", 1000)
    flood = f"{shlex.quote(sys.executable)} -c " + shlex.quote(
        "import sys\nfor _ in range(20000): sys.stdout.write('prompt> ' * 16 + '\\n')\nsys.stdout.flush()\n"
        "import time; time.sleep(60)")
    (row,) = matrix.run(flood, ["ims55sp4"], out=tmp_path, timeout=2, state_dir=state_dir)
    text = row.transcript.read_text()
    assert row.note == "timed out after 2 s"
    assert "\n[emulator matrix: 2579000 more bytes of output not kept: at most 1000 bytes per stream]\n" in text
    assert len(text) < 10_000


def test_cli_gates_on_rows_that_differ_and_writes_junit_xml(tmp_path, state_dir, capsys):
    """A row whose outcome is not the historical one makes the command exit 1, with a summary line naming
    it, and the JUnit report fails that persona's test case; a matching row passes."""
    from xml.etree import ElementTree as ET

    report = tmp_path / "matrix.xml"
    status = cli.main(["matrix", "--client", SMTPLIB_CLIENT, "--profiles", "ims55sp4,ims55sp2", "--out",
                       str(tmp_path), "--state-dir", str(state_dir), "--junit-xml", str(report)])
    err = capsys.readouterr().err
    assert status == 1
    assert "emulator matrix: 2 rows, 1 as history, 1 differ (ims55sp2)\n" in err
    suite = ET.parse(report).getroot()
    assert (suite.tag, suite.get("tests"), suite.get("failures")) == ("testsuite", "2", "1")
    cases = {case.get("name"): case for case in suite}
    assert cases["ims55sp4"].find("failure") is None
    failure = cases["ims55sp2"].find("failure")
    assert failure.get("message") == ("expected delivered (KB Q237327), got not delivered; exit 1; "
                                      "last reply 554 Unable to initialize security subsystem")
    assert "-> STARTTLS" in cases["ims55sp2"].find("system-out").text
