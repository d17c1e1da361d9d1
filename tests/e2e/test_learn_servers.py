"""Learned personas end to end on loopback: real servers (aiosmtpd, Twisted's
ESMTP, a throwaway Postfix) probed, learned, served and probed again with an
empty diff; ims55sp2 learned through the recorder and compared on the KB
scenarios; credentials masked on the recorder's disk."""

from __future__ import annotations

import base64
import smtplib
import time
from pathlib import Path

import pytest

from emulator import cli
from emulator.learn import probe, record, script
from emulator.testing.harness import Harness, ReactorThread

from real_servers import (RECIPIENT, REFUSED, aiosmtpd_server, postfix_installed, postfix_server,
                          twisted_server)

VALUES = script.Values(RECIPIENT, refused=REFUSED)


def learn_and_replay(tmp_path: Path, port: int, serve, name: str, base: str = "rfc5321") -> Path:
    """Probe the real server, learn NAME.yaml, serve it, probe it; assert the
    diff is empty (through `emulator diff`) and return the profile."""
    real = probe.run(f"tcp:127.0.0.1:{port}", VALUES, tmp_path / "real", timeout=10)
    profile = tmp_path / f"{name}.yaml"
    assert cli.main(["learn", str(tmp_path / "real"), "-o", str(profile), "--base", base]) == 0
    assert cli.main(["check", str(profile)]) == 0
    server = serve(profile)
    replay = probe.run(f"tcp:127.0.0.1:{server.port}", VALUES, tmp_path / "replay", timeout=10)
    assert [p.name for p in real] == [p.name for p in replay]
    assert cli.main(["diff", str(tmp_path / "real"), str(tmp_path / "replay")]) == 0
    return profile


def test_aiosmtpd_learned_and_replayed_byte_for_byte(tmp_path, serve):
    """aiosmtpd with STARTTLS, SIZE, AUTH and a refused domain: all nine probe
    sessions replay with the same server bytes; the TLS facts are learned."""
    with aiosmtpd_server() as port:
        profile = learn_and_replay(tmp_path, port, serve, "aiosmtpd")
    text = profile.read_text()
    assert 'greeting: "220 {hostname} Python SMTP {version}"' in text
    assert 'ehlo_keywords: ["SIZE 10240000", "8BITMIME", "SMTPUTF8", "STARTTLS", "AUTH LOGIN PLAIN", "HELP"]' in text
    assert 'min_version: "TLSv1.2"' in text and 'max_version: "TLSv1.3"' in text
    assert "message_size: 10240000" in text and 'data_ok: "250 2.0.0 Ok: queued as {queue_id}"' in text
    assert len(list((tmp_path / "real").glob("*.jsonl"))) == 9


def test_twisted_esmtp_learned_and_replayed_byte_for_byte(tmp_path, serve):
    """twisted.mail's ESMTP: NOOP, HELP and VRFY answered as unknown are left out;
    MAIL before HELO accepted (require_helo: false); the replay is the same."""
    with twisted_server() as port:
        profile = learn_and_replay(tmp_path, port, serve, "twisted")
    text = profile.read_text()
    assert "require_helo: false" in text and '"NOOP"' not in text.split("commands:")[1].split("\n")[0]
    assert 'helo: "250 {hostname} Hello {peer_ip}, nice to meet you"' in text


@pytest.mark.skipif(not postfix_installed(), reason="Postfix is not installed (.ci/run installs it)")
def test_postfix_learned_and_replayed_byte_for_byte(tmp_path, serve):
    """Postfix's smtpd in a throwaway instance: learned with its queue ids as
    {queue_id} and the relay refusal as a reply fault; the replay is the same."""
    started = time.monotonic()
    with postfix_server() as port:
        profile = learn_and_replay(tmp_path, port, serve, "postfix")
    text = profile.read_text()
    assert 'greeting: "220 {hostname} ESMTP Postfix"' in text
    assert "Relay access denied" in text and "{queue_id}" in text
    assert time.monotonic() - started < 600  # bounded: the probe's own limits hold


