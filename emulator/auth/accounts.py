"""Accounts a profile, C{--account} or a fixture lets log in (AUTH, XAUTH)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, init=False)
class Account:
    """
    An account. C{user} and C{domain} match case-insensitively; domain C{""}
    or C{"*"} matches any. C{password} stays out of C{repr}; as in pyspnego,
    C{LMHASH:NTHASH} (32 hex digits each) is taken as the hashes themselves.

    Made as C{Account(user, domain, password)}; in a profile's C{accounts:}
    the domain may be left out (the field's default, which L{emulator.schema}
    reads; the constructor keeps the three positions).
    """

    user: str
    domain: str = ""
    password: str = field(repr=False)

    def __init__(self, user: str, domain: str, password: str):
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "password", password)
