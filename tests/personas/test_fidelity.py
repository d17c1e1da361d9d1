"""The second fidelity pass (issue 20), byte for byte in memory: relay refusal
at RCPT with each product's text, the IMS's STARTTLS rules (KB Q260065,
Q255753), XEXCH50 before and after MS03-046, the banner with ESMTP off (KB
Q194131), Netscape 3.0's texts, IIS 4.0's family texts, the corrected
versions, the options that set them and the sender switches (KB Q175982,
Q288240)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from twisted.python import usage

from emulator.core.relay import RelayRules
from emulator.tap import Options
from emulator.profiles import loader as profiles
from emulator.quirks.faults import DelayFault
from emulator.quirks.spec import parse
from emulator.sender.host import converse
from emulator.testing.harness import Harness

RELAY = {"local_domains": ["example.test"], "relay_from": ["10.0.0.0/8"]}
TLS_INFO = {"version": "TLSv1.2", "cipher": "ECDHE-RSA-AES128-GCM-SHA256", "bits": 128, "sni": None}


def envelope(h: Harness, *recipients: bytes) -> list[bytes]:
    """EHLO, MAIL, then one RCPT per recipient: the RCPT replies."""
    h.send(b"EHLO client.example.org\r\n")
    h.send(b"MAIL FROM:<a@example.org>\r\n")
    return [h.send(b"RCPT TO:<" + r + b">\r\n") for r in recipients]


# -- relay refusal ---------------------------------------------------------------

@pytest.mark.parametrize("profile, refusal", [
    ("ims55sp4", b"550 Relaying is prohibited\r\n"),       # KB Q256856
    ("ims55sp2", b"550 Relaying is prohibited\r\n"),
    ("ims55sp1", b"550 relaying prohibited.\r\n"),         # KB Q193922
    ("ex50", b"550 Relaying is prohibited\r\n"),           # [P] as 5.5
    ("netscape-ms", b"550 Relaying denied\r\n"),           # [P] RFC wording
])
def test_relay_refused_at_rcpt_with_the_products_text(profile, refusal):
    """A local domain is taken, another domain from a peer outside relay_from gets the product's 550."""
    h = Harness(profile, **RELAY)
    h.connect()
    local, other = envelope(h, b"b@example.test", b"c@elsewhere.example")
    assert local.startswith(b"250 ") and other == refusal


def test_iis4_relay_refusal_names_the_recipient():
    """IIS 4.0 (KB Q230309): 550 Unable to relay for <address>, inside the TLS it requires."""
    h = Harness("iis4-smtp-128bit-fixed", tls_available=True, **RELAY)
    h.connect()
    h.send(b"EHLO client.example.org\r\n")
    h.send(b"STARTTLS\r\n")
    h.handshake(**TLS_INFO)
    assert envelope(h, b"c@elsewhere.example") == [b"550 Unable to relay for c@elsewhere.example\r\n"]


def test_relay_refusal_session(golden):
    """The whole session: the refused RCPT is logged as an event, the transaction goes on and delivers."""
    h = Harness("ims55sp4", **RELAY)
    h.connect()
    envelope(h, b"c@elsewhere.example", b"b@EXAMPLE.test")
    h.send(b"DATA\r\n")
    h.send(b"Subject: hi\r\n\r\nhello\r\n.\r\n")
    h.send(b"QUIT\r\n")
    assert h.messages[0].recipients == (b"b@EXAMPLE.test",)
    golden("ims55sp4/relay-refused", h.human())


def test_without_the_section_every_recipient_is_taken():
    """No relay: section, no options: any domain from any peer is accepted, as before (Q193922's default)."""
    h = Harness("ims55sp4")
    h.connect()
    assert envelope(h, b"c@elsewhere.example") == [b"250 OK - Recipient <c@elsewhere.example>\r\n"]
    assert profiles.load("ims55sp4").relay is None


@pytest.mark.parametrize("peer, allowed", [
    ("10.1.2.3", True), ("192.0.2.10", False), ("::ffff:10.0.0.7", True), ("2001:db8::1", False),
    ("not-an-address", False),
])
def test_relay_from_is_a_cidr_check_of_the_peer(peer, allowed):
    """relay_from networks allow peers inside them (an IPv4-mapped IPv6 address counts as its IPv4 one)."""
    assert RelayRules(**RELAY).refuses("c@elsewhere.example", peer) is not allowed


