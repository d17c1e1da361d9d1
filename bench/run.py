"""Benchmark the emulator against reference SMTP servers on 127.0.0.1.

Each measurement starts its server fresh as a subprocess (see servers.py),
drives it with the asyncio load generator in this process (see smtpload.py)
and stops it.  Repetitions are interleaved (rep 1 of every server, then rep 2,
...) so slow drift on the machine hits all servers alike.  Prints a Markdown
table on stdout (progress goes to stderr); --json saves the raw numbers.

    python bench/run.py                    # full run, a quarter of an hour
    python bench/run.py --quick            # short run, a few minutes
    python bench/run.py --only references --figures cpu,latency --json out.json
    python bench/run.py --quick --compare /path/to/other/checkout   # before/after
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import resource
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import trustme

import smtpload
from servers import (COMPARED, EMULATOR, EQUAL_WORK, HOST, REPO_ROOT, SERVER_NAMES, SERVERS, ServerStartError,
                     cpu_seconds, emulator_from, listen_overflows, machine_busy_seconds, peak_rss_kib,
                     rss_kib, running)
from smtpload import Budget, SmtpError, run_async

KIB = 1024
SMALL_BODY = 1 * KIB
SERVER_GROUPS = {
    "equal-work": EQUAL_WORK,
    "discarding": ("twisted", "aiosmtpd"),
    "references": (*EQUAL_WORK, "twisted", "aiosmtpd"),
}
FIGURES = ("cpu", "rate", "latency", "connect", "startup", "memory", "tls", "burst", "rss")
# Clients of the burst figure, and the window their banners are counted in
# (issue 19: 1,000 clients connecting at once all get a banner within 1 s).
BURST_WINDOW = 1.0
# Pause before reading server CPU or RSS once the client is done, so the
# server has finished tearing down (or setting up) the last connections.
SETTLE = 0.2
# Where the driver and the servers run (set by pin_cpus): on different cores,
# so that client and server never compete for one, and the scheduler cannot
# move them around between runs.
CPUS = {"client": None, "server": None}
# A run whose load generator used this share of a core or more may have been
# limited by the client, not the server; its cells get a mark.
CLIENT_BOUND = 0.9
# A run during which other processes (or the hypervisor) kept this share of a
# core busy ran on a machine that was not quiet; its cells get a mark.
CONTENDED = 0.25


@dataclass(frozen=True)
class Settings:
    reps: int
    messages: int  # message budget of the CPU loads (about 2,000 in a full run)
    load_seconds: float  # time cap of each load or latency run
    latency_cycles: int
    idle_connections: int
    tls_sessions: int
    tls_seconds: float
    startup_spawns: int
    burst_clients: int
    burst_seconds: float  # how long the burst waits for its last banner
    loads: tuple = ()  # names of the loads of figures 1, 2 and 9 to run; () = all


FULL = Settings(reps=3, messages=2000, load_seconds=4.0, latency_cycles=2000,
                idle_connections=1000, tls_sessions=8, tls_seconds=3.0, startup_spawns=5,
                burst_clients=1000, burst_seconds=5.0)
QUICK = Settings(reps=1, messages=200, load_seconds=1.0, latency_cycles=200,
                 idle_connections=200, tls_sessions=8, tls_seconds=1.0, startup_spawns=3,
                 burst_clients=1000, burst_seconds=3.0)
# Every code path once with the smallest loads (the test suite's smoke run):
# its numbers mean nothing.
SMOKE = Settings(reps=1, messages=20, load_seconds=0.2, latency_cycles=10,
                 idle_connections=10, tls_sessions=2, tls_seconds=0.2, startup_spawns=1,
                 burst_clients=20, burst_seconds=2.0, loads=("1x1", "20x100"))


@dataclass(frozen=True)
class Row:
    key: str
    figure: str
    label: str


@dataclass(frozen=True)
class Probe:
    """One measurement on a freshly started server, yielding values for some rows."""

    name: str
    rows: tuple
    run: Callable  # Server -> (values by row key, raw details)
    reps: int
    needs_tls: bool = False
    # Run the server on the driver's core.  With a single request/response
    # session both processes sit idle between commands; on separate cores
    # every reply then costs a cross-CPU wake-up (~60 µs on this VM, and
    # noisy), and the scheduler sooner or later migrates the pair onto one
    # core anyway, changing the figure mid-run.  Sharing a core measures the
    # command path itself, the same way for every server.
    colocate: bool = False


# --------------------------------------------------------------------------
# Probes


async def measured(pid, work):
    """Awaits work(); returns its result, and the wall and CPU seconds it took."""
    overflows, busy, server_cpu = listen_overflows(), machine_busy_seconds(), cpu_seconds(pid)
    client_cpu = client_cpu_seconds()
    started = time.perf_counter()
    result = await work()
    wall = time.perf_counter() - started
    client_cpu = client_cpu_seconds() - client_cpu
    await asyncio.sleep(SETTLE)
    server_cpu = cpu_seconds(pid) - server_cpu
    return result, {
        "seconds": wall,
        "server_cpu_s": server_cpu,
        "client_cpu_s": client_cpu,
        # Whatever else ran on the machine meanwhile (other processes, steal).
        "other_cpu_s": machine_busy_seconds() - busy - server_cpu - client_cpu,
        "listen_overflows": listen_overflows() - overflows,
    }


def client_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_probe(name, sessions, per_session, body, messages, seconds):
    """Every load yields both CPU per message and messages/s; rows pick what they show."""
    message = smtpload.make_message(body)

    def run(server):
        tally, times = run_async(measured(server.pid, lambda: smtpload.send_messages(
            server.port, sessions, per_session, message, Budget(messages, seconds), seconds)))
        values = {}
        if tally.done:
            values[f"cpu.{name}"] = times["server_cpu_s"] / tally.done * 1e6
            values[f"rate.{name}"] = tally.done / times["seconds"]
        return values, {**asdict(tally), **times}

    return run


def latency_probe(cycles, seconds):
    def run(server):
        latencies, times = run_async(measured(
            server.pid, lambda: smtpload.command_latencies(server.port, cycles, seconds)))
        everything = [us for per_command in latencies.values() for us in per_command]
        values = {
            "latency.p50": statistics.median(everything),
            "latency.p99": statistics.quantiles(everything, n=100, method="inclusive")[98],
        }
        per_command = {name: {"p50_us": statistics.median(us), "count": len(us)}
                       for name, us in latencies.items()}
        return values, {"per_command": per_command, **times}

    return run


def connect_probe(count, seconds):
    def run(server):
        latencies, times = run_async(measured(
            server.pid, lambda: smtpload.connect_latencies(server.port, count, seconds)))
        return {"connect.p50": statistics.median(latencies)}, {"connections": len(latencies), **times}

    return run


def burst_probe(count, seconds):
    def run(server):
        arrivals, times = run_async(measured(server.pid, lambda: smtpload.burst(server.port, count, seconds)))
        got = sorted(t for t in arrivals if t is not None)
        values = {"burst.within": sum(t <= BURST_WINDOW for t in got)}
        if len(got) == count:
            values["burst.last"] = got[-1]
        return values, {"banners": len(got), "errors": count - len(got), **times}

    return run


def rss_probe(settings):
    """RSS after start, then after every load of figures 1 and 2 in turn
    against the same server (issue 19: at most 1.5× the first)."""
    async def every_load(port):
        tally = smtpload.Tally()
        for name, sessions, per_session, body, messages, *_ in load_table(settings):
            done = await smtpload.send_messages(port, sessions, per_session, smtpload.make_message(body),
                                                Budget(messages, settings.load_seconds), settings.load_seconds)
            tally.done += done.done
            tally.sessions += done.sessions
            tally.errors += done.errors
            tally.first_error = tally.first_error or done.first_error
        return tally

    def run(server):
        run_async(smtpload.ehlo_reply(server.port))
        time.sleep(SETTLE)
        start = rss_kib(server.pid)
        tally, times = run_async(measured(server.pid, lambda: every_load(server.port)))
        after, peak = rss_kib(server.pid), peak_rss_kib(server.pid)
        values = {"rss.start": start / KIB, "rss.after": after / KIB, "rss.peak": peak / KIB,
                  "rss.growth": after / start}
        return values, {**asdict(tally), **times, "rss_start_kib": start, "rss_after_kib": after,
                        "rss_peak_kib": peak}

    return run


async def idle_rss(server, count):
    # One full session first: the first connection pays for lazy imports and
    # buffers that a server allocates once, not per connection.
    await smtpload.ehlo_reply(server.port)
    await asyncio.sleep(SETTLE)
    before = rss_kib(server.pid)
    sessions = await smtpload.open_idle(server.port, count)
    await asyncio.sleep(SETTLE)
    after = rss_kib(server.pid)
    for session in sessions:
        session.close()
    return before, after, len(sessions)


def idle_memory_probe(count):
    def run(server):
        before, after, opened = run_async(idle_rss(server, count))
        values = {"memory.idle": (after - before) / opened} if opened else {}
        return values, {"rss_before_kib": before, "rss_after_kib": after,
                        "connections": opened, "errors": count - opened}

    return run


def starttls_probe(context, sessions, seconds):
    def run(server):
        if b"STARTTLS" not in run_async(smtpload.ehlo_reply(server.port)).upper():
            return {}, {"starttls": "not advertised"}
        tally, times = run_async(measured(server.pid, lambda: smtpload.starttls_handshakes(
            server.port, context, sessions, Budget(sys.maxsize, seconds), seconds)))
        values = {"tls.rate": tally.done / times["seconds"]} if tally.done else {}
        return values, {**asdict(tally), **times}

    return run


def startup_probe(server):
    return {"startup.ms": server.startup_s * 1e3}, {}


def load_table(settings):
    """(name, sessions, msgs per session, body, message budget, CPU row label,
    rate row label).  Sessions reconnect until the budget or the time cap is
    spent.  The CPU loads send about n messages (fewer for big bodies, to
    stay within the cap); the rate loads rely on the cap."""
    n = settings.messages
    return tuple(load for load in _loads(n) if not settings.loads or load[0] in settings.loads)


def _loads(n):
    return (
        ("1x1", 1, 1, SMALL_BODY, 4 * n, "1 session × 1 msg, 1 KiB", "1 session × 1 msg"),
        ("1x100", 1, 100, SMALL_BODY, 4 * n, None, "1 session × 100 msgs"),
        ("20x1", 20, 1, SMALL_BODY, n, "20 sessions × 1 msg, 1 KiB", "20 sessions × 1 msg"),
        ("20x100", 20, 100, SMALL_BODY, n, "20 sessions × 100 msgs, 1 KiB", "20 sessions × 100 msgs"),
        ("200x1", 200, 1, SMALL_BODY, 4 * n, None, "200 sessions × 1 msg"),
        ("200x100", 200, 100, SMALL_BODY, 10 * n, None, "200 sessions × 100 msgs"),
        ("10k", 4, 100, 10 * KIB, n // 4, "4 sessions, 10 KiB body", None),
        ("100k", 4, 100, 100 * KIB, n // 20, "4 sessions, 100 KiB body", None),
        ("1m", 4, 100, 1024 * KIB, max(2, n // 100), "4 sessions, 1 MiB body", None),
    )


def load_probes(settings):
    cap = settings.load_seconds
    for name, sessions, per_session, body, messages, cpu_label, rate_label in load_table(settings):
        rows = []
        if cpu_label:
            rows.append(Row(f"cpu.{name}", "cpu", f"1. server CPU per msg (µs), {cpu_label}"))
        if rate_label:
            rows.append(Row(f"rate.{name}", "rate", f"2. msgs/s, {rate_label}"))
        yield Probe(f"load {name}", tuple(rows),
                    load_probe(name, sessions, per_session, body, messages, cap), settings.reps,
                    colocate=sessions == 1)


def all_probes(settings, client_tls):
    yield from load_probes(settings)
    yield Probe("latency", (Row("latency.p50", "latency", "3. command latency p50 (µs)"),
                            Row("latency.p99", "latency", "3. command latency p99 (µs)")),
                latency_probe(settings.latency_cycles, settings.load_seconds), settings.reps,
                colocate=True)
    yield Probe("connect", (Row("connect.p50", "connect", "4. connect → 220 banner p50 (µs), one client"),),
                connect_probe(settings.latency_cycles, settings.load_seconds), settings.reps, colocate=True)
    yield Probe("startup", (Row("startup.ms", "startup", "5. spawn → 220 banner (ms)"),),
                startup_probe, settings.startup_spawns)
    yield Probe("memory", (Row("memory.idle", "memory",
                               f"6. RSS per idle connection (KiB), {settings.idle_connections} conns"),),
                idle_memory_probe(settings.idle_connections), settings.reps)
    yield Probe("starttls", (Row("tls.rate", "tls",
                                 f"7. STARTTLS handshakes/s, {settings.tls_sessions} sessions"),),
                starttls_probe(client_tls, settings.tls_sessions, settings.tls_seconds),
                settings.reps, needs_tls=True)
    clients = f"{settings.burst_clients:,} clients at once"
    yield Probe("burst", (Row("burst.within", "burst", f"8. banners within {BURST_WINDOW:g} s, {clients}"),
                          Row("burst.last", "burst", f"8. seconds to the last banner, {clients}")),
                burst_probe(settings.burst_clients, settings.burst_seconds), settings.reps)
    # One repetition: the loads take a while, and RSS is the server's own
    # figure (other load on the machine does not change it).
    yield Probe("rss", (Row("rss.start", "rss", "9. RSS after start (MiB)"),
                        Row("rss.after", "rss", "9. RSS after all the loads of 1 and 2 (MiB)"),
                        Row("rss.peak", "rss", "9. peak RSS (MiB)"),
                        Row("rss.growth", "rss", "9. RSS after the loads / after start")),
                rss_probe(settings), 1)


# --------------------------------------------------------------------------
# Running everything


@dataclass
class Results:
    samples: dict = field(default_factory=dict)  # row key -> server name -> [values]
    marks: dict = field(default_factory=dict)  # (row key, server name) -> set of marks
    runs: list = field(default_factory=list)  # raw details of every measurement
    notes: list = field(default_factory=list)
    failing: set = field(default_factory=set)  # servers whose failed sessions were noted


MARKS = {
    "*": "some sessions failed, or an accept queue overflowed, in at least one run (see --json)",
    "†": f"the load generator used ≥{CLIENT_BOUND:.0%} of a core in at least one run: "
         "the number may be client-bound",
    "‡": f"other processes or the hypervisor kept ≥{CONTENDED:.0%} of a core busy during at least "
         "one run: the machine was not quiet",
}


def run_marks(raw):
    marks = set()
    if raw.get("errors") or raw.get("listen_overflows"):
        marks.add("*")
    if raw.get("seconds") and raw["client_cpu_s"] / raw["seconds"] >= CLIENT_BOUND:
        marks.add("†")
    if raw.get("seconds") and raw["other_cpu_s"] / (raw["seconds"] + SETTLE) >= CONTENDED:
        marks.add("‡")
    return marks


def note(results, text):
    results.notes.append(text)
    print(text, flush=True)


def make_tls_files(directory):
    """An RSA-2048 server certificate for localhost from a throwaway CA."""
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    issued = ca.issue_cert("localhost", HOST, key_type=trustme.KeyType.RSA)
    cert, key = directory / "server.pem", directory / "server.key"
    issued.cert_chain_pems[0].write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return (cert, key), client


def measure_once(probe, spec, scratch, tls_files, rep, results, broken):
    try:
        cpus = CPUS["client" if probe.colocate else "server"]
        with running(spec, scratch, tls_files if probe.needs_tls else None, cpus) as server:
            values, raw = probe.run(server)
    except ServerStartError as exc:
        broken.add((spec.name, probe.needs_tls))
        what = "with --tls-cert/--tls-key (STARTTLS n/a)" if probe.needs_tls else "(all its figures n/a)"
        note(results, f"- {spec.title}: could not start {what}: {exc}; continuing with the others")
        return
    except (OSError, SmtpError) as exc:
        values, raw = {}, {"failed": f"{type(exc).__name__}: {exc}"}
        note(results, f"- {spec.title}: {probe.name} run {rep + 1} failed: {raw['failed']}")
    if raw.get("first_error") and spec.name not in results.failing:
        results.failing.add(spec.name)
        note(results, f"- {spec.title}: {raw['errors']} session(s) failed in {probe.name} run {rep + 1}, "
                      f"first: {raw['first_error']} (further failures only in --json)")
    for key, value in values.items():
        results.samples.setdefault(key, {}).setdefault(spec.name, []).append(value)
        results.marks.setdefault((key, spec.name), set()).update(run_marks(raw))
    results.runs.append({"probe": probe.name, "server": spec.name, "rep": rep + 1,
                         "values": values, **raw})
    print(f"  [{rep + 1}/{probe.reps}] {probe.name:<12} {spec.name:<9} "
          + " ".join(f"{key}={value:.4g}" for key, value in values.items()), file=sys.stderr)


def run_all(specs, probes, scratch, tls_files, results):
    broken = set()  # (server name, started with TLS) that failed to start
    if not specs:
        return
    for rep in range(max(probe.reps for probe in probes)):
        for probe in (probe for probe in probes if rep < probe.reps):
            # Rotate the order each repetition so no server always runs first.
            for spec in specs[rep % len(specs):] + specs[:rep % len(specs)]:
                if (spec.name, False) in broken or (spec.name, probe.needs_tls) in broken:
                    continue
                if probe.needs_tls and spec.tls_args is None:
                    continue
                measure_once(probe, spec, scratch, tls_files, rep, results, broken)


# --------------------------------------------------------------------------
# Report


def fmt(value):
    """About three significant digits; thresholds sit where rounding adds a digit."""
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 99.95:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 9.995 else f"{value:.2f}"


def cell(values, marks):
    if not values:
        return "n/a"
    text = fmt(statistics.median(values))
    if len(values) > 1:
        text += f" ({fmt(min(values))}–{fmt(max(values))})"
    return " ".join([text, *sorted(marks)])


def ratio(row_samples, reference):
    # A median of 0 happens where a figure is below the CPU clock's tick.
    if not row_samples.get("emulator") or not row_samples.get(reference) \
            or not statistics.median(row_samples[reference]):
        return "n/a"
    return f"{statistics.median(row_samples['emulator']) / statistics.median(row_samples[reference]):.2f}×"


def table(rows, results, specs):
    """One column per server (the emulator's always, n/a when it did not
    run), then the emulator's ratio to each other server: the equal-work
    references first, as they are listed."""
    shown = [EMULATOR, *(spec for spec in specs if spec.name != EMULATOR.name)]
    # The --compare checkout's ratio (after / before) comes last.
    references = sorted(shown[1:], key=lambda spec: spec.name == COMPARED)
    header = ["figure", *(spec.title for spec in shown), *(f"ratio vs {spec.title}" for spec in references)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        row_samples = results.samples.get(row.key, {})
        cells = [cell(row_samples.get(spec.name), results.marks.get((row.key, spec.name), ())) for spec in shown]
        cells += [ratio(row_samples, spec.name) for spec in references]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    used = set().union(*(results.marks.get((row.key, spec.name), set())
                         for row in rows for spec in shown))
    lines += [""] + [f"{mark} {text}" for mark, text in MARKS.items() if mark in used]
    return "\n".join(lines)


def cpu_model():
    with open("/proc/cpuinfo") as cpuinfo:
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read(), re.M)
    return match.group(1) if match else platform.processor() or "unknown"


def environment():
    with open("/proc/loadavg") as loadavg:
        load = " ".join(loadavg.read().split()[:3])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "client_event_loop": smtpload.event_loop_name(),
        "cpus": {role: sorted(cpus) if cpus else "any" for role, cpus in CPUS.items()},
        "loadavg_at_start": load,
    }


def print_header(env, settings):
    print("## legacy-smtp emulator benchmark\n")
    print(f"- date: {env['date']}")
    print(f"- machine: {env['machine']}, {env['cpu']}, {env['cores']} cores")
    print(f"- Python: {env['python']}; load generator on {env['client_event_loop']}")
    print(f"- CPUs: driver {env['cpus']['client']}, servers {env['cpus']['server']} "
          "(single-session figures: both on the driver's)")
    print(f"- load average at start: {env['loadavg_at_start']}")
    print(f"- repetitions: {settings.reps}, interleaved; cells are median (min–max); "
          "ratio = emulator / reference\n", flush=True)


# --------------------------------------------------------------------------
# Command line


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run: 1 repetition, small loads")
    parser.add_argument("--smoke", action="store_true",
                        help="every code path once with tiny loads (the test suite's run; numbers mean nothing)")
    parser.add_argument("--reps", type=int, help="repetitions per figure (default 3, 1 with --quick)")
    parser.add_argument("--only", default="all",
                        help=f"comma list of servers: {', '.join(SERVER_NAMES)}, or a group: "
                             + "; ".join(f"'{group}' ({' + '.join(names)})" for group, names in SERVER_GROUPS.items())
                             + "; default all")
    parser.add_argument("--compare", type=Path, metavar="CHECKOUT",
                        help="also run the emulator of another checkout (e.g. `git worktree add /tmp/base main`), "
                             "interleaved with this one; its ratio column is after / before")
    parser.add_argument("--figures", default=",".join(FIGURES),
                        help=f"comma list out of {', '.join(FIGURES)}; default all")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also save raw numbers here")
    parser.add_argument("--scratch", type=Path, metavar="DIR", default=default_scratch(),
                        help="where the emulator's Maildir and transcripts go (default: /dev/shm when it "
                             "exists, so the figures measure the emulator rather than this machine's disk)")
    args = parser.parse_args(argv)
    args.figures = args.figures.split(",")
    unknown = set(args.figures) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    wanted = SERVER_NAMES if args.only == "all" else [
        name for part in args.only.split(",") for name in SERVER_GROUPS.get(part, (part,))]
    unknown = set(wanted) - set(SERVER_NAMES)
    if unknown:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    args.servers = [spec for spec in SERVERS if spec.name in wanted]
    if args.compare:
        if not (args.compare / "emulator" / "__init__.py").is_file():
            parser.error(f"--compare {args.compare}: not a checkout of the emulator")
        # Beside the emulator's column, before the references.
        args.servers.insert(int(EMULATOR in args.servers), emulator_from(args.compare))
    return args


def available(specs, results):
    if any(spec.name == "smtp-sink" for spec in specs) and not shutil.which("smtp-sink"):
        note(results, "- Postfix smtp-sink not installed: apt-get install postfix (the harness then adds it)")
        return [spec for spec in specs if spec.name != "smtp-sink"]
    return specs


def pin_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        CPUS.update(client={cpus[0]}, server={cpus[1]})
        os.sched_setaffinity(0, CPUS["client"])


def raise_fd_limit(needed):
    # Figures 6 and 8 hold ~1,000 sockets open in this process, and in the server,
    # which inherits the limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def default_scratch() -> Path | None:
    """A tmpfs if the machine has one: creating and renaming files on a disk
    costs from 10 to 190 us of kernel time per file on the reference machine,
    depending on the folder, which would swamp what the emulator does."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


