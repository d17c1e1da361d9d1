"""
Where servers listen, in the user's words: endpoint strings checked before
anything starts, and listening failures said in one line.

An endpoint is what C{--listen}, C{--listen-tls} and C{--api} take:

    2525                        port 2525 on 127.0.0.1
    127.0.0.1:2525, [::1]:2525  a port on one address (as C{emulator send --to} takes it)
    tcp:2525[:interface=ADDRESS][:backlog=N]
    tcp6:2525[:interface=ADDRESS][:backlog=N]
    unix:PATH[:mode=0660][:backlog=N]

A TCP endpoint binds 127.0.0.1 (C{tcp6}: ::1) unless it names an interface.
Twisted's own parser (L{twisted.internet.endpoints.serverFromString}) does
the listening; this module only checks the text first, because Twisted's
errors name its internals (C{invalid literal for int()}, C{_parseTCP() got
an unexpected keyword argument}), and gives listeners an accept backlog
fit for a load test (Twisted's default is 50: a burst of 1,000 clients
waits seconds for its banners).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re

#: The accept backlog of a listener whose endpoint does not give one (the
#: kernel caps it at net.core.somaxconn).
DEFAULT_BACKLOG = 1024

_KEYS = {"tcp": ("interface", "backlog"), "tcp6": ("interface", "backlog"),
         "unix": ("mode", "backlog", "lockfile")}
_LOOPBACK = {"tcp": "127.0.0.1", "tcp6": "::1"}
_HOST_PORT = re.compile(r"\A(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>[^:]*)\Z")


class EndpointError(ValueError):
    """An endpoint string that cannot be served; C{str()} is the problem."""


def server_endpoint(text: str) -> str:
    """The Twisted server endpoint string C{text} stands for, checked,
    with 127.0.0.1 (or ::1) as the interface unless one is named.

    @raise EndpointError: what is wrong, in words.
    """
    text = text.strip()
    if not text:
        raise EndpointError("an empty endpoint; write PORT, HOST:PORT or tcp:PORT")
    if text.isdigit():
        text = f"tcp:{text}"
    else:
        short = _HOST_PORT.match(text)
        if short and (short["v6"] or _is_address(short["host"])):  # not kind:port such as tcp:2525
            host = short["v6"] or short["host"]
            text = f"{'tcp6' if short['v6'] else 'tcp'}:{short['port']}:interface={host}"
    kind, _, rest = text.partition(":")
    if kind == "ssl":
        raise EndpointError("ssl: endpoints need a certificate of their own; for SMTPS with the persona's "
                            "certificate use --listen-tls tcp:PORT")
    if kind not in _KEYS:
        raise EndpointError(f"unknown endpoint type {kind!r}; write PORT, HOST:PORT, tcp:PORT, tcp6:PORT or unix:PATH")
    first, *options = _split(rest)
    given = {}
    for option in options:
        key, equals, value = option.partition("=")
        if not equals:
            raise EndpointError(f"{option!r} is not KEY=VALUE")
        if key not in _KEYS[kind]:
            import difflib  # for a mistake only: not on every start

            guess = difflib.get_close_matches(key, _KEYS[kind], n=1)
            hint = f" (did you mean {guess[0]}?)" if guess else ""
            raise EndpointError(f"unknown option {key!r}{hint}; {kind}: takes {', '.join(_KEYS[kind])}")
        if key in given:
            raise EndpointError(f"{key} is given twice")
        given[key] = value
    if "backlog" in given and not (given["backlog"].isdigit() and int(given["backlog"]) > 0):
        raise EndpointError(f"backlog={given['backlog']}: must be a whole number, 1 or more")
    if kind == "unix":
        return _unix(text, first, given)
    if not first.isdigit() or int(first) > 65535:
        raise EndpointError(f"port {first!r}: must be a number from 0 to 65535")
    interface = given.setdefault("interface", _LOOPBACK[kind])
    if not _is_address(interface):
        raise EndpointError(f"interface={interface}: not an IP address")
    return ":".join([kind, first] + [f"{key}={value}" for key, value in given.items()])


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return text == "localhost"
    return True


def _unix(text: str, path: str, given: dict) -> str:
    if not path:
        raise EndpointError("unix: needs the path of the socket")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise EndpointError(f"no such folder {folder}")
    if "mode" in given and not re.fullmatch(r"0?[0-7]{3}", given["mode"]):
        raise EndpointError(f"mode={given['mode']}: must be octal, such as 0660")
    return text


def _split(text: str) -> list[str]:
    r"""C{text} cut at the colons Twisted cuts at (C{\:} is a literal colon)."""
    return [piece.replace("\0", ":") for piece in text.replace("\\:", "\0").split(":")]


def with_backlog(description: str) -> str:
    """C{description} with L{DEFAULT_BACKLOG} unless it gives a backlog."""
    if description.split(":", 1)[0] in _KEYS and "backlog=" not in description:
        return f"{description}:backlog={DEFAULT_BACKLOG}"
    return description


class ListenError(Exception):
    """A listener that could not listen: C{str()} names the option, the
    endpoint and the cause in the user's words."""

    def __init__(self, option: str, endpoint: str, cause: BaseException):
        self.option, self.endpoint, self.cause = option, endpoint, cause
        super().__init__(f"{option} {endpoint}: {listen_problem(cause)}")


_ERRNO_WORDS = {
    errno.EADDRINUSE: "address already in use",
    errno.EADDRNOTAVAIL: "no such address on this host",
    errno.EACCES: "permission denied (ports below 1024 need root)",
    errno.ENOENT: "no such file or folder",
}


def listen_problem(error: BaseException) -> str:
    """Why listening failed, in a few words (Twisted's C{CannotListenError}
    wraps the socket error)."""
    cause = getattr(error, "socketError", None) or error
    number = getattr(cause, "errno", None)
    if number == errno.EACCES and getattr(error, "port", None) is None:
        return "permission denied"
    if number in _ERRNO_WORDS:
        return _ERRNO_WORDS[number]
    return getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