def test_bare_local_parts_and_percent_hacks_count_as_local():
    """A bare local part is the server's own; the domain is what follows the last @ (KB Q304897's tests)."""
    rules = RelayRules(**RELAY)
    assert not rules.refuses("postmaster", "192.0.2.10")
    assert not rules.refuses("relaytest%contoso.net@example.test", "192.0.2.10")
    assert rules.refuses("user@example.test@elsewhere.example", "192.0.2.10")


def test_authenticated_clients_relay_only_when_the_rules_say_so():
    """Q193922's RelayFlags bit 8: after AUTH LOGIN, relaying is allowed with authenticated: true only."""
    for authenticated, expected in ((False, b"550 Relaying is prohibited\r\n"),
                                    (True, b"250 OK - Recipient <c@elsewhere.example>\r\n")):
        profile = replace(profiles.load("ims55sp4"), relay=RelayRules(**RELAY, authenticated=authenticated))
        h = Harness(profile)
        h.connect()
        h.send(b"EHLO client.example.org\r\n")
        h.send(b"AUTH LOGIN dGVzdGVy\r\n")
        assert h.send(b"c2VjcmV0\r\n") == b"235 LOGIN authentication successful\r\n"
        h.send(b"MAIL FROM:<a@example.org>\r\n")
        assert h.send(b"RCPT TO:<c@elsewhere.example>\r\n") == expected


def test_refused_recipients_do_not_count_against_the_limit():
    """Only accepted recipients fill limits: recipients (the refusal is not a recipient)."""
    profile = profiles.load("ims55sp4")
    profile = replace(profile, limits=replace(profile.limits, recipients=1), relay=RelayRules(**RELAY))
    h = Harness(profile)
    h.connect()
    replies = envelope(h, b"c@elsewhere.example", b"b@example.test", b"d@example.test")
    assert replies == [b"550 Relaying is prohibited\r\n", b"250 OK - Recipient <b@example.test>\r\n",
                       b"452 Requested action not taken: Exceed Recipient Limit\r\n"]


def test_relay_section_in_a_profile_is_read_strictly(tmp_path):
    """relay: keys, networks and domains are checked when the profile loads, file:key: problem."""
    def load(section: str, replies: str = ""):
        path = tmp_path / "mybox.yaml"
        path.write_text(f"name: mybox\nextends: ims55sp4\n{replies}relay:\n{section}")
        return profiles.load(path)

    assert load("  local_domains: [Example.TEST.]\n").relay.local_domains == ("example.test",)
    cases = {
        "  relay_from: [10.0.0.1/8]\n": "mybox.yaml:relay.relay_from[0]: '10.0.0.1/8' is not ADDRESS/PREFIX",
        "  relay_from: [nowhere]\n": "mybox.yaml:relay.relay_from[0]: 'nowhere' is not ADDRESS/PREFIX",
        "  local_domains: [a b]\n": "mybox.yaml:relay.local_domains[0]: 'a b' is not a domain name",
        "  locals: [example.test]\n": "mybox.yaml:relay.locals: unknown key; did you mean local_domains? known keys: local_domains, relay_from, authenticated",
    }
    for section, error in cases.items():
        with pytest.raises(profiles.ProfileError) as caught:
            load(section)
        assert str(caught.value).startswith(f"{tmp_path}/{error}"), str(caught.value)


