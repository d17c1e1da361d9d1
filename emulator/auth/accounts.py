"""Accounts a profile, C{--account} or a fixture lets log in (AUTH, XAUTH)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Account:
    """
    An account. C{user} and C{domain} match case-insensitively; domain C{""}
    or C{"*"} matches any. C{password} stays out of C{repr}; as in pyspnego,
    C{LMHASH:NTHASH} (32 hex digits each) is taken as the hashes themselves.
    """

    user: str
    domain: str
    password: str = field(repr=False)