def byte_compile(roots):
    """Compile the emulator to bytecode as pip would for an installed
    package, so that no start of it pays for compiling (see Pitfalls)."""
    import compileall

    for root in roots:
        for folder in ("emulator", "twisted/plugins"):
            compileall.compile_dir(root / folder, quiet=1)


def main(argv=None):
    args = parse_args(argv)
    settings = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.reps:
        settings = Settings(**{**asdict(settings), "reps": args.reps})
    pin_cpus()
    byte_compile({REPO_ROOT, *(spec.root for spec in args.servers)})
    env = environment()
    print_header(env, settings)
    raise_fd_limit(max(settings.idle_connections, settings.burst_clients) + 256)
    results = Results()
    print(f"- emulator Maildir and transcripts under {args.scratch}")
    with tempfile.TemporaryDirectory(prefix="smtp-bench-", dir=args.scratch) as scratch:
        scratch = Path(scratch)
        tls_files, client_tls = make_tls_files(scratch)
        probes = [probe for probe in all_probes(settings, client_tls)
                  if any(row.figure in args.figures for row in probe.rows)]
        run_all(available(args.servers, results), probes, scratch, tls_files, results)
    rows = sorted((row for probe in probes for row in probe.rows if row.figure in args.figures),
                  key=lambda row: FIGURES.index(row.figure))
    print()
    print(table(rows, results, args.servers))
    if args.json:
        args.json.write_text(json.dumps({
            "environment": env, "settings": asdict(settings), "notes": results.notes,
            "samples": results.samples,
            "marks": [[key, name, "".join(sorted(marks))]
                      for (key, name), marks in sorted(results.marks.items()) if marks],
            "runs": results.runs}, indent=1))


if __name__ == "__main__":
    main()
