"""
The C{relay:} profile section and its rule: which recipients a server takes
from which peers.

    relay:
      local_domains: [example.test]   # recipients here are always taken
      relay_from: [192.0.2.0/24]      # peers that may send to any domain
      authenticated: false            # a peer that logged in may relay too

With the section, RCPT to a domain that is not local, from a peer outside
C{relay_from} (and not logged in, when C{authenticated}), gets the
catalogue's C{relay_denied} reply (KB Q193922's rule: "SMTP RCPT commands
that specify a non-local recipient are refused"; RelayFlags bit 8 lets
authenticated clients relay).  Without it every recipient is taken, as
every IMS did before relay restrictions were configured.

Plain data with a pure decision (L{RelayRules.refuses}); the networks are
parsed by the standard library's C{ipaddress} when the section is read, so a
bad entry stops the profile from loading.  It imports nothing else of the
emulator: the core reads it, L{emulator.profiles.sections} names it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


class RelayError(ValueError):
    """A bad entry; C{key} is where, inside the section."""

    def __init__(self, key: str, problem: str):
        super().__init__(problem)
        self.key = key


def network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """C{ADDRESS/PREFIX} (or a bare address, one host: Q193922's default mask
    255.255.255.255) as a network, or ValueError in one line."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as e:
        raise ValueError(f"{text!r} is not ADDRESS/PREFIX ({e})") from None


def domain_of(recipient: str) -> str:
    """The domain of a forward-path: what follows its last C{@}, lower case;
    C{""} for a bare local part (the server's own, KB Q304897)."""
    return recipient.rpartition("@")[2].lower() if "@" in recipient else ""


@dataclass(frozen=True)
class RelayRules:
    """The local domains and the peers allowed to relay.

    @ivar local_domains: domains whose recipients are always taken (compared
        without case; a bare local part is local).
    @ivar relay_from: networks, C{ADDRESS/PREFIX}, whose peers may send to
        any domain.
    @ivar authenticated: a session that has logged in (AUTH or XAUTH) may
        relay as well (Q193922's RelayFlags bit 8).
    """

    local_domains: tuple[str, ...] = ()
    relay_from: tuple[str, ...] = ()
    authenticated: bool = False
    networks: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self):
        parsed = []
        for i, text in enumerate(self.relay_from):
            try:
                parsed.append(network(text))
            except ValueError as e:
                raise RelayError(f"relay_from[{i}]", str(e)) from None
        for i, domain in enumerate(self.local_domains):
            if not domain or any(c.isspace() or c in "<>@" for c in domain):
                raise RelayError(f"local_domains[{i}]", f"{domain!r} is not a domain name")
        object.__setattr__(self, "local_domains", tuple(d.lower().rstrip(".") for d in self.local_domains))
        object.__setattr__(self, "networks", tuple(parsed))

    def refuses(self, recipient: str, peer_ip: str, authenticated: bool = False) -> bool:
        """Whether RCPT to C{recipient} from C{peer_ip} is refused."""
        domain = domain_of(recipient)
        if not domain or domain in self.local_domains:
            return False
        if authenticated and self.authenticated:
            return False
        return not self.allows(peer_ip)

    def allows(self, peer_ip: str) -> bool:
        """Whether C{peer_ip} may relay (an address that does not parse may not)."""
        try:
            address = ipaddress.ip_address(peer_ip.split("%", 1)[0])
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        candidates = (address, mapped) if mapped is not None else (address,)
        return any(a in net for a in candidates for net in self.networks if a.version == net.version)

    def with_options(self, local_domains=(), relay_from=()) -> "RelayRules":
        """These rules with C{--local-domain}/C{--relay-from} entries added."""
        return RelayRules(self.local_domains + tuple(local_domains), self.relay_from + tuple(relay_from),
                          self.authenticated)