def test_a_profile_without_a_refusal_text_cannot_refuse(tmp_path):
    """A relay: section (or --local-domain) needs the product's relay_denied text; saying so is one line."""
    path = tmp_path / "tiny.yaml"
    path.write_text('name: tiny\nproduct: "t"\nversion: "1"\ndescribes: "t"\nhostname: "t.example"\n'
                    'commands: [HELO, MAIL, RCPT, DATA, QUIT]\nlimits: {commands: 0, bad_commands: 0, connections: 0, '
                    'text_line: 0}\nreplies:\n' + "".join(
                        f'  {name}: "{code} x"\n' for name, code in (
                            ("greeting", 220), ("unknown", 500), ("line_too_long", 500), ("helo", 250),
                            ("syntax_helo", 501), ("mail_ok", 250), ("mail_ok_size", 250), ("need_helo", 503),
                            ("nested_mail", 503), ("syntax_mail", 501), ("message_too_big", 552),
                            ("rcpt_ok", 250), ("need_mail", 503), ("syntax_rcpt", 501),
                            ("too_many_recipients", 452), ("data_start", 354), ("need_rcpt", 503),
                            ("syntax_data", 501), ("data_ok", 250), ("data_failed", 451), ("quit", 221))))
    loaded = profiles.load(path)
    with pytest.raises(ValueError, match="^profile tiny has no relay_denied reply"):
        Harness(loaded, local_domains=["example.test"])
    with path.open("a") as f:
        f.write("relay: {local_domains: [example.test]}\n")
    with pytest.raises(profiles.ProfileError) as caught:
        profiles.load(path)
    assert str(caught.value) == f"{path}:relay: needs a relay_denied reply in replies: (the product's refusal at RCPT)"


def test_relay_options_on_the_command_line():
    """--local-domain and --relay-from (repeatable) add to the profile's rules; bad ones are one line."""
    options = Options()
    options.parseOptions(["--profile", "ims55sp4", "--local-domain", "example.test", "--local-domain",
                          "example.org", "--relay-from", "10.0.0.0/8", "--relay-from", "2001:db8::/32"])
    rules = options.recipe().loaded().relay
    assert rules.local_domains == ("example.test", "example.org")
    assert rules.relay_from == ("10.0.0.0/8", "2001:db8::/32")
    for argv, message in (
            (["--relay-from", "10.0.0.1/8"], "--relay-from: '10.0.0.1/8' is not ADDRESS/PREFIX"),
            (["--local-domain", "a@b"], "--local-domain: 'a@b' is not a domain name"),
            (["--slow-banner", "soon"], "--slow-banner: 'soon' is not a number of seconds, 0 or more")):
        with pytest.raises(usage.UsageError) as caught:
            Options().parseOptions(["--profile", "ims55sp4", *argv])
        assert str(caught.value).startswith(message), str(caught.value)
    assert "--local-domain=" in str(Options()) and "--relay-from=" in str(Options())


def test_slow_banner_option_is_a_delay_before_the_greeting():
    """--slow-banner SECONDS (KB Q286375: 5 to 20 s) is the connect:delay fault: the 220 comes after it."""
    options = Options()
    options.parseOptions(["--profile", "ims55sp4", "--slow-banner", "12"])
    (fault,) = options.recipe().faults
    assert isinstance(fault, DelayFault) and fault.command == "CONNECT" and fault.seconds == 12
    h = Harness("ims55sp4", faults=[fault])
    assert h.connect().startswith(b"220 ") and h.delays == [12]


# -- STARTTLS rules of the IMS ------------------------------------------------------

def _cert_profile(**tls):
    profile = profiles.load("ims55sp4-cert")
    return replace(profile, tls=replace(profile.tls, **tls))


def test_starttls_switches_are_off_by_default():
    """Every 5.5 profile carries both switches, off: STARTTLS is listed on loopback and to any EHLO."""
    tls = profiles.load("ims55sp4-cert").tls
    assert tls.hide_on_loopback is False and tls.ehlo_domains == ()
    h = Harness("ims55sp4-cert", tls_available=True, peer=("127.0.0.1", 40000))
    h.connect()
    assert h.send(b"EHLO client.example.org\r\n").endswith(b"250 STARTTLS\r\n")


def test_no_starttls_on_loopback_by_design():
    """KB Q260065: through 127.0.0.1 STARTTLS is neither listed nor available; elsewhere it is."""
    profile = _cert_profile(hide_on_loopback=True)
    h = Harness(profile, tls_available=True, peer=("127.0.0.1", 40000))
    h.connect()
    assert h.send(b"EHLO client.example.org\r\n").endswith(b"250-AUTH=LOGIN\r\n250 XAUTH\r\n")
    assert h.send(b"STARTTLS\r\n") == b"554 Unable to initialize security subsystem\r\n"
    h = Harness(profile, tls_available=True, peer=("192.0.2.10", 1025))
    h.connect()
    assert h.send(b"EHLO client.example.org\r\n").endswith(b"250 STARTTLS\r\n")
    assert h.send(b"STARTTLS\r\n") == b"220 Ready to start TLS\r\n"


