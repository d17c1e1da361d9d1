"""
The recorder: a listener in front of a real SMTP server that passes every
byte unchanged (L{emulator.learn.masking.Recorder} in the emulator's proxy
mode, L{emulator.host.middlebox}) and writes one transcript per connection
with both legs, times and the STARTTLS facts, credentials masked.

    emulator record --upstream tcp:mail.example.net:25 --listen tcp:2526 --transcripts recorded/
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from emulator.capture.transcript import Transcript, TranscriptStore
from emulator.learn.files import write_transcript
from emulator.learn.masking import Recorder, mask_credentials


class MaskingStore(TranscriptStore):
    """A transcript store that masks credentials before anything is kept or
    written, writes each session to a file of its own (C{<session>.jsonl},
    what C{learn} and C{diff} pair by name; a server's store appends a run's
    sessions to one file instead), and calls C{finished(count)} after each."""

    def __init__(self, folder: Path, finished: Callable[[int], None] = lambda count: None):
        super().__init__()
        self.folder_out = Path(folder)
        self.count = 0
        self._finished = finished

    def finish(self, transcript: Transcript) -> None:
        masked = mask_credentials(transcript)
        write_transcript(self.folder_out, f"{masked.session_id}.jsonl", masked)
        super().finish(masked)
        self.count += 1
        self._finished(self.count)


def listen(upstream: str, listen_on: str, folder: Path, *, reactor, sessions: int | None = None,
           on_done: Callable[[], None] = lambda: None):
    """Start the recorder; the Deferred fires with the listening port.
    After C{sessions} finished sessions, C{on_done()} is called."""
    from twisted.internet import endpoints

    from emulator.host.middlebox import EndpointUpstream, MiddleboxFactory
    from emulator.host.endpoints import server_endpoint as loopback_default

    store = MaskingStore(folder, lambda count: sessions and count >= sessions and on_done())
    factory = MiddleboxFactory(Recorder(), EndpointUpstream(upstream, reactor), transcripts=store,
                               listener=listen_on, profile="", reactor=reactor)
    return endpoints.serverFromString(reactor, loopback_default(listen_on)).listen(factory)


def run(upstream: str, listen_on: str, folder: Path, *, sessions: int | None = None,
        progress: Callable[[str], None] = print) -> int:
    """Record until interrupted (or C{sessions} sessions); exit status."""
    from twisted.internet import endpoints, reactor

    endpoints.clientFromString(reactor, upstream)  # a bad endpoint fails here, before listening
    (folder / ".tmp").mkdir(parents=True, exist_ok=True)  # an unwritable folder too (OSError)
    status = []

    def stop() -> None:
        if reactor.running:
            reactor.callLater(0, reactor.stop)

    def listening(port) -> None:
        address = port.getHost()
        progress(f"recording on {address.host}:{address.port}, passing to {upstream}; "
                 f"transcripts in {folder}" + (f"; stopping after {sessions} session(s)" if sessions else ""))

    def failed(failure) -> None:
        progress(f"cannot listen on {listen_on}: {failure.getErrorMessage()}")
        status.append(1)
        stop()

    def start() -> None:
        listen(upstream, listen_on, folder, reactor=reactor, sessions=sessions, on_done=stop) \
            .addCallbacks(listening, failed)

    reactor.callWhenRunning(start)
    reactor.run()
    return status[0] if status else 0
