"""Shared end-to-end fixtures."""

import pytest

from emulator.testing.harness import start_server


@pytest.fixture
def serve(tmp_path):
    """C{serve(profile, **start_server_options)} starts a server for the test, its certificate
    state and transcripts under C{tmp_path}; every server started is stopped afterwards."""
    running = []

    def start(profile, **kwargs):
        server = start_server(profile, **{"state_dir": tmp_path / "state", "transcripts": tmp_path / "transcripts",
                                          **kwargs})
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()