def test_starttls_listed_only_to_the_configured_ehlo_domain():
    """KB Q255753: with SSL set up per domain, only an EHLO naming that domain (or below it) gets STARTTLS."""
    profile = _cert_profile(ehlo_domains=("partner.example",))
    for helo, listed in ((b"partner.example", True), (b"mx1.Partner.Example", True),
                         (b"client.example.org", False), (b"notpartner.example", False)):
        h = Harness(profile, tls_available=True)
        h.connect()
        assert h.send(b"EHLO " + helo + b"\r\n").endswith(b"250 STARTTLS\r\n") is listed, helo


def test_ims55sp1_lists_the_tls_keyword():
    """The 5.5 SP1 documentation lists '250 TLS': with a certificate, ims55sp1 does; STARTTLS still works."""
    h = Harness("ims55sp1", tls_available=True)
    h.connect()
    assert h.send(b"EHLO client.example.org\r\n").endswith(b"250-AUTH=LOGIN\r\n250 TLS\r\n")
    assert h.send(b"STARTTLS\r\n") == b"220 Ready to start TLS\r\n"


# -- XEXCH50, banners, texts, versions ----------------------------------------------

@pytest.mark.parametrize("profile, reply", [
    ("ims55sp4", b"354 Send binary data\r\n"),               # before MS03-046 [P]
    ("ims55sp1", b"354 Send binary data\r\n"),
    ("ims55sp4-ms03-046", b"505 Authentication required\r\n"),  # KB 843106
])
def test_xexch50_without_a_login_before_and_after_ms03_046(profile, reply):
    """The public probe's XEXCH50 2 2 after MAIL and RCPT: the unpatched IMS takes it, the patched one 505s."""
    h = Harness(profile)
    h.connect()
    envelope(h, b"b@example.test")
    assert h.send(b"XEXCH50 2 2\r\n") == reply


def test_the_unpatched_ims_reads_the_xexch50_blob_without_a_login():
    """Before MS03-046 any client's XEXCH50 blob was taken (CVE-2003-0714): the announced bytes, CRLF.CRLF
    and command-like lines included, are read as the blob, not as commands; then 250 and the transaction
    goes on.  The patched IMS asks for a login first (505) and reads no blob."""
    h = Harness("ims55sp4")
    h.connect()
    envelope(h, b"b@example.test")
    assert h.send(b"XEXCH50 13 2\r\n") == b"354 Send binary data\r\n"
    assert h.send(b"QUIT\r\n.\r\nRSE") == b""  # 12 of the blob's 13 bytes: nothing answered
    assert h.send(b"TNOOP\r\n") == b"250 OK\r\n250 OK\r\n"  # its last byte, then a command
    assert [r.fields for r in h.transcript.events("xexch50_blob")] == [{"bytes": 13}]
    patched = Harness("ims55sp4-ms03-046")
    patched.connect()
    envelope(patched, b"b@example.test")
    assert patched.send(b"XEXCH50 13 2\r\nNOOP\r\n") == b"505 Authentication required\r\n250 OK\r\n"


def test_banner_with_esmtp_off():
    """KB Q194131: 'SMTP Server' with two spaces where 'E' was; EHLO then lists nothing [P]."""
    h = Harness("ims55sp4-esmtp-off")
    assert h.connect() == (b"220 mail.example.test  SMTP Server (Microsoft Exchange Internet Mail Service "
                           b"5.5.2653.13) ready\r\n")
    assert h.send(b"EHLO client.example.org\r\n") == b"250 mail.example.test Hello [192.0.2.10]\r\n"


@pytest.mark.parametrize("profile, version", [
    ("ex50", "5.0.1460.8"), ("ims55sp1", "5.5.2232.9"), ("ims55sp3", "5.5.2650.21"),
    ("ims55sp4-ms03-046", "5.5.2657.72"),
])
def test_ims_banners_carry_the_corrected_builds(profile, version):
    """KB Q257618's builds (5.0 SP2 1460.8, 5.5 SP1 2232.9, SP3 2650.21) and KB 843106's patched one."""
    assert Harness(profile).connect() == (f"220 mail.example.test ESMTP Server (Microsoft Exchange Internet "
                                          f"Mail Service {version}) ready\r\n").encode()


