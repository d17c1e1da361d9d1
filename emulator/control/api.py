"""
The HTTP control API (C{twistd emulator --api tcp:8025}): JSON over
twisted.web, for test suites in any language.

    GET  /health                     is it up; version; listeners; error count
    GET  /profiles                   the profiles it can serve
    GET  /listeners                  listeners by id (the bound port)
    PUT  /listeners/{id}/profile     {"profile": NAME}: new connections get NAME
    GET  /sessions[/{id}]            sessions; one with its transcript records
    GET  /sessions/{id}/transcript   the arrow form, as text
    GET  /messages[/{name}]          captured messages' envelopes
    GET  /messages/{name}/raw        the message as received (RFC 5322)
    POST /reset                      close connections, forget everything
    GET|POST|DELETE /faults          list, add ({"spec": ...}), clear faults
    GET  /openapi.json               this API's OpenAPI 3 document
    GET  /                           the web console (to a browser) or an index of the API (JSON)
    GET  /events                     the console's live feed (server-sent events, L{emulator.control.live})
    GET  /sessions/{id}/jsonl        the session's .jsonl file, for download

Routes are the table L{ROUTES}; C{emulator/control/openapi.json} documents
each (a test keeps the two equal).  Beside them: the console's files
(C{/console/NAME}, package data), an empty C{/favicon.ico} (204) and, with
C{--matrix-report DIR}, that folder under C{/matrix/}.  Errors are JSON
C{{"error": code, "message": text}} with a 4xx/5xx status.

The API can read captured mail, so: requests from other web pages (an
C{Origin} header other than this server's own: the console's requests
carry its own) are refused, and so are, on a loopback listener, requests
naming a host other than an address or C{localhost} (DNS rebinding); with a
token (C{--api-token}, or one made up at start when the API listens beyond
loopback) every request must bring it: C{Authorization: Bearer TOKEN}, or
C{?token=TOKEN} once (the console's printed URL), which sets a cookie.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import mimetypes
import secrets
from importlib import resources
from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

import emulator
from emulator.profiles import loader as profiles
from emulator.control.listeners import Control, ListenerService, headed
from emulator.control.live import Feed

log = Logger(namespace="emulator")


class APIError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _found(thing, what: str, name: str):
    """C{thing}, or a 404 saying no C{what} is called C{name}."""
    if thing is None:
        raise APIError(404, "not_found", f"no {what} {name!r}")
    return thing


class Text:
    """A non-JSON response body, with more headers if need be."""

    def __init__(self, data: bytes, content_type: str, headers: dict | None = None):
        self.data, self.content_type, self.headers = data, content_type, headers or {}


def openapi_document() -> bytes:
    """The committed OpenAPI document, as shipped in the package."""
    return resources.files("emulator.control").joinpath("openapi.json").read_bytes()


#: The console's files (package data in emulator/control/console/) and their types.
CONSOLE_FILES = {"index.html": "text/html; charset=utf-8", "console.js": "text/javascript; charset=utf-8",
                 "console.css": "text/css; charset=utf-8"}
#: The console's page loads nothing but its own files and talks to nothing but its own server.
_PAGE_HEADERS = {"content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                 "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
                 "form-action 'none'", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
                 "cache-control": "no-cache"}


def console_file(name: str) -> Text:
    """One of the console's files, as shipped in the package."""
    data = resources.files("emulator.control").joinpath("console", name).read_bytes()
    return Text(data, CONSOLE_FILES[name], _PAGE_HEADERS)


def _wants_html(request) -> bool:
    """Whether the client prefers HTML to JSON (a browser does; curl, with
    C{*/*}, and a client asking for C{application/json} do not)."""
    quality = {}
    for item in (request.getHeader("accept") or "").split(","):
        kind, *params = [part.strip() for part in item.split(";")]
        q = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            quality[kind.lower()] = float(q)
        except ValueError:
            continue
    html = quality.get("text/html", quality.get("text/*", 0.0))
    return html > quality.get("application/json", quality.get("application/*", quality.get("*/*", 0.0)))


# -- handlers: (control, request, **path parameters) -> JSON value | Text | Deferred


def health(control: Control, request):
    return {"status": "ok", "version": emulator.__version__,
            "uptime": round(control.reactor.seconds() - control.started, 3),
            "listeners": len(control.named()), "errors": control.errors(),
            "forgotten": {"sessions": control.base.transcripts.recent.dropped,
                          "messages": control.base.store.recent.dropped}}


def openapi(control: Control, request):
    return Text(openapi_document(), "application/json")


_profile_cache: dict = {}


