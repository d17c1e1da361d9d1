import json
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NUMBER = re.compile(r"^-?[0-9][0-9,]*(\.[0-9]+)?( |$)")


def test_quick_benchmark_prints_a_numeric_table(tmp_path):
    """bench/run.py runs end to end against the two reference servers and
    prints a Markdown table whose reference cells are numbers (and saves the
    same numbers with --json).  Timings are deliberately not asserted: they
    depend on the machine; this guards the harness, not the performance."""
    raw = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--only", "references",
         "--figures", "cpu,latency", "--json", str(raw)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|"))))
            for line in table[2:]]
    assert len(rows) == 7  # 5 CPU rows (figure 1) + p50 and p99 (figure 3)
    for row in rows:
        for server in ("Twisted ESMTP", "aiosmtpd"):
            assert NUMBER.match(row[server]), (row["figure"], server, row[server])
        assert row["emulator"] == "n/a"  # not selected, so no number and no ratio
        assert row["ratio vs aiosmtpd"] == "n/a"

    samples = json.loads(raw.read_text())["samples"]
    assert samples["latency.p50"]["twisted"] and samples["latency.p50"]["aiosmtpd"]


def test_micro_benchmarks_run_as_plain_tests():
    """Every micro-benchmark (core, edges, and the fixtures' start and reset) runs
    once with timing off, so `make bench` never meets a broken one."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/micro", "--benchmark-disable", "-q", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert re.search(r"\b10 passed\b", done.stdout), done.stdout[-500:]