def test_netscape_30_session(golden):
    """Netscape Messaging Server 3.0's page: banner, bare-host EHLO list, AUTH LOGIN, MAIL with AUTH=."""
    h = Harness("netscape-ms")
    h.connect()
    h.send(b"EHLO jimi\r\n")
    h.send(b"AUTH LOGIN\r\n")
    h.send(b"dGVzdGVy\r\n")
    assert h.send(b"c2VjcmV0\r\n") == b"235 Authentication successful\r\n"
    assert h.send(b"MAIL FROM:<me@example.org> AUTH=<me@example.org>\r\n") == (
        b"250 Sender <me@example.org> and extensions (AUTH=<me@example.org>) Ok\r\n")
    h.send(b"RSET\r\n")
    assert h.send(b"MAIL FROM:<me@example.org>\r\n") == b"250 Sender <me@example.org> Ok\r\n"
    h.send(b"QUIT\r\n")
    golden("netscape-ms/auth-login-session", h.human())


def test_iis4_family_texts():
    """IIS 4.0 answers with the IIS 5/6 texts without enhanced codes ([P] by family)."""
    h = Harness("iis4-smtp-128bit-fixed", tls_available=True)
    h.connect()
    h.send(b"EHLO client.example.org\r\n")
    h.send(b"STARTTLS\r\n")
    h.handshake(**TLS_INFO)
    assert h.send(b"HELP\r\n") == (b"214-This server supports the following commands:\r\n"
                                   b"214 HELO EHLO STARTTLS RCPT DATA RSET MAIL QUIT HELP VRFY\r\n")
    assert h.send(b"RSET\r\n") == b"250 Resetting\r\n"
    envelope(h, b"b@example.test")
    h.send(b"DATA\r\n")
    assert h.send(b"Subject: x\r\n\r\nx\r\n.\r\n") == b"250 <s1.1@iis4.example.test> Queued mail for delivery\r\n"
    assert h.send(b"QUIT\r\n") == b"221 iis4.example.test Service closing transmission channel\r\n"


# -- sender switches ----------------------------------------------------------------

def test_ex50_sender_waits_five_minutes_for_a_banner():
    """KB Q175982: a banner 20 s late (a slow IMS, Q286375) is waited for; one after 301 s is not, and the
    sender drops the connection without QUIT."""
    assert converse("ex50-sender", Harness("ims55sp4", faults=[parse("connect:delay=20")])).delivered
    result = converse("ex50-sender", Harness("ims55sp4", faults=[parse("connect:delay=301")]))
    assert result.outcome.failure == "timeout"
    assert result.transcript.human() == "=== timeout\n=== banner_timeout waited=300\n=== closed\n"


def test_banner_timeout_never_is_stopped_by_the_host(tmp_path):
    """banner_timeout: never (the leak of Q175982) waits as long as the host lets it, and says so."""
    path = tmp_path / "leaky-sender.yaml"
    path.write_text(profiles.resolve("ex50-sender").read_text().replace("name: ex50-sender", "name: leaky-sender")
                    .replace("banner_timeout: 300", 'banner_timeout: "never"'))
    result = converse(path, Harness("ims55sp4", faults=[parse("connect:delay=100000")]))
    assert result.delivered  # in memory, no host timeout comes
    silent = Harness("ims55sp4", faults=[parse("connect:stall")])
    result = converse(path, silent)
    assert "=== banner_timeout waited=never note=the persona never gives up (KB Q175982); stopped by the host" \
        in result.transcript.human()


def test_rule_forwarded_message_has_an_unfolded_to_line():
    """KB Q288240: the forwarded message's To: is one line over 1,000 characters; RFC 5321's limit refuses it,
    a server without the limit takes it whole."""
    result = converse("ims55sp4-forward-sender", Harness("ims55sp4"))
    to_line = next(line for line in result.transcript.client_bytes().split(b"\r\n") if line.startswith(b"To: "))
    assert len(to_line) >= 1200 and not result.delivered
    assert result.outcome.error == "the message refused: 500 Line too long"
    profile = profiles.load("ims55sp4")
    lenient = replace(profile, limits=replace(profile.limits, text_line=0))
    assert converse("ims55sp4-forward-sender", Harness(lenient)).delivered
