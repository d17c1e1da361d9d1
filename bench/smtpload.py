"""The load generator: plain request/response SMTP over asyncio streams.

Nothing is pipelined: every command waits for its complete reply.  Runs on
uvloop when it is installed: with the stdlib event loop the client needs about
as much CPU as a fast Python server, so it would cap the throughput figures.
"""

import asyncio
import time
from dataclasses import dataclass

try:
    import uvloop
except ImportError:
    uvloop = None

HOST = "127.0.0.1"
EHLO = b"EHLO bench.example.com\r\n"
MAIL = b"MAIL FROM:<bench@example.com>\r\n"
RCPT = b"RCPT TO:<sink@example.com>\r\n"
QUIT = b"QUIT\r\n"
LATENCY_CYCLE = (("NOOP", b"NOOP\r\n"), ("MAIL", MAIL), ("RCPT", RCPT), ("RSET", b"RSET\r\n"))
# Cycles run before latencies are recorded: the first commands pay for lazy
# imports and cache warm-up in the server, which is not steady-state latency.
LATENCY_WARMUP = 20
# Connection attempts in flight at once, counted until the banner is read
# (i.e. until the server has accept()ed).  Kept below Twisted's default listen
# backlog of 50: an overflowing accept queue makes Linux drop the handshake and
# the client retry only after a second or more, which would measure the
# backlog, not the server.
CONNECT_GATE = 32
# Extra seconds a bounded run may overrun its own time cap before it is
# cancelled (the cap is checked between messages, not inside them).
RUN_GRACE = 15.0


def event_loop_name():
    return f"uvloop {uvloop.__version__}" if uvloop else "asyncio (stdlib; pip install uvloop for headroom)"


def run_async(coroutine):
    return uvloop.run(coroutine) if uvloop else asyncio.run(coroutine)


class SmtpError(Exception):
    """The server answered with a code we did not expect."""