def list_profiles(control: Control, request):
    paths = sorted((p.stem, p.stat().st_mtime_ns) for d in profiles.search_path() for p in d.glob("*.yaml"))
    key = tuple(paths)
    if key not in _profile_cache:
        _profile_cache.clear()
        rows = []
        for name in profiles.names():
            try:
                p = profiles.load(name)
            except profiles.ProfileError as e:
                rows.append({"name": name, "error": str(e)})
                continue
            rows.append({"name": p.name, "product": p.product, "version": p.version, "describes": p.describes})
        _profile_cache[key] = rows
    return _profile_cache[key]


def list_listeners(control: Control, request):
    return [{"id": id, **listener.describe()} for id, listener in control.named().items()]


def get_listener(control: Control, request, id: str):
    return {"id": id, **_found(control.find(id), "listener", id).describe()}


def switch_profile(control: Control, request, id: str):
    listener = _found(control.find(id), "listener", id)
    body = _json_body(request)
    name = body.get("profile") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        raise APIError(400, "bad_request", 'the body must be {"profile": NAME}')
    if "/" in name or name.endswith((".yaml", ".yml")):  # the API reads no file it is given
        raise APIError(400, "bad_profile", f"{name}: a profile name (GET /profiles), not a path")
    try:
        control.switch(listener, name)
    except profiles.ProfileError as e:
        raise APIError(400, "bad_profile", str(e)) from None
    except ValueError as e:
        raise APIError(400, "bad_profile", f"{name}: {e}") from None
    log.info("listener {id} now serves profile {profile}", id=id, profile=name)
    return {"id": id, **listener.describe()}


def _records(transcript) -> list[dict]:
    """The transcript's records as its C{.jsonl} file has them (after the header)."""
    return [json.loads(line) for line in _from_disk(lambda: transcript.to_jsonl()).splitlines()[1:]]


def _from_disk(read):
    """What a store reads back from its files when asked (a session's
    records, a message's bytes): 410 if the file no longer has it."""
    try:
        return read()
    except (OSError, LookupError) as e:
        raise APIError(410, "gone", str(e)) from None


def list_sessions(control: Control, request):
    return control.summaries()


def get_session(control: Control, request, id: str):
    transcript = _found(control.session(id), "session", id)
    (summary,) = control.summaries([transcript])
    return {**summary, "transcript": _records(transcript)}


def get_transcript(control: Control, request, id: str):
    transcript = _found(control.session(id), "session", id)
    return Text(_from_disk(lambda: headed(transcript)).encode("utf-8"), "text/plain; charset=utf-8")


def get_jsonl(control: Control, request, id: str):
    transcript = _found(control.session(id), "session", id)
    return Text(_from_disk(transcript.to_jsonl).encode("ascii"), "application/x-ndjson",
                {"content-disposition": f'attachment; filename="{transcript.session_id}.jsonl"'})


def _envelope(captured) -> dict:
    """The envelope as C{envelopes.jsonl} has it, and where the message is in the Maildir."""
    return {**captured.envelope(), "path": None if captured.path is None else str(captured.path)}


def list_messages(control: Control, request):
    envelopes = []
    for captured in control.messages():
        try:
            envelopes.append(_envelope(captured))
        except (OSError, LookupError):  # its envelope log was emptied since: no longer listed
            pass
    return envelopes


def get_message(control: Control, request, name: str):
    captured = _found(control.message(name), "message", name)
    return _from_disk(lambda: _envelope(captured))


def get_raw(control: Control, request, name: str):
    captured = _found(control.message(name), "message", name)
    return Text(_from_disk(lambda: captured.message.data), "message/rfc822")


def do_reset(control: Control, request):
    return control.reset().addCallback(lambda _: {"status": "reset"})


def list_faults(control: Control, request):
    return [spec for spec, _ in control.fault_specs]


def add_fault(control: Control, request):
    body = _json_body(request)
    spec = body.get("spec") if isinstance(body, dict) else None
    if not isinstance(spec, str) or not spec:
        raise APIError(400, "bad_request", 'the body must be {"spec": FAULT}')
    try:
        control.add_fault(spec)
    except ValueError as e:
        raise APIError(400, "bad_fault", f"{spec}: {e}") from None
    return list_faults(control, request)


def clear_faults(control: Control, request):
    control.clear_faults()
    return []


