"""The HTTP control API over real HTTP on 127.0.0.1, with urllib as the client."""

import json
import smtplib
import socket
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulator.control import api

from emulator.profiles import loader as profiles
from emulator.host.emulation import Emulation
from emulator.testing.harness import ReactorThread

pytestmark = pytest.mark.e2e
COMMITTED = Path(__file__).resolve().parents[2] / "emulator" / "control" / "openapi.json"


@dataclass
class Served:
    control: object
    url: str
    smtp: int  # port of the plaintext listener
    smtps: int  # port of the implicit-TLS listener (netscape-ms)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("state")


@pytest.fixture
def served(state_dir, tmp_path, request):
    """One emulation (ims55sp4) on a plaintext listener, a netscape-ms SMTPS
    listener, and the API; parametrized indirectly with "on disk" (or
    C{("on disk", budget)}), its messages and transcripts go to folders."""
    from emulator.capture.maildir import MessageStore
    from emulator.capture.transcript import TranscriptStore
    from emulator.control.listeners import Control

    stores = {}
    if getattr(request, "param", "memory") != "memory":
        budget = {"budget": request.param[1]} if isinstance(request.param, tuple) else {}
        stores = {"store": MessageStore(tmp_path / "maildir", **budget),
                  "transcripts": TranscriptStore(tmp_path / "transcripts", **budget)}

    def start():
        from twisted.internet import reactor

        control = Control(Emulation(profiles.load("ims55sp4"), state_dir=state_dir, **stores), reactor=reactor)
        listeners = [control.listener("tcp:0:interface=127.0.0.1"),
                     control.listener("tcp:0:interface=127.0.0.1", implicit_tls=True, profile="netscape-ms")]
        ports = []
        for listener in listeners:
            ports.append(reactor.listenTCP(0, listener, interface="127.0.0.1"))
            listener.bound(ports[-1])
        ports.append(reactor.listenTCP(0, api.site(control), interface="127.0.0.1"))
        return control, ports

    control, ports = ReactorThread.call(start)
    yield Served(control, f"http://127.0.0.1:{ports[2].getHost().port}", ports[0].getHost().port,
                 ports[1].getHost().port)

    def stop():
        from twisted.internet import defer

        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])

    ReactorThread.call(stop)