class Session:
    """One SMTP connection; each command waits for its complete reply."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port, gate):
        async with gate:
            reader, writer = await asyncio.open_connection(HOST, port)
            session = cls(reader, writer)
            try:
                await session.expect(b"2")
            except BaseException:
                session.close()
                raise
        return session

    async def reply(self):
        lines = []
        while True:
            line = await self.reader.readline()
            if not line.endswith(b"\n"):
                raise ConnectionResetError("connection closed before a complete reply")
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    async def expect(self, digit):
        reply = await self.reply()
        if reply[:1] != digit:
            raise SmtpError(reply.decode(errors="replace").strip()[:120])
        return reply

    async def command(self, line, digit=b"2"):
        self.writer.write(line)
        return await self.expect(digit)

    async def send_message(self, message):
        await self.command(MAIL)
        await self.command(RCPT)
        await self.command(b"DATA\r\n", b"3")
        self.writer.write(message)
        await self.writer.drain()
        await self.expect(b"2")

    async def start_tls(self, context):
        await self.command(b"STARTTLS\r\n")
        await self.writer.start_tls(context, server_hostname="localhost")

    def close(self):
        # abort(), not close(): after QUIT there is nothing left to send, and a
        # TLS close() would wait for the peer's close_notify in the background.
        self.writer.transport.abort()


def make_message(body_bytes):
    """A DATA payload of about body_bytes, dot-terminated, with no line needing dot-stuffing."""
    header = b"From: <bench@example.com>\r\nTo: <sink@example.com>\r\nSubject: bench\r\n\r\n"
    line = b"x" * 78 + b"\r\n"
    return header + line * max(1, body_bytes // len(line)) + b".\r\n"


class Budget:
    """Hands out work items until a count or a deadline runs out."""

    def __init__(self, count, seconds):
        self.left = count
        self.deadline = time.perf_counter() + seconds

    def take(self):
        if self.left <= 0 or time.perf_counter() >= self.deadline:
            return False
        self.left -= 1
        return True


@dataclass
class Tally:
    done: int = 0  # messages delivered, or TLS handshakes completed
    sessions: int = 0
    errors: int = 0
    first_error: str = ""

    def failed(self, exc):
        self.errors += 1
        self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"


async def run_workers(count, worker, time_cap):
    """Runs count copies of worker(tally), each stopping at its first error."""
    tally = Tally()

    async def guarded():
        try:
            await worker(tally)
        except (OSError, SmtpError) as exc:
            tally.failed(exc)

    try:
        async with asyncio.timeout(time_cap + RUN_GRACE):
            await asyncio.gather(*(guarded() for _ in range(count)))
    except TimeoutError as exc:
        tally.failed(exc)
    return tally


async def send_messages(port, sessions, per_session, message, budget, time_cap):
    """sessions concurrent clients, each sending per_session messages per connection."""
    gate = asyncio.Semaphore(CONNECT_GATE)

    async def worker(tally):
        while budget.take():
            session = await Session.open(port, gate)
            tally.sessions += 1
            try:
                await session.command(EHLO)
                for sent in range(1, per_session + 1):
                    await session.send_message(message)
                    tally.done += 1
                    if sent == per_session or not budget.take():
                        break
                await session.command(QUIT)
            finally:
                session.close()

    return await run_workers(sessions, worker, time_cap)


async def command_latencies(port, cycles, seconds):
    """Microseconds from sending each command to its full reply, by command, on one session."""
    session = await Session.open(port, asyncio.Semaphore(1))
    latencies = {name: [] for name, _ in LATENCY_CYCLE}
    try:
        await session.command(EHLO)
        deadline = time.perf_counter() + seconds
        for cycle in range(LATENCY_WARMUP + cycles):
            for name, line in LATENCY_CYCLE:
                sent = time.perf_counter_ns()
                await session.command(line)
                if cycle >= LATENCY_WARMUP:
                    latencies[name].append((time.perf_counter_ns() - sent) / 1e3)
            if time.perf_counter() >= deadline:
                break
        await session.command(QUIT)
    finally:
        session.close()
    return latencies


async def connect_latencies(port, count, seconds):
    """Microseconds from starting to connect to having read the 220 banner,
    one connection at a time; each session then ends with QUIT and waits
    for the server to close, so the next connect finds it idle."""
    latencies = []
    deadline = time.perf_counter() + seconds
    for attempt in range(LATENCY_WARMUP + count):
        started = time.perf_counter_ns()
        reader, writer = await asyncio.open_connection(HOST, port)
        session = Session(reader, writer)
        try:
            await session.expect(b"2")
            if attempt >= LATENCY_WARMUP:
                latencies.append((time.perf_counter_ns() - started) / 1e3)
            await session.command(QUIT)
            await reader.read()  # the server's close
        finally:
            session.close()
        if time.perf_counter() >= deadline:
            break
    return latencies


async def burst(port, count, time_cap):
    """count clients connect at the same moment, with no gate (unlike every
    other load here); returns the seconds each took to read its banner, or
    None where none came within time_cap.  The connections stay open until
    every banner is in or the cap has passed, as clients of a burst would."""
    started = time.perf_counter()
    writers = []

    async def one():
        reader, writer = await asyncio.open_connection(HOST, port)
        writers.append(writer)
        line = await reader.readline()
        return time.perf_counter() - started if line.startswith(b"220") else None

    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    done, pending = await asyncio.wait(tasks, timeout=time_cap)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for writer in writers:
        writer.transport.abort()
    return [task.result() if task in done and not task.exception() else None for task in tasks]


async def ehlo_reply(port):
    """One complete short session; returns the EHLO reply."""
    session = await Session.open(port, asyncio.Semaphore(1))
    try:
        reply = await session.command(EHLO)
        await session.command(QUIT)
    finally:
        session.close()
    return reply


async def open_idle(port, count):
    """Opens count connections and reads their banners; returns the ones that opened."""
    gate = asyncio.Semaphore(CONNECT_GATE)
    opened = await asyncio.gather(*(Session.open(port, gate) for _ in range(count)),
                                  return_exceptions=True)
    return [session for session in opened if isinstance(session, Session)]


async def starttls_handshakes(port, context, sessions, budget, time_cap):
    """sessions concurrent clients, each looping EHLO, STARTTLS, handshake, QUIT."""
    gate = asyncio.Semaphore(CONNECT_GATE)

    async def worker(tally):
        while budget.take():
            session = await Session.open(port, gate)
            tally.sessions += 1
            try:
                await session.command(EHLO)
                await session.start_tls(context)
                await session.command(QUIT)
                tally.done += 1
            finally:
                session.close()

    return await run_workers(sessions, worker, time_cap)