def _recorder(tmp_path: Path, upstream_port: int, folder: str = "recorded") -> int:
    from twisted.internet import reactor

    port = ReactorThread.call(lambda: record.listen(f"tcp:127.0.0.1:{upstream_port}", "tcp:0:interface=127.0.0.1",
                                                    tmp_path / folder, reactor=reactor))
    return port.getHost().port


def _wait_for(folder: Path, count: int) -> list[Path]:
    for _ in range(200):
        found = sorted(folder.glob("*.jsonl"))
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{folder}: {len(found)} transcripts, wanted {count}")


KB_SCENARIOS = {
    "Q237327 STARTTLS without a certificate": [b"EHLO client.example\r\n", b"STARTTLS\r\n", b"QUIT\r\n"],
    "Q262945 protocol log": [b"EHLO client.example.org\r\n", b"MAIL FROM:<JohnD@COMPANY1.com> SIZE=1460\r\n",
                             b"RCPT TO:<janed@company2.com>\r\n", b"RCPT TO:<bob@company2.com>\r\n", b"DATA\r\n",
                             b"Subject: hello\r\n\r\nHi Jane.\r\n..\r\n.\r\n", b"RSET\r\n", b"QUIT\r\n"],
    "Q295725 behind a PIX": [b"XXXX client.example\r\n", b"HELO client.example\r\n", b"MAIL FROM:<a@b.example>\r\n",
                             b"QUIT\r\n"],
    "Q175842 EXPN": [b"HELO client.example\r\n", b"EXPN staff\r\n", b"QUIT\r\n"],
    "Q173656 AUTH LOGIN": [b"EHLO client.example\r\n", b"AUTH LOGIN\r\n", base64.b64encode(b"tester") + b"\r\n",
                           base64.b64encode(b"secret") + b"\r\n", b"QUIT\r\n"],
}


def test_ims55sp2_learned_through_the_recorder_equals_the_original_on_the_kb_scenarios(tmp_path, serve):
    """ims55sp2 served for real, the probe through the recorder, `emulator learn`
    on the recorder's transcripts (base exchange55): the KB scenarios give the
    learned persona the original's transcripts, and the probe's replay diff is empty."""
    original = serve("ims55sp2")
    port = _recorder(tmp_path, original.port)
    real = probe.run(f"tcp:127.0.0.1:{port}", VALUES, tmp_path / "real", timeout=10)
    recorded = _wait_for(tmp_path / "recorded", len(real))
    profile = tmp_path / "ims55sp2-learned.yaml"
    assert cli.main(["learn", *map(str, recorded), "-o", str(profile), "--base", "exchange55"]) == 0
    for name, lines in KB_SCENARIOS.items():
        sessions = []
        for persona in ("ims55sp2", profile):
            h = Harness(persona)
            h.connect()
            for line in lines:
                h.send(line)
            sessions.append(h.human())
        assert sessions[0] == sessions[1], name
    learned = serve(profile)
    replay = probe.run(f"tcp:127.0.0.1:{learned.port}", VALUES, tmp_path / "replay", timeout=10)
    assert len(replay) == len(real) == 5
    assert cli.main(["diff", str(tmp_path / "real"), str(tmp_path / "replay")]) == 0


def test_recorder_changes_nothing_on_the_wire_and_masks_credentials_on_disk(tmp_path, serve):
    """smtplib logs in through the recorder (the server sees the real
    credentials: 235); the transcript written has both legs, no credential,
    and a credentials_masked note per leg naming LOGIN."""
    original = serve("ims55sp2")
    port = _recorder(tmp_path, original.port)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.example")
        client.login("tester", "secret")  # 235 only if the bytes reached the server unchanged
        client.sendmail("a@example.org", ["b@example.test"], b"Subject: x\r\n\r\nhi\r\n")
    (path,) = _wait_for(tmp_path / "recorded", 1)
    text = path.read_text()
    for secret in ("c2VjcmV0", "dGVzdGVy"):
        assert secret not in text
    assert text.count('"event": "credentials_masked"') == 2 and '"mechanism": "LOGIN"' in text
    assert '"leg": "server"' in text and original.messages
    server_side = original.transcripts[0].client_bytes()
    assert base64.b64encode(b"secret") in server_side  # what the server got: the real bytes
