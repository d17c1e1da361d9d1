"""What the web console needs from the control API, over real HTTP on 127.0.0.1: the index at /, the console's
files, the live feed, session summaries and .jsonl downloads, Maildir locations, same-origin requests, the
token, and the matrix report folder."""

import contextlib
import http.client
import json
import smtplib
import urllib.parse
from importlib import resources

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.python import usage

from emulator.control import api
from emulator.tap import Options

from test_api import call, get_json

pytestmark = pytest.mark.e2e
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


def deliver(port, quit=True):
    """One smtplib session that sends a message, ending with QUIT or hanging up."""
    client = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=10)
    client.sendmail("a@example.org", ["b@example.test"], b"Subject: console\r\n\r\nhello\r\n")
    client.quit() if quit else client.close()


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, text/html;q=0.5"])
def test_the_root_is_an_index_of_the_api_for_clients(console_server, accept):
    """GET / without a preference for HTML (curl, Accept: application/json) is a JSON index: every route with
    its OpenAPI summary, and where the console, the OpenAPI document and the live feed are."""
    served = console_server()
    status, index = get_json(served.url + "/", headers={"Accept": accept} if accept else {})
    assert status == 200
    assert [(r["method"], r["path"]) for r in index["routes"]] == [(m, p) for m, p, _ in api.ROUTES]
    assert all(r["summary"] for r in index["routes"])
    assert (index["console"], index["openapi"], index["events"], index["matrix"]) == (
        "/", "/openapi.json", "/events", None)


def test_the_root_is_the_console_for_browsers(console_server):
    """A browser's Accept gets the console's page, from the package, under a policy that lets it load only this
    server's files; the page loads its script and style from /console/."""
    served = console_server()
    status, headers, page = call(served.url + "/", headers={"Accept": BROWSER_ACCEPT})
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert headers["vary"] == "accept"
    assert page == resources.files("emulator.control").joinpath("console", "index.html").read_bytes()
    assert "default-src 'none'" in headers["content-security-policy"] and "script-src 'self'" in headers[
        "content-security-policy"]
    assert b'<script src="/console/console.js" defer></script>' in page
    for name, kind in [("console.js", "text/javascript"), ("console.css", "text/css")]:
        status, headers, data = call(f"{served.url}/console/{name}")
        assert status == 200 and headers["content-type"].startswith(kind)
        assert data == resources.files("emulator.control").joinpath("console", name).read_bytes()
    status, error = get_json(served.url + "/console/nosuch.js")
    assert status == 404 and error["error"] == "not_found"
    assert call(served.url + "/favicon.ico")[::2] == (204, b"")  # no failed load in the browser's console


def test_sessions_are_summarized_and_downloadable(console_server):
    """GET /sessions tells how each session went (persona, last reply, how it ended, outcome); GET
    /sessions/{id}/jsonl is the transcript file, as --transcripts writes it, to download."""
    served = console_server()
    deliver(served.ports[0])
    (summary,) = get_json(served.url + "/sessions")[1]
    assert (summary["persona"], summary["ended"], summary["outcome"], summary["last_reply"]) == (
        "ims55sp4", "QUIT", "delivered", "221 closing connection")
    assert summary["tls"] is None and summary["auth"] is None and summary["behind"] is None
    status, headers, data = call(f"{served.url}/sessions/{summary['session']}/jsonl")
    assert status == 200 and headers["content-type"] == "application/x-ndjson"
    assert headers["content-disposition"] == f'attachment; filename="{summary["session"]}.jsonl"'
    transcript = served.control.session(summary["session"])
    assert data.decode("ascii") == transcript.to_jsonl()
    assert json.loads(data.splitlines()[0])["session"] == summary["session"]


def test_a_session_behind_a_middlebox_names_the_middlebox_session(console_server):
    """Through a middlebox there are two sessions: the middlebox's (both legs; persona "TYPE in front of
    PROFILE", its upstream the server's session, whose messages it counts) and the server's own, whose behind
    names the first."""
    served = console_server([("ims55sp4-pix", False)])
    deliver(served.ports[0])  # smtplib falls back to HELO when the PIX masks EHLO
    sessions = {s["session"]: s for s in get_json(served.url + "/sessions")[1]}
    (box,) = [s for s in sessions.values() if s["middlebox"]]
    assert box["persona"] == "pix-mailguard in front of ims55sp4-pix"
    assert sessions[box["upstream"]]["behind"] == box["session"]
    assert (box["messages"], box["outcome"]) == (1, "delivered")  # accepted by the server behind it


