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

Routes are the table L{ROUTES}; C{emulator/openapi.json} documents each
(a test keeps the two equal).  Errors are JSON C{{"error": code, "message":
text}} with a 4xx/5xx status.  Requests from web pages (an C{Origin} header)
and, on a loopback listener, requests naming a host other than an address or
C{localhost} (DNS rebinding) are refused: the API can read captured mail.
"""

from __future__ import annotations

import ipaddress
import json
from importlib import resources

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

import emulator
from emulator.profiles import loader as profiles
from emulator.control.listeners import Control, headed
from emulator.host.tap import ListenerService

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
    """A non-JSON response body."""

    def __init__(self, data: bytes, content_type: str):
        self.data, self.content_type = data, content_type


def openapi_document() -> bytes:
    """The committed OpenAPI document, as shipped in the package."""
    return resources.files("emulator.control").joinpath("openapi.json").read_bytes()


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


def _summary(control: Control, transcript) -> dict:
    return {"session": transcript.session_id, "profile": transcript.profile, "peer": transcript.peer,
            "listener": transcript.listener, "started": transcript.started,
            "open": transcript.session_id in control.base.transcripts.open,
            "records": transcript.record_count, "messages": transcript.message_count}


def list_sessions(control: Control, request):
    return [_summary(control, t) for t in control.sessions()]


def get_session(control: Control, request, id: str):
    transcript = _found(control.session(id), "session", id)
    return {**_summary(control, transcript), "transcript": _records(transcript)}


def get_transcript(control: Control, request, id: str):
    transcript = _found(control.session(id), "session", id)
    return Text(_from_disk(lambda: headed(transcript)).encode("utf-8"), "text/plain; charset=utf-8")


def list_messages(control: Control, request):
    envelopes = []
    for captured in control.messages():
        try:
            envelopes.append(captured.envelope())
        except (OSError, LookupError):  # its envelope log was emptied since: no longer listed
            pass
    return envelopes


def get_message(control: Control, request, name: str):
    captured = _found(control.message(name), "message", name)
    return _from_disk(captured.envelope)


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


#: (method, path template, handler); a C{{name}} segment matches any one segment.
ROUTES = [
    ("GET", "/health", health),
    ("GET", "/openapi.json", openapi),
    ("GET", "/profiles", list_profiles),
    ("GET", "/listeners", list_listeners),
    ("GET", "/listeners/{id}", get_listener),
    ("PUT", "/listeners/{id}/profile", switch_profile),
    ("GET", "/sessions", list_sessions),
    ("GET", "/sessions/{id}", get_session),
    ("GET", "/sessions/{id}/transcript", get_transcript),
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


def _refused(request) -> str | None:
    """Why a request that may come from a browser is refused, or None."""
    if request.getHeader("origin") is not None:
        return "requests from web pages (with an Origin header) are refused"
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


class API(resource.Resource):
    """The whole API as one resource that routes on method and path."""

    isLeaf = True

    def __init__(self, control: Control):
        super().__init__()
        self.control = control

    def render(self, request):
        method = request.method.decode("ascii", "replace")
        segments = [s.decode("utf-8", "replace") for s in request.postpath]
        try:
            refused = _refused(request)
            if refused:
                raise APIError(403, "forbidden", refused)
            allowed = []
            for route_method, template, handler in ROUTES:
                params = _match(template, segments)
                if params is None:
                    continue
                if route_method != method:
                    allowed.append(route_method)
                    continue
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
        if isinstance(result, defer.Deferred):
            result.addCallback(lambda value: self._finish(request, value))
            result.addErrback(lambda f: self._finish(request, None, APIError(
                500, "internal_error", f"{f.type.__name__}: {f.value}")))
            return server.NOT_DONE_YET
        return self._body(request, result)

    def _finish(self, request, value, error: APIError | None = None) -> None:
        request.write(self._error(request, error) if error else self._body(request, value))
        request.finish()

    def _body(self, request, value) -> bytes:
        if isinstance(value, Text):
            request.setHeader("content-type", value.content_type)
            return value.data
        request.setHeader("content-type", "application/json")
        return (json.dumps(value, indent=1) + "\n").encode("utf-8")

    def _error(self, request, error: APIError) -> bytes:
        request.setResponseCode(error.status)
        return self._body(request, {"error": error.code, "message": error.message})


def site(control: Control) -> server.Site:
    """The twisted.web site serving the API of C{control}."""
    return server.Site(API(control))


class APIService(ListenerService):
    """Serves the API of C{control} on C{endpoint}, and says where."""

    def __init__(self, endpoint, control: Control):
        super().__init__(endpoint, site(control))

    def _listening(self, port):
        address = port.getHost()
        host = f"[{address.host}]" if ":" in address.host else address.host
        log.info("listening on {host}:{port} (control API: http://{host}:{port}/)",
                 host=host, port=address.port, announce=True)
        return port