def call(url, method="GET", body=None, headers=None):
    """(status, headers, body bytes) of one request."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get_json(url, method="GET", body=None, headers=None):
    status, headers, data = call(url, method, body, headers)
    assert headers["content-type"] == "application/json"
    return status, json.loads(data)


def send(port, body=b"Subject: api\r\n\r\nhello\r\n"):
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=10) as client:
        client.sendmail("a@example.org", ["b@example.test"], body)


def test_health(served):
    """GET /health says ok, with the version and the number of listeners."""
    import emulator

    status, body = get_json(served.url + "/health")
    assert status == 200
    assert body["status"] == "ok" and body["version"] == emulator.__version__
    assert body["listeners"] == 2 and body["errors"] == 0


def test_served_openapi_document_is_the_committed_one(served):
    """GET /openapi.json serves emulator/control/openapi.json byte for byte, an OpenAPI 3 document."""
    status, headers, data = call(served.url + "/openapi.json")
    assert status == 200 and headers["content-type"] == "application/json"
    assert data == COMMITTED.read_bytes()
    assert json.loads(data)["openapi"].startswith("3.")


def test_every_route_is_documented_and_every_documented_route_exists():
    """The routing table and the OpenAPI paths name the same (method, path) pairs."""
    document = json.loads(COMMITTED.read_text())
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    routed = {(method, path) for method, path, _ in api.ROUTES}
    assert routed == documented
    for path, item in document["paths"].items():
        for operation in item.values():
            assert "200" in operation["responses"], (path, operation)
            if "{" in path:
                assert "404" in operation["responses"] or path == "/listeners/{id}/profile", path


def test_profiles_lists_every_runnable_profile(served):
    """GET /profiles gives name, product, version and description of each profile."""
    status, body = get_json(served.url + "/profiles")
    assert status == 200
    assert [p["name"] for p in body] == profiles.names()
    (sp4,) = [p for p in body if p["name"] == "ims55sp4"]
    assert sp4["version"] == "5.5.2653.13" and sp4["product"].startswith("Microsoft Exchange")


def test_listeners_are_named_by_their_port(served):
    """GET /listeners lists each listener with its port as id; GET /listeners/{id} fetches one."""
    status, body = get_json(served.url + "/listeners")
    assert status == 200
    assert [(l["id"], l["profile"], l["implicit_tls"]) for l in body] == [
        (str(served.smtp), "ims55sp4", False), (str(served.smtps), "netscape-ms", True)]
    status, one = get_json(f"{served.url}/listeners/{served.smtp}")
    assert status == 200 and one["port"] == served.smtp and one["host"] == "127.0.0.1"
    status, error = get_json(served.url + "/listeners/1")
    assert status == 404 and error == {"error": "not_found", "message": "no listener '1'"}


def test_listener_ids_fall_back_to_host_and_port():
    """Two listeners on one port (two interfaces) are named host:port; a unique port is named by itself."""
    from emulator.control.listeners import Control

    class Stub:
        def __init__(self, host, port):
            self.address = (host, port)

    control = Control.__new__(Control)
    control.listeners = [Stub("127.0.0.1", 25), Stub("::1", 25), Stub("127.0.0.1", 2525), Stub(None, 0)]
    control.listeners[-1].address = None
    assert list(control.named()) == ["127.0.0.1:25", "::1:25", "2525"]


@pytest.mark.parametrize("served", ["memory", "on disk"], indirect=True)
def test_sessions_with_their_transcripts(served):
    """A session is listed, fetched with its records (bytes as Latin-1), and
    printed in the arrow form; the same when the records are read back from
    the transcripts folder."""
    body = b"Subject: api\r\n\r\nhello\r\n"
    send(served.smtp, body)
    status, sessions = get_json(served.url + "/sessions")
    assert status == 200
    (summary,) = sessions
    assert summary["profile"] == "ims55sp4" and summary["messages"] == 1 and summary["peer"].startswith("127.0.0.1:")
    status, session = get_json(f"{served.url}/sessions/{summary['session']}")
    assert status == 200 and session["session"] == summary["session"]
    client_bytes = "".join(r["data"] for r in session["transcript"] if r.get("dir") == "c").encode("latin-1")
    assert client_bytes.endswith(body + b".\r\nQUIT\r\n")
    assert any(r.get("event") == "message_accepted" for r in session["transcript"])
    status, headers, text = call(f"{served.url}/sessions/{summary['session']}/transcript")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    lines = text.decode().splitlines()
    assert lines[0] == f"=== session {summary['session']} profile ims55sp4 peer {summary['peer']}"
    assert "-> ehlo client.example" in lines and "<- 250 OK" in lines  # smtplib spells verbs in lower case


def test_unknown_session_is_404(served):
    """An unknown session id is a JSON 404, for the record and for the transcript."""
    for suffix in ("", "/transcript"):
        status, error = get_json(f"{served.url}/sessions/nosuch{suffix}")
        assert status == 404 and error == {"error": "not_found", "message": "no session 'nosuch'"}


@pytest.mark.parametrize("served", ["memory", "on disk"], indirect=True)
def test_messages_envelope_and_raw(served):
    """GET /messages lists envelopes; a message is fetched as envelope and as
    raw RFC 5322 bytes; the same when both are read back from the Maildir."""
    body = b"Subject: raw\r\n\r\n\xe9 8-bit line\r\n"
    send(served.smtp, body)
    status, messages = get_json(served.url + "/messages")
    assert status == 200
    (envelope,) = messages
    assert envelope["sender"] == "a@example.org" and envelope["recipients"] == ["b@example.test"]
    assert envelope["helo"] == "client.example" and envelope["size"] == len(body)
    name = urllib.parse.quote(envelope["name"], safe="")
    status, one = get_json(f"{served.url}/messages/{name}")
    assert status == 200 and one == envelope
    status, headers, raw = call(f"{served.url}/messages/{name}/raw")
    assert status == 200 and headers["content-type"] == "message/rfc822" and raw == body
    status, error = get_json(f"{served.url}/messages/nosuch/raw")
    assert status == 404 and error["error"] == "not_found"


def finished_sessions(served, count):
    """The session summaries once count sessions have ended (bounded wait)."""
    for _ in range(200):
        sessions = get_json(served.url + "/sessions")[1]
        if len(sessions) == count and not any(s["open"] for s in sessions):
            return sessions
        ReactorThread.call(lambda: None)  # a reactor turn
    raise AssertionError(f"sessions never settled: {sessions}")


@pytest.mark.parametrize("served", ["on disk"], indirect=True)
def test_what_is_gone_from_disk_is_410(served, tmp_path):
    """A listed message whose file was deleted, or a session whose run file
    was emptied, answers 410 gone naming the file, never a 500."""
    send(served.smtp)
    (summary,) = finished_sessions(served, 1)
    (envelope,) = get_json(served.url + "/messages")[1]
    (tmp_path / "maildir" / "new" / envelope["name"]).unlink()
    (run,) = (tmp_path / "transcripts").glob("*.jsonl")
    run.write_bytes(b"")
    status, error = get_json(f"{served.url}/messages/{urllib.parse.quote(envelope['name'], safe='')}/raw")
    assert status == 410 and error["error"] == "gone" and envelope["name"] in error["message"]
    for suffix in ("", "/transcript"):
        status, error = get_json(f"{served.url}/sessions/{summary['session']}{suffix}")
        assert status == 410 and f"no longer holds session {summary['session']}" in error["message"]


@pytest.mark.parametrize("served", [("on disk", 1)], indirect=True)
def test_health_counts_what_the_memory_budget_forgot(served):
    """With a budget of one byte only the newest session and message stay
    listed; /health says how many of each were forgotten."""
    assert get_json(served.url + "/health")[1]["forgotten"] == {"sessions": 0, "messages": 0}
    send(served.smtp)
    send(served.smtp)
    finished_sessions(served, 1)
    assert len(get_json(served.url + "/messages")[1]) == 1
    assert get_json(served.url + "/health")[1]["forgotten"] == {"sessions": 1, "messages": 1}


def test_reset_forgets_everything_and_closes_connections(served):
    """POST /reset closes open connections and forgets messages, sessions, per-peer state and errors."""
    send(served.smtp)
    served.control.base.shared["tls_session_not_secure"] = {"127.0.0.1": 1}
    with socket.create_connection(("127.0.0.1", served.smtp), timeout=10) as open_one:
        open_one.recv(200)
        status, body = get_json(served.url + "/reset", "POST")
        assert status == 200 and body == {"status": "reset"}
        try:
            assert open_one.recv(200) == b""
        except ConnectionResetError:
            pass
    assert get_json(served.url + "/messages")[1] == []
    assert get_json(served.url + "/sessions")[1] == []
    assert served.control.base.shared == {}


def test_switching_a_listener_profile_affects_new_connections_only(served):
    """PUT /listeners/{id}/profile: new connections get ims55sp2 (STARTTLS listed, Q237327); an open one keeps ims55sp4."""
    with smtplib.SMTP("127.0.0.1", served.smtp, timeout=10) as before:
        status, listener = get_json(f"{served.url}/listeners/{served.smtp}/profile", "PUT", {"profile": "ims55sp2"})
        assert status == 200 and listener["profile"] == "ims55sp2"
        with smtplib.SMTP("127.0.0.1", served.smtp, timeout=10) as after:
            after.ehlo()
            assert after.has_extn("starttls")
        with socket.create_connection(("127.0.0.1", served.smtp), timeout=10) as raw:
            assert b"Internet Mail Service 5.5.2448.0) ready" in raw.recv(200)
        before.ehlo()
        assert not before.has_extn("starttls")
    status, sessions = get_json(served.url + "/sessions")
    assert [s["profile"] for s in sessions] == ["ims55sp4", "ims55sp2", "ims55sp2"]
    status, listeners = get_json(served.url + "/listeners")
    assert listeners[0]["profile"] == "ims55sp2"


def test_switching_to_a_bad_profile_is_400_with_the_loader_text(served):
    """An unknown profile is a 400 whose message is the ProfileError text; the listener keeps its profile."""
    status, error = get_json(f"{served.url}/listeners/{served.smtp}/profile", "PUT", {"profile": "nosuch"})
    assert status == 400 and error["error"] == "bad_profile"
    with pytest.raises(profiles.ProfileError) as raised:
        profiles.load("nosuch")
    assert error["message"] == str(raised.value)
    assert get_json(f"{served.url}/listeners/{served.smtp}")[1]["profile"] == "ims55sp4"


def test_switch_takes_names_not_paths(served):
    """The API never loads a file named in a request: a path is a 400."""
    status, error = get_json(f"{served.url}/listeners/{served.smtp}/profile", "PUT", {"profile": "/etc/x.yaml"})
    assert status == 400 and error == {"error": "bad_profile", "message": "/etc/x.yaml: a profile name (GET /profiles), not a path"}


@pytest.mark.parametrize("body, message", [
    (b"not json", "the body is not valid JSON"),
    ({"name": "ims55sp2"}, 'the body must be {"profile": NAME}'),
    (None, 'the body must be {"profile": NAME}'),
])
def test_switch_needs_a_json_body_with_a_profile(served, body, message):
    """A missing or malformed body is a 400 saying what is expected."""
    status, error = get_json(f"{served.url}/listeners/{served.smtp}/profile", "PUT", body)
    assert status == 400 and error == {"error": "bad_request", "message": message}


def test_an_implicit_tls_listener_refuses_a_profile_without_smtps(served):
    """Exchange 5.5 never offered SMTPS (KB Q218430): switching the SMTPS listener to it is a 400."""
    status, error = get_json(f"{served.url}/listeners/{served.smtps}/profile", "PUT", {"profile": "ims55sp4"})
    assert status == 400 and "never offered TLS from the first byte" in error["message"]


def test_unknown_route_and_wrong_method(served):
    """An unknown path is a JSON 404; a known path with another method is a 405 naming the allowed ones."""
    status, error = get_json(served.url + "/nosuch")
    assert status == 404 and error == {"error": "not_found", "message": "no route /nosuch"}
    status, headers, data = call(served.url + "/health", "DELETE")
    assert status == 405 and headers["allow"] == "GET"
    assert json.loads(data)["error"] == "method_not_allowed"


def test_requests_from_web_pages_are_refused(served):
    """An Origin header, or a foreign Host on a loopback listener (DNS rebinding), is a 403; localhost is fine."""
    status, error = get_json(served.url + "/messages", headers={"Origin": "http://evil.example"})
    assert status == 403 and error["error"] == "forbidden"
    status, error = get_json(served.url + "/messages", headers={"Host": "evil.example:8025"})
    assert status == 403 and "DNS rebinding" in error["message"]
    assert get_json(served.url + "/health", headers={"Host": "localhost"})[0] == 200


def test_a_fault_with_a_misspelt_step_is_refused(served):
    """POST /faults with 'rpct:...' is a 400 naming the spec, the known steps and the likely one; nothing is added."""
    spec = "rpct:reply=452 4.5.3 Too many recipients"
    status, error = get_json(served.url + "/faults", "POST", {"spec": spec})
    assert status == 400 and error["error"] == "bad_fault"
    assert error["message"].startswith(f"{spec}: fault {spec!r}: command: unknown step 'rpct'; did you mean RCPT? "
                                       "known steps: connect, data_end, ., *, HELO, EHLO, MAIL, RCPT, ")
    assert get_json(served.url + "/faults")[1] == []


def test_faults_are_added_listed_and_cleared(served):
    """POST /faults adds a fault to every emulation at once (running listeners included) and to one made
    later by a profile switch; a bad spec is a 400 naming it; DELETE clears them all."""
    spec = "rcpt:reply=452 4.5.3 Too many recipients"
    status, body = get_json(served.url + "/faults", "POST", {"spec": spec})
    assert status == 200 and body == [spec]
    with smtplib.SMTP("127.0.0.1", served.smtp, timeout=10) as client:
        client.ehlo()
        client.mail("a@example.org")
        assert client.rcpt("b@example.test") == (452, b"4.5.3 Too many recipients")
    get_json(f"{served.url}/listeners/{served.smtp}/profile", "PUT", {"profile": "ims55sp2"})
    with smtplib.SMTP("127.0.0.1", served.smtp, timeout=10) as client:
        client.ehlo()
        client.mail("a@example.org")
        assert client.rcpt("b@example.test")[0] == 452
    status, error = get_json(served.url + "/faults", "POST", {"spec": "rcpt:nosuchtype"})
    assert status == 400 and error["error"] == "bad_fault" and error["message"].startswith("rcpt:nosuchtype: ")
    assert get_json(served.url + "/faults", "DELETE") == (200, [])
    assert get_json(served.url + "/faults")[1] == []
    with smtplib.SMTP("127.0.0.1", served.smtp, timeout=10) as client:
        client.ehlo()
        client.mail("a@example.org")
        assert client.rcpt("b@example.test")[0] == 250


def test_server_side_errors_are_counted_until_reset(served, monkeypatch):
    """An exception inside the emulator shows in /health's error count; reset forgets it."""
    (factory,) = [f for f in served.control.base.factories]

    def broken(conn, arg):
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(factory.server.verbs, "NOOP", broken)
    with smtplib.SMTP("127.0.0.1", served.smtp, timeout=10) as client:
        assert client.noop()[0] == 451
    assert get_json(served.url + "/health")[1]["errors"] == 1
    get_json(served.url + "/reset", "POST")
    assert get_json(served.url + "/health")[1]["errors"] == 0