def test_messages_say_where_they_are_in_the_maildir(console_server, tmp_path):
    """Each envelope names its file in the Maildir (new/NAME), or null when messages stay in memory."""
    served = console_server()
    deliver(served.ports[0])
    (envelope,) = get_json(served.url + "/messages")[1]
    assert envelope["path"] == str(tmp_path / "maildir" / "new" / envelope["name"])
    name = urllib.parse.quote(envelope["name"], safe="")
    assert get_json(f"{served.url}/messages/{name}")[1]["path"] == envelope["path"]
    memory = console_server(maildir=False)
    deliver(memory.ports[0])
    assert get_json(memory.url + "/messages")[1][0]["path"] is None


def test_the_console_own_requests_pass_the_origin_check(console_server):
    """A request whose Origin is this server's own (the console's PUT, POST and DELETE) is let through; any
    other Origin, a look-alike included, is still refused."""
    served = console_server()
    own = served.url
    status, faults = get_json(served.url + "/faults", "POST", {"spec": "rcpt:disconnect"}, headers={"Origin": own})
    assert status == 200 and faults == ["rcpt:disconnect"]
    port = own.rsplit(":", 1)[1]
    for other in (f"http://localhost:{port}", f"https://127.0.0.1:{port}", "http://127.0.0.1", "null"):
        status, error = get_json(served.url + "/faults", "DELETE", headers={"Origin": other})
        assert status == 403 and error["error"] == "forbidden", other


def test_a_token_is_required_when_set(console_server):
    """With a token, a request without it (or with a wrong one) is a 401 saying how to bring it; the token is
    taken as a Bearer header, or once as ?token= (the printed console URL), which sets an HttpOnly, SameSite
    cookie for this port that later requests and the live feed bring."""
    served = console_server(token="s3cret-token")
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Cookie": "emulator-token-1=s3cret-token"}):
        status, error = get_json(served.url + "/health", headers=headers)
        assert status == 401 and error["error"] == "unauthorized" and "/?token=" in error["message"]
    assert get_json(served.url + "/health", headers={"Authorization": "Bearer s3cret-token"})[0] == 200
    status, headers, _ = call(served.url + "/?token=s3cret-token", headers={"Accept": BROWSER_ACCEPT})
    port = served.url.rsplit(":", 1)[1]
    assert status == 200
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"emulator-token-{port}=s3cret-token;")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert get_json(served.url + "/health", headers={"Cookie": f"emulator-token-{port}=s3cret-token"})[0] == 200
    with stream(served.url, {"Cookie": f"emulator-token-{port}=s3cret-token"}) as events:
        assert next(events)[0] == "snapshot"


@pytest.mark.parametrize("address, needed", [
    (IPv4Address("TCP", "127.0.0.1", 8025), False), (IPv6Address("TCP", "::1", 8025), False),
    (IPv4Address("TCP", "0.0.0.0", 8025), True), (IPv4Address("TCP", "192.0.2.7", 8025), True),
    (IPv6Address("TCP", "::", 8025), True), (UNIXAddress("/run/emulator.sock"), False),
])
def test_a_token_is_needed_beyond_loopback(address, needed):
    """An API bound to anything but a loopback address (or a Unix socket) is reachable from elsewhere."""
    assert api.needs_token(address) is needed


class _Port:
    def __init__(self, address):
        self.address = address

    def getHost(self):
        return self.address


def test_the_api_beyond_loopback_makes_up_a_token_and_prints_the_console_url(console_server):
    """Listening on 0.0.0.0 without --api-token, the API makes up a token and the log line gives the console's
    URL with it; on loopback the URL has none; a given token is kept and printed."""
    from twisted.logger import capturedLogs
    from twisted.internet.endpoints import TCP4ServerEndpoint

    control = console_server().control

    def announce(host, token=None):
        service = api.APIService(TCP4ServerEndpoint(None, 0), control, token=token)
        with capturedLogs() as events:
            service._listening(_Port(IPv4Address("TCP", host, 8025)))
        (line,) = [e for e in events if e.get("announce")]
        from twisted.logger import formatEvent

        return service.factory.resource.token, formatEvent(line)

    token, line = announce("0.0.0.0")
    assert len(token) >= 16
    assert line == f"listening on 0.0.0.0:8025 (control API); console at http://0.0.0.0:8025/?token={token}"
    assert announce("127.0.0.1") == (None, "listening on 127.0.0.1:8025 (control API); console at "
                                           "http://127.0.0.1:8025/")
    assert announce("127.0.0.1", "given-token")[1].endswith("console at http://127.0.0.1:8025/?token=given-token")


