import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"^-?[0-9][0-9,]*(\.[0-9]+)?( |$)")
RATIO = re.compile(r"^([0-9]+\.[0-9]{2}×|n/a)$")


def bench(*args, json_file):
    """The table bench/run.py prints, as one dict per row (column title -> cell)."""
    done = subprocess.run([sys.executable, "bench/run.py", "--smoke", *args, "--json", str(json_file)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    return header, [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|"))))
                    for line in table[2:]]


def test_every_figure_runs_against_the_emulator_and_the_equal_work_references(tmp_path):
    """bench/run.py --smoke runs every figure (both kinds of load, latency,
    connect, start-up, idle memory, STARTTLS, the burst, RSS after all
    loads) against the emulator and the two storing references, and prints
    a numeric cell for each, with the equal-work ratios.  Timings are
    deliberately not asserted: they depend on the machine; this guards the
    harness, not the performance."""
    raw = tmp_path / "bench.json"
    header, rows = bench("--only", "emulator,equal-work", json_file=raw)
    assert header == ["figure", "emulator", "Twisted + Maildir", "aiosmtpd + Mailbox",
                      "ratio vs Twisted + Maildir", "ratio vs aiosmtpd + Mailbox"]
    figures = {row["figure"].split(".")[0] for row in rows}
    assert figures == {str(n) for n in range(1, 10)}
    for row in rows:
        for server in ("emulator", "Twisted + Maildir", "aiosmtpd + Mailbox"):
            assert NUMBER.match(row[server]), (row["figure"], server, row[server])
        assert all(RATIO.match(row[column]) for column in header[4:]), row
    samples = json.loads(raw.read_text())["samples"]
    assert samples["burst.within"]["emulator"] == [20]  # every banner of the smoke's burst of 20
    assert samples["rss.after"]["twisted-maildir"] and samples["rss.start"]["aiosmtpd-mailbox"]


def test_the_discarding_servers_smtp_sink_and_another_checkout_run(tmp_path):
    """The discarding references, smtp-sink (when installed) and --compare
    (here this same checkout) start and give numbers; the emulator's own
    column is n/a when it is not selected, and so are its ratios."""
    servers = "discarding,smtp-sink" if shutil.which("smtp-sink") else "discarding"
    header, rows = bench("--only", servers, "--compare", str(REPO_ROOT), "--figures", "cpu,latency",
                         json_file=tmp_path / "bench.json")
    titles = ["emulator", f"emulator at {REPO_ROOT.name}", "Twisted ESMTP", "aiosmtpd"]
    titles += ["smtp-sink"] if "smtp-sink" in servers else []
    assert header[:len(titles) + 1] == ["figure", *titles]
    assert header[-1] == f"ratio vs emulator at {REPO_ROOT.name}"  # before/after comes last
    assert len(rows) == 4  # the smoke's two loads (CPU rows), then p50 and p99
    for row in rows:
        for server in titles[1:]:
            assert NUMBER.match(row[server]), (row["figure"], server, row[server])
        assert row["emulator"] == "n/a" and row["ratio vs aiosmtpd"] == "n/a"


def test_soak_checks_burst_delivery_and_memory(tmp_path):
    """bench/soak.py runs a burst, a load paused after its first tenth for the
    RSS, consumes the Maildir as it goes, and reports every accepted message
    found exactly once."""
    done = subprocess.run(
        [sys.executable, "bench/soak.py", "--clients", "4", "--sessions", "40", "--messages", "2", "--size", "2000",
         "--burst", "20", "--consume", "--max-rss-growth", "1000", "--state", str(tmp_path), "--timeout", "120"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "banners within 1 s: 20;" in done.stdout
    assert "accepted 80 of 80; errors 0" in done.stdout
    assert re.search(r"server RSS: [0-9.]+ MiB after 4 sessions, [0-9.]+ MiB after 40 ", done.stdout)
    assert "maildir: 80 files; accepted but missing 0; duplicated 0" in done.stdout
    assert list(tmp_path.iterdir()) == []  # its state folder is gone


def test_micro_benchmarks_run_as_plain_tests():
    """Every micro-benchmark (core, edges, and the fixtures' start and reset) runs
    once with timing off, so `make bench` never meets a broken one."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/micro", "--benchmark-disable", "-q", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert re.search(r"\b12 passed\b", done.stdout), done.stdout[-500:]


def test_startup_gives_a_figure_for_twistd_serve_and_the_reference():
    """bench/startup.py starts `twistd -n emulator`, `emulator serve` and
    Twisted + Maildir (after a warm-up round) and prints a row of numbers
    for each; the figures themselves are not asserted."""
    done = subprocess.run([sys.executable, "bench/startup.py", "--spawns", "1"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| server")}
    assert list(rows) == ["emulator", "emulator serve", "Twisted + Maildir"]
    for cells in rows.values():
        assert NUMBER.match(cells[0]) and cells[2] == "1" and RATIO.match(cells[3]), cells