#: (method, path template, handler); a C{{name}} segment matches any one
#: segment.  A handler named by a string is a method of L{API}: it needs the
#: console's settings or its live feed.
ROUTES = [
    ("GET", "/", "index"),
    ("GET", "/events", "events"),
    ("GET", "/health", health),
    ("GET", "/openapi.json", openapi),
    ("GET", "/profiles", list_profiles),
    ("GET", "/listeners", list_listeners),
    ("GET", "/listeners/{id}", get_listener),
    ("PUT", "/listeners/{id}/profile", switch_profile),
    ("GET", "/sessions", list_sessions),
    ("GET", "/sessions/{id}", get_session),
    ("GET", "/sessions/{id}/transcript", get_transcript),
    ("GET", "/sessions/{id}/jsonl", get_jsonl),
    ("GET", "/messages", list_messages),
    ("GET", "/messages/{name}", get_message),
    ("GET", "/messages/{name}/raw", get_raw),
    ("POST", "/reset", do_reset),
    ("GET", "/faults", list_faults),
    ("POST", "/faults", add_fault),
    ("DELETE", "/faults", clear_faults),
]


def _match(template: str, segments: list[str]) -> dict | None:
    parts = template.strip("/").split("/")
    if len(parts) != len(segments):
        return None
    params = {}
    for part, segment in zip(parts, segments):
        if part.startswith("{"):
            if not segment:
                return None
            params[part[1:-1]] = segment
        elif part != segment:
            return None
    return params


def _json_body(request):
    data = request.content.read() if request.content else b""
    try:
        return json.loads(data or b"null")
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "bad_request", "the body is not valid JSON") from None


def _same_origin(request, origin: str) -> bool:
    """Whether C{origin} is this server's own, as the browser reached it."""
    scheme = "https" if request.isSecure() else "http"
    return origin.lower() == f"{scheme}://{(request.getHeader('host') or '').lower()}"


def _refused(request) -> str | None:
    """Why a request that may come from another web page is refused, or None."""
    origin = request.getHeader("origin")
    if origin is not None and not _same_origin(request, origin):
        return "requests from other web pages (an Origin header not this server's) are refused"
    local = request.getHost()
    try:
        loopback = ipaddress.ip_address(getattr(local, "host", "")).is_loopback
    except ValueError:
        loopback = False
    host = (request.getHeader("host") or "").rsplit(":", 1)[0].strip("[]").lower()
    if loopback and host and host != "localhost" and not host.endswith(".localhost"):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return f"Host {host!r} refused on a loopback listener (DNS rebinding); use an address or localhost"
    return None


def needs_token(address) -> bool:
    """Whether an API bound to C{address} is reachable beyond this host:
    an IP address other than a loopback one (a Unix socket is not)."""
    try:
        return not ipaddress.ip_address(getattr(address, "host", "")).is_loopback
    except ValueError:
        return False