@contextlib.contextmanager
def stream(url, headers=None):
    """The (event, data) pairs of GET /events, read as they come (at most 200 events, 10 s each)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", "/events", headers=headers or {})
    response = connection.getresponse()
    assert response.status == 200 and response.headers["content-type"].startswith("text/event-stream")

    def events():
        name, data = None, []
        for _ in range(2000):
            line = response.readline().decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif not line and name:
                yield name, json.loads("\n".join(data))
                name, data = None, []

    try:
        yield events()
    finally:
        connection.close()


def wait_for(events, test, limit=200):
    """The first update event whose data passes C{test}."""
    for _, (name, data) in zip(range(limit), events):
        if name == "update" and test(data):
            return data
    raise AssertionError("no such event")


def test_the_live_feed_over_http(console_server):
    """GET /events: a snapshot, then updates as a real session begins and ends, a fault is added and a reset
    forgets the session."""
    served = console_server()
    with stream(served.url) as events:
        name, snapshot = next(events)
        assert name == "snapshot" and snapshot["sessions"] == []
        assert [l["port"] for l in snapshot["listeners"]] == served.ports
        deliver(served.ports[0])
        ended = wait_for(events, lambda d: any(s["ended"] == "QUIT" for s in d.get("sessions", [])))
        (session,) = ended["sessions"]
        assert session["outcome"] == "delivered" and session["messages"] == 1
        get_json(served.url + "/faults", "POST", {"spec": "rcpt:disconnect"})
        assert wait_for(events, lambda d: "faults" in d)["faults"] == ["rcpt:disconnect"]
        get_json(served.url + "/reset", "POST")
        assert wait_for(events, lambda d: "removed" in d)["removed"] == [session["session"]]


def test_the_matrix_report_folder_is_served(console_server, tmp_path):
    """With a matrix report folder, /matrix/ is its matrix.html, its files are served beneath it, nothing
    outside it is, /matrix redirects to /matrix/ (the report's links are relative), and the index and the
    feed link it; a folder not written yet is a 404 saying how to write it."""
    report = tmp_path / "report"
    (report / "transcripts").mkdir(parents=True)
    (report / "matrix.html").write_text("<h1>matrix</h1>")
    (report / "transcripts" / "ims55sp4.txt").write_text("-> EHLO x\n")
    (tmp_path / "secret.txt").write_text("no")
    served = console_server(matrix=report)
    status, headers, page = call(served.url + "/matrix/")
    assert status == 200 and page == b"<h1>matrix</h1>" and headers["content-type"] == "text/html; charset=utf-8"
    status, headers, text = call(served.url + "/matrix/transcripts/ims55sp4.txt")
    assert status == 200 and text == b"-> EHLO x\n" and headers["content-type"].startswith("text/plain")
    for outside in ("/matrix/../secret.txt", "/matrix/%2e%2e/secret.txt", "/matrix/%2Ftmp", "/matrix/nosuch"):
        assert call(served.url + outside)[0] == 404, outside
    connection = http.client.HTTPConnection("127.0.0.1", int(served.url.rsplit(":", 1)[1]), timeout=10)
    connection.request("GET", "/matrix")
    response = connection.getresponse()
    assert response.status == 302 and response.headers["location"].endswith("/matrix/")
    connection.close()
    assert get_json(served.url + "/")[1]["matrix"] == "/matrix/"
    with stream(served.url) as events:
        assert next(events)[1]["matrix"] == "/matrix/"
    later = console_server(matrix=tmp_path / "not-yet")
    status, error = get_json(later.url + "/matrix/")
    assert status == 404 and "emulator matrix --out" in error["message"]


@pytest.mark.parametrize("argv, message", [
    (["--api-token", "abcdefgh"], "--api-token needs --api"),
    (["--matrix-report", "out"], "--matrix-report needs --api"),
    (["--api", "tcp:8025", "--api-token", "short"], "--api-token: 8 or more letters, digits or ._~-"),
    (["--api", "tcp:8025", "--api-token", "has space in it"], "--api-token: 8 or more letters, digits or ._~-"),
])
def test_console_options_are_checked(argv, message):
    """--api-token and --matrix-report need --api; a token must fit in a URL and a cookie as it is."""
    with pytest.raises(usage.UsageError) as raised:
        Options().parseOptions(argv)
    assert str(raised.value).startswith(message)
