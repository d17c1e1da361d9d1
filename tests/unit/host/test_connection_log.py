"""The per-connection log line (emulator.host.edge.EventLog): formatted by the emulator in exactly
the text twistd's observer gives it, written straight to twistd's stream only where twistd writes
there too, switched off by --log-connections no; and --memory-budget reaching both stores."""

import io
import json

import pytest
from twisted.logger import LogLevel, formatTime, textFileLogObserver, timeFormatRFC3339
from twisted.python import usage
from twisted.scripts.twistd import ServerOptions

from emulator.capture.budget import DEFAULT_BUDGET
from emulator import tap
from emulator.host import edge
from emulator.host.edge import EventLog
from emulator.host.emulation import build

FIELDS = dict(session="20261202T075900-000001", peer="127.0.0.1:46710", profile="ims55sp4", messages=2,
              seconds=0.0125, end="ConnectionDone: Connection was closed cleanly.")


def twistd_text(event: str, now: float, **fields) -> str:
    """What twistd's text observer writes for the line logged through twisted.logger at C{now}."""
    text = " ".join(f"{k}={v:.3f}" if type(v) is float else f"{k}={v}" for k, v in fields.items())
    written = io.StringIO()
    textFileLogObserver(written)({"log_format": "{event} {text}", "event": event, "text": text,
                                  "log_namespace": "emulator", "log_level": LogLevel.info, "log_time": now})
    return written.getvalue()


@pytest.mark.parametrize("now", [1796198340.25, 1796198340.99, 1796198341.0])
def test_the_direct_line_is_twistds_text_to_the_byte(monkeypatch, now):
    """A direct text line equals what twistd's observer writes for the same event at the same time
    (its time stamp, [emulator#info], the fields, seconds with three decimals)."""
    monkeypatch.setattr(edge.time, "time", lambda: now)
    stream = io.StringIO()
    EventLog("text", stream, direct=True).emit("connection", **FIELDS)
    assert stream.getvalue() == twistd_text("connection", now, **FIELDS)
    assert "connection session=20261202T075900-000001 peer=127.0.0.1:46710 profile=ims55sp4 messages=2 " \
           "seconds=0.013 end=ConnectionDone: Connection was closed cleanly.\n" in stream.getvalue()


def test_a_direct_line_continues_a_newline_as_twistd_does(monkeypatch):
    """A field holding a newline (an exception's text) is continued with a tab, as twistd's observer
    does, so every log line still begins with a time stamp."""
    monkeypatch.setattr(edge.time, "time", lambda: 1796198340.0)
    stream = io.StringIO()
    EventLog("text", stream, direct=True).emit("connection", end="Error: two\nlines")
    assert stream.getvalue() == twistd_text("connection", 1796198340.0, end="Error: two\nlines")
    assert stream.getvalue().endswith("end=Error: two\n\tlines\n")


def test_the_time_stamp_follows_the_clock_across_seconds(monkeypatch):
    """The time stamp is made once per second but changes with the second."""
    clock = iter([1796198340.1, 1796198340.9, 1796198341.2])
    monkeypatch.setattr(edge.time, "time", lambda: next(clock))
    stream = io.StringIO()
    log = EventLog("text", stream, direct=True)
    for _ in range(3):
        log.emit("connection", messages=0)
    stamps = [line.split(" ", 1)[0] for line in stream.getvalue().splitlines()]
    assert stamps[0] == stamps[1] != stamps[2]
    assert stamps[2] == formatTime(1796198341.2, timeFormatRFC3339)


@pytest.mark.parametrize("format,direct", [("json", False), ("text", True)])
def test_log_connections_no_writes_nothing(format, direct):
    """Switched off (--log-connections no), neither form writes a line."""
    stream = io.StringIO()
    EventLog(format, stream, direct=direct, enabled=False).emit("connection", **FIELDS)
    assert stream.getvalue() == ""


def test_the_json_form_is_one_object_per_line():
    """The JSON form is unchanged: one object per line, numbers as numbers."""
    stream = io.StringIO()
    EventLog("json", stream).emit("connection", **FIELDS)
    record = json.loads(stream.getvalue())
    assert stream.getvalue().count("\n") == 1
    assert record["event"] == "connection" and record["messages"] == 2 and record["seconds"] == 0.0125


def twistd_options(*argv) -> tap.Options:
    config = ServerOptions()
    config.parseOptions([*argv])
    return config.subOptions


def test_the_line_is_written_directly_only_where_twistd_writes_to_stdout():
    """twistd -n without --logfile writes its log to standard output: the connection line goes there
    directly; with --logfile, json, or outside twistd, it goes through twisted.logger (or is JSON)."""
    assert twistd_options("-n", "--pidfile=", "emulator").recipe().log_direct
    assert twistd_options("-n", "--pidfile=", "--logfile=-", "emulator").recipe().log_direct
    assert not twistd_options("-n", "--pidfile=", "--logfile=/tmp/x.log", "emulator").recipe().log_direct
    assert not twistd_options("-n", "--pidfile=", "emulator", "--log-format", "json").recipe().log_direct
    options = tap.Options()
    options.parseOptions([])
    assert not options.recipe().log_direct


def test_log_connections_option(tmp_path):
    """--log-connections no reaches the built emulation's log; yes is the default; anything else is
    a one-line usage error."""
    assert twistd_options("-n", "emulator").recipe().log_connections
    options = twistd_options("-n", "emulator", "--log-connections", "no", "--state-dir", str(tmp_path))
    assert not build(options.recipe()).events.enabled
    with pytest.raises(usage.UsageError, match="--log-connections must be yes or no"):
        tap.Options().parseOptions(["--log-connections", "off"])


def test_memory_budget_option_reaches_both_stores(tmp_path):
    """--memory-budget BYTES becomes the byte budget of the message store and the transcript store;
    without it both keep the default; a negative or non-numeric value is a usage error."""
    options = tap.Options()
    options.parseOptions(["--memory-budget", "65536", "--state-dir", str(tmp_path)])
    built = build(options.recipe())
    assert built.store.recent.budget == built.transcripts.recent.budget == 65536
    options = tap.Options()
    options.parseOptions(["--state-dir", str(tmp_path)])
    built = build(options.recipe())
    assert built.store.recent.budget == DEFAULT_BUDGET
    for bad in ("-1", "4M"):
        with pytest.raises(usage.UsageError, match=f"--memory-budget {bad}: must be a whole number of bytes"):
            tap.Options().parseOptions(["--memory-budget", bad])
