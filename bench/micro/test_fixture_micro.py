"""
Micro-benchmarks of the pytest fixtures' costs (pytest-benchmark), with the
reactor already running in its thread as it is during a test session:
starting a server for a profile, and the reset between two tests.  Figures
only; nothing here asserts a time.
"""

import smtplib

import pytest

from emulator.testing.pool import ServerPool
from emulator.testing.harness import ReactorThread


@pytest.fixture
def pools(tmp_path):
    """Fresh pools (each starts its servers anew), all closed afterwards."""
    made = []

    def make():
        made.append(ServerPool(tmp_path / "state"))
        return made[-1]

    yield make
    for pool in made:
        pool.close()


def test_fixture_starts_a_server(benchmark, pools):
    """legacy_smtp.start("ims55sp4") on a new pool: profile load, emulation,
    listener bound on 127.0.0.1 (the reactor thread already runs)."""
    ReactorThread.call(lambda: None)  # the reactor thread is up before timing
    benchmark.pedantic(lambda pool: pool.start("ims55sp4"), setup=lambda: ((pools(),), {}),
                       rounds=50, warmup_rounds=2)


def test_fixture_resets_between_tests(benchmark, pools):
    """A test's first use of a server it shares with the test before, which
    left a message, a transcript and an open connection: the connection is
    closed, and messages, transcripts and cross-connection state forgotten."""
    pool = pools()
    handle = pool.start("ims55sp4")
    clients = []

    def previous_test():
        pool.begin_test()
        client = smtplib.SMTP(handle.host, handle.port)
        client.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhello\r\n")
        clients.append(client)
        return (), {}

    benchmark.pedantic(lambda: pool.acquire("ims55sp4"), setup=previous_test, rounds=50, warmup_rounds=2)
    for client in clients:
        client.close()
