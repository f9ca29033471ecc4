"""Tests of the egress policy's static rules: URL shapes, IP literal forms, address ranges."""

from __future__ import annotations

import ipaddress
import random
import re

import pytest

from shared import egress
from shared.domains import domain_allowed
from shared.egress import EgressPolicy, forbidden_reason, parse_ip_literal
from shared.errors import EgressBlocked
from shared.settings import Settings

DEFAULT = EgressPolicy()
BLOCKED = "blocked_destination"


def _fullwidth(text: str) -> str:
    """The full-width spelling of ASCII text, which IDNA maps back to ASCII."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


INVALID = "invalid_url"

BAD_URLS = [
    # Shape.
    ("ftp://example.com/", INVALID),
    ("file:///etc/passwd", INVALID),
    ("gopher://example.com:70/", INVALID),
    ("javascript:alert(1)", INVALID),
    ("//example.com/", INVALID),
    ("example.com", INVALID),
    ("http:example.com", INVALID),
    ("http:/example.com", INVALID),
    ("http:///example.com", INVALID),
    ("http://", INVALID),
    ("http://user@example.com/", INVALID),
    ("http://user:pw@example.com/", INVALID),
    ("http://example.com@127.0.0.1/", INVALID),
    ("http://127.0.0.1\\@example.com/", INVALID),
    ("http://example.com\\.127.0.0.1/", INVALID),
    ("http://example.com:22/", INVALID),
    ("http://example.com:6379/", INVALID),
    ("http://example.com:0/", INVALID),
    ("http://example.com:65536/", INVALID),
    ("http://example.com:-1/", INVALID),
    ("http://example.com:/", INVALID),
    ("http://example.com:80:80/", INVALID),
    ("http://example.com:" + _fullwidth("80") + "/", INVALID),
    ("http://example.com:0x50/", INVALID),
    ("http://" + "a" * 2050 + ".com/", INVALID),
    ("https://example.com/" + "a" * 2048, INVALID),
    ("http://exa mple.com/", INVALID),
    ("http://example.com/a b", INVALID),
    ("http://example.com/\x00", INVALID),
    ("http://example.com\x00.evil.com/", INVALID),
    ("http://example.com/\r\nHost: evil", INVALID),
    ("http://example.com\t/", INVALID),
    (" http://example.com/", INVALID),
    ("http://exa\u200bmple.com/", INVALID),
    ("http://example.com\u3000/", INVALID),
    ("http://xn--abc.com/", INVALID),
    ("http://a..b.com/", INVALID),
    ("http://example.com../", INVALID),
    ("http://.example.com/", INVALID),
    ("http://" + "a" * 64 + ".com/", INVALID),
    ("http://[::1/", INVALID),
    ("http://[::1]x/", INVALID),
    ("http://[127.0.0.1]/", INVALID),
    ("http://[v1.abc]/", INVALID),
    ("http://[fe80::1%25]/", INVALID),
    ("http://::1/", INVALID),
    ("http://%31%32%37.0.0.1/", INVALID),
    ("http://%6c%6f%63%61%6c%68%6f%73%74/", INVALID),
    ("http://127.0.0.1%2f/", INVALID),
    ("http://1.2.3.4.5/", INVALID),
    ("http://example.123/", INVALID),
    ("http://foo.0x7f/", INVALID),
    ("http://4294967296/", INVALID),
    ("http://256.0.0.1/", INVALID),
    ("http://08.0.0.1/", INVALID),
    ("http://0x1g.0.0.1/", INVALID),
    ("http://127.0.0.1:99999/", INVALID),
    # IPv4 literals in every spelling.
    ("http://127.0.0.1/", BLOCKED),
    ("http://127.0.0.1:8080/", BLOCKED),
    ("http://127.0.0.1:22/", BLOCKED),
    ("http://127.0.0.1./", BLOCKED),
    ("http://127.255.255.254/", BLOCKED),
    ("http://2130706433/", BLOCKED),
    ("http://0x7f000001/", BLOCKED),
    ("http://0X7F000001/", BLOCKED),
    ("http://0x7f.0.0.1/", BLOCKED),
    ("http://0x7f.0x0.0x0.0x1/", BLOCKED),
    ("http://0177.0.0.1/", BLOCKED),
    ("http://017700000001/", BLOCKED),
    ("http://00000177.0.0.1/", BLOCKED),
    ("http://127.1/", BLOCKED),
    ("http://127.0.1/", BLOCKED),
    ("http://0/", BLOCKED),
    ("http://0x/", BLOCKED),
    ("http://0.0.0.0/", BLOCKED),
    ("http://" + _fullwidth("127.0.0.1") + "/", BLOCKED),
    ("http://127。0。0。1/", BLOCKED),
    ("http://10.0.0.1/", BLOCKED),
    ("http://172.16.0.1/", BLOCKED),
    ("http://172.31.255.255/", BLOCKED),
    ("http://192.168.1.1/", BLOCKED),
    ("http://3232235777/", BLOCKED),
    ("http://169.254.169.254/latest/meta-data/", BLOCKED),
    ("http://0xa9fea9fe/", BLOCKED),
    ("http://100.100.100.200/", BLOCKED),
    ("http://100.64.0.1/", BLOCKED),
    ("http://198.18.0.1/", BLOCKED),
    ("http://192.0.2.1/", BLOCKED),
    ("http://224.0.0.1/", BLOCKED),
    ("http://240.0.0.1/", BLOCKED),
    ("http://255.255.255.255/", BLOCKED),
    ("http://4294967295/", BLOCKED),
    # IPv6 literals.
    ("http://[::1]/", BLOCKED),
    ("http://[0:0:0:0:0:0:0:1]/", BLOCKED),
    ("http://[::]/", BLOCKED),
    ("http://[fe80::1]/", BLOCKED),
    ("http://[fe80::1%25eth0]/", BLOCKED),
    ("http://[FE80::1%25lo]:8080/", BLOCKED),
    ("http://[fc00::1]/", BLOCKED),
    ("http://[fd12:3456::1]/", BLOCKED),
    ("http://[fec0::1]/", BLOCKED),
    ("http://[ff02::1]/", BLOCKED),
    ("http://[2001:db8::1]/", BLOCKED),
    ("http://[fd00:ec2::254]/", BLOCKED),
    ("http://[::ffff:127.0.0.1]/", BLOCKED),
    ("http://[::ffff:7f00:1]/", BLOCKED),
    ("http://[::ffff:169.254.169.254]/", BLOCKED),
    ("http://[::ffff:0.0.0.0]/", BLOCKED),
    ("http://[::127.0.0.1]/", BLOCKED),
    ("http://[::7f00:1]/", BLOCKED),
    ("http://[::8.8.8.8]/", BLOCKED),
    ("http://[64:ff9b::127.0.0.1]/", BLOCKED),
    ("http://[64:ff9b::a9fe:a9fe]/", BLOCKED),
    ("http://[64:ff9b:1::7f00:1]/", BLOCKED),
    ("http://[2002:7f00:1::]/", BLOCKED),
    ("http://[2002:a9fe:a9fe::1]/", BLOCKED),
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", BLOCKED),  # Teredo client 127.0.0.1
    ("http://[2001:0:7f00:1::1]/", BLOCKED),  # Teredo server 127.0.0.1
    ("http://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]/", BLOCKED),  # Teredo, public client
    # Internal names.
    ("http://localhost/", BLOCKED),
    ("http://LOCALHOST/", BLOCKED),
    ("http://localhost./", BLOCKED),
    ("http://localhost:8080/", BLOCKED),
    ("http://" + _fullwidth("localhost") + "/", BLOCKED),
    ("http://api.localhost/", BLOCKED),
    ("http://metadata.google.internal/computeMetadata/v1/", BLOCKED),
    ("http://METADATA.GOOGLE.INTERNAL./", BLOCKED),
    ("http://printer.local/", BLOCKED),
    ("http://box.localdomain/", BLOCKED),
    ("http://router.home.arpa/", BLOCKED),
    ("http://1.0.0.127.in-addr.arpa/", BLOCKED),
    ("http://nas.lan/", BLOCKED),
    ("http://redis/", BLOCKED),
    ("http://postgres:8080/", BLOCKED),
    ("http://Redis./", BLOCKED),
]

GOOD_URLS = [
    ("https://example.com/a?b=c", "https://example.com/a?b=c"),
    ("http://93.184.216.34:8080/", "http://93.184.216.34:8080/"),
    ("HTTPS://EXAMPLE.COM./Path", "https://example.com/Path"),
    ("http://example.com:80/", "http://example.com/"),
    ("https://example.com:8443/x#frag", "https://example.com:8443/x#frag"),
    ("https://example.com?q=1", "https://example.com/?q=1"),
    ("http://" + _fullwidth("example") + ".com/é", "http://example.com/%C3%A9"),
    ("http://bücher.de/", "http://xn--bcher-kva.de/"),
    ("http://8.8.8.8/", "http://8.8.8.8/"),
    ("http://134744072/", "http://8.8.8.8/"),
    ("http://[2606:4700:4700::1111]/", "http://[2606:4700:4700::1111]/"),
    ("http://[::ffff:8.8.8.8]/", "http://[::ffff:808:808]/"),
    ("http://[64:ff9b::8.8.8.8]/", "http://[64:ff9b::808:808]/"),
    ("http://[2002:808:808::1]/", "http://[2002:808:808::1]/"),
    ("http://my_host.example.com/", "http://my_host.example.com/"),
    ("http://0x7f.example.com/", "http://0x7f.example.com/"),
    ("http://localhost.example.com/", "http://localhost.example.com/"),
    ("http://example.com#@127.0.0.1/", "http://example.com/#@127.0.0.1/"),
    ("http://example.com/?next=http://127.0.0.1/", "http://example.com/?next=http://127.0.0.1/"),
]


@pytest.mark.parametrize(("url", "code"), BAD_URLS)
def test_check_url_refuses(url: str, code: str) -> None:
    with pytest.raises(EgressBlocked) as exc_info:
        DEFAULT.check_url(url)
    assert exc_info.value.code == code, str(exc_info.value)


@pytest.mark.parametrize(("url", "normalized"), GOOD_URLS)
def test_check_url_accepts_public(url: str, normalized: str) -> None:
    assert DEFAULT.check_url(url) == normalized
    assert DEFAULT.check_url(normalized) == normalized


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("[::127.0.0.1]", "::7f00:1"),
    ],
)
def test_parse_ip_literal(host: str, expected: str) -> None:
    assert parse_ip_literal(host) == ipaddress.ip_address(expected)


CANONICAL = [
    ("127.0.0.3", "127.0.0.3"),
    ("2130706435", "127.0.0.3"),
    ("0x7f000003", "127.0.0.3"),
    ("0177.0.0.3", "127.0.0.3"),
    ("127.3", "127.0.0.3"),
    ("127.0.0.3.", "127.0.0.3"),
    ("[::ffff:127.0.0.3]", "127.0.0.3"),
    ("::ffff:7f00:3", "127.0.0.3"),
    ("[0:0:0:0:0:ffff:7f00:3]", "127.0.0.3"),
    ("[::127.0.0.3]", "127.0.0.3"),  # IPv4-compatible
    ("::7f00:3", "127.0.0.3"),
    ("[::ffff:127.0.0.3%25eth0]", "127.0.0.3"),
    ("::1", "::1"),  # not IPv4-compatible: loopback stays IPv6
    ("::", "::"),
    ("[2001:DB8::1]", "2001:db8::1"),
    ("[fe80::1%25eth0]", "fe80::1"),
    ("64:ff9b::7f00:3", "64:ff9b::7f00:3"),  # NAT64 is another address (a translator's)
    ("Example.COM.", "example.com"),
    ("b\u00fccher.de", "xn--bcher-kva.de"),
    ("1.2.3.4.5", "1.2.3.4.5"),  # numeric but no address: compared as written
]


@pytest.mark.parametrize(("host", "expected"), CANONICAL)
def test_canonical_host(host: str, expected: str) -> None:
    assert egress.canonical_host(host) == expected


def test_canonical_ip_is_what_the_policy_judges() -> None:
    # The domain rules' canonical form and the egress policy agree on what an address is.
    for host, expected in CANONICAL[:12]:
        addr = egress.canonical_address(host)
        assert addr == ipaddress.IPv4Address(expected), host
    mapped = ipaddress.IPv6Address("::ffff:10.0.0.1")
    assert forbidden_reason(mapped) == forbidden_reason(egress.canonical_ip(mapped))


@pytest.mark.parametrize(
    ("url", "allowed", "blocked", "expected"),
    [
        ("http://[::ffff:127.0.0.3]:8080/", None, ["127.0.0.3"], False),
        ("http://[::127.0.0.3]/", None, ["127.0.0.3"], False),
        ("http://2130706435/", None, ["127.0.0.3"], False),
        ("http://127.0.0.3/", None, ["0x7f000003"], False),
        ("http://127.0.0.3/", None, ["[::ffff:7f00:3]"], False),
        ("http://127.0.0.3/", None, ["::ffff:127.0.0.3"], False),
        ("http://127.0.0.4/", None, ["127.0.0.3"], True),
        ("http://127.0.0.3/", None, ["0.3"], True),  # 0.0.0.3, not a suffix of 127.0.0.3
        ("http://127.0.0.3/", None, ["0.0.3"], True),
        ("http://[::ffff:127.0.0.1]/", ["0x7f000001"], None, True),
        ("http://127.0.0.2/", ["0x7f000001"], None, False),
        ("http://a.example.com/", None, [".Example.COM."], False),
        ("http://xn--bcher-kva.de/", None, ["b\u00fccher.de"], False),
        ("http://example.com/", ["example.com"], ["example.com"], False),
    ],
)
def test_domain_rules_compare_canonical_forms(
    url: str, allowed: list[str] | None, blocked: list[str] | None, expected: bool
) -> None:
    assert domain_allowed(url, allowed, blocked) is expected


@pytest.mark.parametrize("host", ["example.com", "localhost", "redis", "0x7f.example.com", "a1"])
def test_parse_ip_literal_hostnames(host: str) -> None:
    assert parse_ip_literal(host) is None


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.1.1.1", "1.16777216", "09", "x.0x", "[::g]"])
def test_parse_ip_literal_malformed(host: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_ip_literal(host)


FORBIDDEN_IPS = [
    "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.255",
    "100.100.100.200", "127.0.0.1", "127.255.255.255", "169.254.0.1", "169.254.169.254",
    "172.16.0.1", "172.31.255.255", "192.0.0.1", "192.0.2.1", "192.88.99.1", "192.168.0.1",
    "198.18.0.1", "198.19.255.255", "198.51.100.1", "203.0.113.1", "224.0.0.1",
    "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "::", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    "::127.0.0.1", "::8.8.8.8", "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b:1::808:808",
    "100::1", "2001::1", "2001:0:4136:e378:8000:63bf:80ff:fffe", "2001:db8::1",
    "2002:7f00:1::1", "2002:c0a8:101::1", "3fff::1", "fc00::1", "fd00:ec2::254",
    "fe80::1", "fe80::1%eth0", "febf::1", "fec0::1", "ff02::1", "ff0e::1",
]  # fmt: skip
PUBLIC_IPS = [
    "1.1.1.1", "8.8.8.8", "93.184.216.34", "172.32.0.1", "100.128.0.1", "2606:4700::1111",
    "2a00:1450:4001::1", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
]  # fmt: skip


@pytest.mark.parametrize("ip", FORBIDDEN_IPS)
def test_check_ip_forbidden(ip: str) -> None:
    with pytest.raises(EgressBlocked) as exc_info:
        DEFAULT.check_ip(ip)
    assert exc_info.value.code == BLOCKED
    assert not DEFAULT.is_ip_allowed(ip)
    assert not DEFAULT.is_ip_allowed(ipaddress.ip_address(ip))


@pytest.mark.parametrize("ip", PUBLIC_IPS)
def test_check_ip_public(ip: str) -> None:
    DEFAULT.check_ip(ip)
    DEFAULT.check_ip(ipaddress.ip_address(ip), 443)
    assert DEFAULT.is_ip_allowed(ip)
    assert forbidden_reason(ipaddress.ip_address(ip)) is None


@pytest.mark.parametrize("ip", ["2130706433", "127.1", "0x7f000001", "localhost", "", "::g"])
def test_check_ip_refuses_non_canonical(ip: str) -> None:
    with pytest.raises(EgressBlocked, match="not an IP address"):
        DEFAULT.check_ip(ip)
    assert not DEFAULT.is_ip_allowed(ip)


def test_check_ip_port() -> None:
    DEFAULT.check_ip("8.8.8.8", 8080)
    with pytest.raises(EgressBlocked, match="port 22"):
        DEFAULT.check_ip("8.8.8.8", 22)
    EgressPolicy(allow_cidrs=["8.8.8.0/24"]).check_ip("8.8.8.8", 22)


def test_allow_cidrs_opens_a_range() -> None:
    policy = EgressPolicy(allow_cidrs=["10.1.0.0/16", "fd00::/8"])
    for ip in ("10.1.2.3", "::ffff:10.1.2.3", "fd00::1"):
        policy.check_ip(ip, 6379)
        assert policy.is_ip_allowed(ip)
    for ip in ("10.2.0.1", "127.0.0.1", "169.254.169.254", "fc00::1"):
        assert not policy.is_ip_allowed(ip)
    assert policy.check_url("http://10.1.2.3:6379/x") == "http://10.1.2.3:6379/x"
    assert policy.check_url("http://0xa010203:6379/") == "http://10.1.2.3:6379/"
    assert policy.check_url("http://[::ffff:10.1.2.3]:1/") == "http://[::ffff:a01:203]:1/"
    with pytest.raises(EgressBlocked, match="forbidden") as exc_info:
        policy.check_url("http://10.2.0.1/")
    assert exc_info.value.code == BLOCKED


def test_allow_loopback() -> None:
    policy = EgressPolicy(allow_cidrs=["127.0.0.0/8"])
    assert policy.is_ip_allowed("::ffff:127.0.0.1")
    assert not policy.is_ip_allowed("::1")
    assert not policy.is_ip_allowed("::127.0.0.1")  # IPv4-compatible is not the same host
    assert not policy.is_ip_allowed("0.0.0.0")
    assert policy.check_url("http://2130706433:9999/") == "http://127.0.0.1:9999/"
    assert policy.check_url("http://localhost:9999/") == "http://localhost:9999/"
    assert policy.check_url("http://app.localhost/") == "http://app.localhost/"
    assert EgressPolicy(allow_cidrs=["::1"]).check_url("http://localhost:1/")


def test_allow_link_local_keeps_the_zone() -> None:
    policy = EgressPolicy(allow_cidrs=["fe80::/10"])
    assert policy.check_url("http://[fe80::1%25eth0]:1/x") == "http://[fe80::1%25eth0]:1/x"
    policy.check_ip("fe80::1%eth0", 1)


def test_allow_everything_still_refuses_unspecified() -> None:
    policy = EgressPolicy(allow_cidrs=["0.0.0.0/0", "::/0"])
    assert policy.is_ip_allowed("10.0.0.1")
    for ip in ("0.0.0.0", "::", "::ffff:0.0.0.0"):
        assert not policy.is_ip_allowed(ip)


def test_mapped_allow_cidr_is_ipv4() -> None:
    policy = EgressPolicy(allow_cidrs=["::ffff:10.0.0.0/104"])
    assert policy.is_ip_allowed("10.0.0.1")
    assert policy.is_ip_allowed("::ffff:10.0.0.1")
    assert not policy.is_ip_allowed("192.168.0.1")


def test_internal_names_left_to_connect_time_once_a_range_is_allowed() -> None:
    policy = EgressPolicy(allow_cidrs=["10.0.0.0/8"])
    assert policy.check_url("http://redis:8080/") == "http://redis:8080/"
    assert policy.check_url("http://svc.internal/") == "http://svc.internal/"
    with pytest.raises(EgressBlocked) as exc_info:
        policy.check_url("http://redis:6379/")
    assert exc_info.value.code == INVALID
    with pytest.raises(EgressBlocked) as exc_info:
        policy.check_url("http://localhost/")  # loopback is still not allowed
    assert exc_info.value.code == BLOCKED


def test_port_ranges() -> None:
    policy = EgressPolicy(allowed_ports=["443", " 8000-9000 "])
    assert policy.check_url("https://example.com/") == "https://example.com/"
    assert policy.check_url("http://example.com:8500/") == "http://example.com:8500/"
    for url in ("http://example.com/", "http://example.com:9001/"):
        with pytest.raises(EgressBlocked, match="port"):
            policy.check_url(url)


@pytest.mark.parametrize(
    ("cidrs", "ports"),
    [
        (["10.0.0.0/33"], ["80"]),
        (["10.0.0.1/8"], ["80"]),
        (["not-a-cidr"], ["80"]),
        ([""], ["80"]),
        ("10.0.0.0/8", ["80"]),
        ([], ["0"]),
        ([], ["65536"]),
        ([], ["http"]),
        ([], ["9000-8000"]),
        ([], ["80-"]),
        ([], ["-80"]),
        ([], ["1-2-3"]),
        ([], [""]),
        ([], "80"),
    ],
)
def test_invalid_configuration(cidrs: list[str], ports: list[str]) -> None:
    with pytest.raises(ValueError, match=r"egress|sequence"):
        EgressPolicy(allow_cidrs=cidrs, allowed_ports=ports)


def test_from_settings() -> None:
    settings = Settings(egress_allow_cidrs=["10.0.0.0/8"], egress_allowed_ports=["443", "9000"])
    policy = EgressPolicy.from_settings(settings)
    assert policy == EgressPolicy(allow_cidrs=("10.0.0.0/8",), allowed_ports=("443", "9000"))
    assert policy.is_ip_allowed("10.1.1.1")
    assert policy.check_url("http://example.com:9000/") == "http://example.com:9000/"
    assert EgressPolicy.from_settings(Settings()) == DEFAULT


def test_an_authority_checked_once_still_judges_every_url_of_it() -> None:
    """The per-authority cache keeps each URL's own checks (its characters, its path) and
    never turns a refusal into a pass."""
    policy = EgressPolicy()
    assert policy.check_url("https://Example.com/ab") == "https://example.com/ab"
    assert policy.check_url("https://Example.com/x?q=1") == "https://example.com/x?q=1"
    for _ in range(2):
        with pytest.raises(EgressBlocked) as refused:
            policy.check_url("https://example.com/a\tb")
        assert refused.value.code == "invalid_url"
        with pytest.raises(EgressBlocked) as blocked:
            policy.check_url("http://169.254.169.254/latest")
        assert blocked.value.code == "blocked_destination"
    assert policy.check_url("http://example.com/") == "http://example.com/"  # its own scheme
    with pytest.raises(EgressBlocked):
        policy.check_url("http://example.com:22/")  # its own port


PLAIN_AUTHORITIES = [
    ("http", "example.com"),
    ("https", "EXAMPLE.com.:443"),
    ("http", "bücher.example:8080"),
    ("http", "xn--bcher-kva.example"),
    ("http", "127.0.0.1:9"),
    ("https", "[::1]:8443"),
    ("http", "[fe80::1%25eth0]"),
]


def _tails() -> list[str]:
    """Paths and queries, plain or nearly: every character yarl might treat specially."""
    rng = random.Random(20261205)
    alphabet = "aZ09_~-./?=&%#+;:@!$'()*,[] é"
    tails = ["", "/", "/a.b", "/a/", "?q=1", "/?a=&b=", "/~x", "/A/B?C=D", "/.", "/..", "/a/./b"]
    tails += ["/a/../b", "//a", "/a//b", "/a?", "/a#", "/a#f", "/%7e", "/%2F", "/a?b=c d"]
    for _ in range(3000):
        tails.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24))))
        tails.append("/" + "".join(rng.choice(alphabet[:14]) for _ in range(rng.randint(0, 24))))
    return tails


def test_a_plain_path_is_written_as_yarl_would_write_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A URL whose path and query need no encoding skips yarl's round trip: the result must be
    # exactly what the round trip makes of it, for every authority shape.
    allow = ["0.0.0.0/0", "::/0"]
    fast, slow = EgressPolicy(allow_cidrs=allow), EgressPolicy(allow_cidrs=allow)
    plain = 0
    for scheme, authority in PLAIN_AUTHORITIES:
        for tail in _tails():
            url = f"{scheme}://{authority}{tail}"
            path = tail if tail.startswith("/") else "/" + tail
            plain += bool(egress._PLAIN_TAIL.fullmatch(path))
            with monkeypatch.context() as patch:
                patch.setattr(egress, "_PLAIN_TAIL", re.compile(r"(?!)"))  # never plain
                try:
                    expected: str | None = slow._check_url(url)
                except EgressBlocked:
                    expected = None
            try:
                got: str | None = fast._check_url(url)
            except EgressBlocked:
                got = None
            assert got == expected, url
    assert plain > 2000  # the fast path was taken, often