def test_api_option_binds_loopback_unless_told():
    """--api 8025 and --api tcp:8025 bind 127.0.0.1; a bad endpoint is a usage error naming --api."""
    from twisted.python import usage

    from emulator.tap import Options

    for given in ("8025", "tcp:8025"):
        options = Options()
        options.parseOptions(["--api", given])
        assert options["api"] == "tcp:8025:interface=127.0.0.1"
    with pytest.raises(usage.UsageError, match="--api tcp:notaport"):
        Options().parseOptions(["--api", "tcp:notaport"])


def test_switching_keeps_a_command_line_middlebox(tmp_path):
    """A middlebox given to twistd (--middlebox) stays in front after a switch; a profile's own
    middlebox: section applies only to that profile."""
    from twisted.internet.task import Clock

    from emulator import middlebox
    from emulator.control.listeners import Control

    pix = middlebox.load("pix-mailguard")
    given = Control(Emulation(profiles.load("ims55sp4"), state_dir=tmp_path, middlebox=pix), middlebox=pix,
                    reactor=Clock())
    assert given.emulation("ims55sp2").served == "pix-mailguard in front of ims55sp2"
    plain = Control(Emulation(profiles.load("ims55sp4-pix"), state_dir=tmp_path),
                    reactor=Clock())
    assert plain.emulation("ims55sp2").served == "ims55sp2"


def test_switching_keeps_command_line_accounts(tmp_path):
    """Accounts given to twistd (--account) are added to a profile switched to as well."""
    from twisted.internet.task import Clock

    from emulator.auth import mechanisms as auth
    from emulator.control.listeners import Control

    alice = auth.parse_account("CORP\\alice:pw")
    control = Control(Emulation(profiles.load("ims55sp4"), state_dir=tmp_path), accounts=[alice], reactor=Clock())
    assert alice in control.emulation("ims55sp3").profile.auth.accounts