class API(resource.Resource):
    """The whole API, the console and the matrix report as one resource
    that routes on method and path.

    @ivar token: what every request must bring (None: nothing).
    @ivar matrix: the folder served under C{/matrix/} (C{--matrix-report}), or None.
    @ivar feed: the console's live feed.
    """

    isLeaf = True

    def __init__(self, control: Control, *, token: str | None = None, matrix: str | Path | None = None):
        super().__init__()
        self.control = control
        self.token = token
        self.matrix = Path(matrix) if matrix else None
        self.feed = Feed(control, lambda: {"matrix": self._matrix_link()})

    # -- handlers that need more than the control ------------------------

    def index(self, request):
        """The console to a browser; to anyone else, what the API offers."""
        request.setHeader("vary", "accept")
        if _wants_html(request):
            return console_file("index.html")
        summaries = {(method.upper(), path): operation.get("summary", "")
                     for path, item in json.loads(openapi_document())["paths"].items()
                     for method, operation in item.items()}
        return {"name": "legacy-smtp emulator control API", "version": emulator.__version__,
                "console": "/", "openapi": "/openapi.json", "events": "/events", "matrix": self._matrix_link(),
                "routes": [{"method": method, "path": path, "summary": summaries.get((method, path), "")}
                           for method, path, _ in ROUTES]}

    def events(self, request):
        return self.feed.subscribe(request)

    def _matrix_link(self) -> str | None:
        return "/matrix/" if self.matrix else None

    # -- routing -----------------------------------------------------------

    def render(self, request):
        method = request.method.decode("ascii", "replace")
        segments = [s.decode("utf-8", "replace") for s in request.postpath]
        try:
            refused = _refused(request)
            if refused:
                raise APIError(403, "forbidden", refused)
            self._check_token(request)
            if method == "GET" and len(segments) == 2 and segments[0] == "console" and segments[1] in CONSOLE_FILES:
                return self._body(request, console_file(segments[1]))
            if method == "GET" and segments == ["favicon.ico"]:  # browsers ask on every page (the matrix report's)
                request.setResponseCode(204)
                return b""
            if method == "GET" and segments[0] == "matrix" and self.matrix:
                return self._matrix(request, segments[1:])
            allowed = []
            for route_method, template, handler in ROUTES:
                params = _match(template, segments)
                if params is None:
                    continue
                if route_method != method:
                    allowed.append(route_method)
                    continue
                if isinstance(handler, str):
                    result = getattr(self, handler)(request, **params)
                else:
                    result = handler(self.control, request, **params)
                break
            else:
                if allowed:
                    request.setHeader("allow", ", ".join(allowed))
                    raise APIError(405, "method_not_allowed", f"{method} not allowed; allowed: {', '.join(allowed)}")
                raise APIError(404, "not_found", f"no route {'/' + '/'.join(segments)}")
        except APIError as e:
            return self._error(request, e)
        except Exception as e:  # a bug: answer in JSON, keep it in the log
            log.failure("control API error")
            return self._error(request, APIError(500, "internal_error", f"{type(e).__name__}: {e}"))
        if result is server.NOT_DONE_YET:
            return result
        if isinstance(result, defer.Deferred):
            result.addCallback(lambda value: self._finish(request, value))
            result.addErrback(lambda f: self._finish(request, None, APIError(
                500, "internal_error", f"{f.type.__name__}: {f.value}")))
            return server.NOT_DONE_YET
        return self._body(request, result)

    def _check_token(self, request) -> None:
        """Let the request through if it brings the token; one that brings
        it as C{?token=} gets it as a cookie too (for the console's later
        requests and its event stream), scoped to this port."""
        if not self.token:
            return
        expected = self.token.encode("utf-8")
        cookie = b"emulator-token-%d" % getattr(request.getHost(), "port", 0)
        header = request.getHeader("authorization") or ""
        bearer = header[7:].strip().encode("utf-8") if header[:7].lower() == "bearer " else None
        query = request.args.get(b"token", [None])[0]
        for given in (bearer, request.getCookie(cookie), query):
            if given is not None and hmac.compare_digest(given, expected):
                if given is query:
                    request.addCookie(cookie, expected, path=b"/", httpOnly=True, sameSite="strict")
                return
        raise APIError(401, "unauthorized", "this API needs its token (printed at start, or --api-token): "
                       "Authorization: Bearer TOKEN, or open the console at /?token=TOKEN")

    def _matrix(self, request, parts: list[str]):
        """A file of the matrix report folder (its C{matrix.html} for the
        folder itself).  By hand rather than twisted.web.static: that module
        warns on import in current Twisted, and a report folder needs no
        directory listings or ranges."""
        if not parts:  # the report's relative links need the slash
            request.redirect(b"/matrix/")
            return b""
        if not self.matrix.is_dir():
            raise APIError(404, "not_found", f"no matrix report in {self.matrix} yet "
                           f"(emulator matrix --out {self.matrix} writes one)")
        root = self.matrix.resolve()
        path = root.joinpath(*parts).resolve()
        if path.is_dir():
            path = path / "matrix.html"
        if not path.is_relative_to(root) or not path.is_file():
            raise APIError(404, "not_found", f"no file /matrix/{'/'.join(parts)} in the matrix report")
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if kind.startswith("text/"):
            kind += "; charset=utf-8"
        return self._body(request, Text(path.read_bytes(), kind, {"x-content-type-options": "nosniff"}))

    def _finish(self, request, value, error: APIError | None = None) -> None:
        request.write(self._error(request, error) if error else self._body(request, value))
        request.finish()

    def _body(self, request, value) -> bytes:
        if isinstance(value, Text):
            request.setHeader("content-type", value.content_type)
            for name, header in value.headers.items():
                request.setHeader(name, header)
            return value.data
        request.setHeader("content-type", "application/json")
        return (json.dumps(value, indent=1) + "\n").encode("utf-8")

    def _error(self, request, error: APIError) -> bytes:
        request.setResponseCode(error.status)
        return self._body(request, {"error": error.code, "message": error.message})


def site(control: Control, *, token: str | None = None, matrix: str | Path | None = None) -> server.Site:
    """The twisted.web site serving the API (and the console) of C{control}."""
    return server.Site(API(control, token=token, matrix=matrix))


class APIService(ListenerService):
    """Serves the API and the console of C{control} on C{endpoint}, says
    where, and makes up a token if it listens beyond loopback without one."""

    def __init__(self, endpoint, control: Control, *, token: str | None = None, matrix: str | None = None):
        super().__init__(endpoint, site(control, token=token, matrix=matrix))

    def stopService(self):
        self.factory.resource.feed.close()
        return super().stopService()

    def _listening(self, port):
        api = self.factory.resource
        address = port.getHost()
        if needs_token(address) and not api.token:
            api.token = secrets.token_urlsafe(16)
        host = f"[{address.host}]" if ":" in address.host else address.host
        query = f"?token={api.token}" if api.token else ""
        log.info("listening on {host}:{port} (control API); console at http://{host}:{port}/{query}",
                 host=host, port=address.port, query=query, announce=True)
        return port
