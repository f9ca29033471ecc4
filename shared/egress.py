"""The egress policy: which destinations outbound requests may reach (SSRF protection).

`check_url` runs before a URL is requested (at submit time and on every redirect hop) and
refuses bad shapes (`invalid_url`) and destinations the URL alone shows to be internal
(`blocked_destination`). `check_ip` runs at connect time on every resolved address, so a
DNS answer that changes after `check_url` (rebinding) still cannot reach a forbidden
address; it is the authoritative check. Decisions:
- Forbidden unless inside `allow_cidrs`: addresses that are not `is_global`, the explicit
  tables below, and IPv6 transition addresses embedding a forbidden IPv4. IPv4-mapped
  addresses are judged as their IPv4; ::/8 (IPv4-compatible etc.), 64:ff9b:1::/48 and
  Teredo are refused whole. 0.0.0.0 and :: are refused even when allowed (they reach
  this host).
- Internal names (localhost, single labels, .local, .internal, .localdomain, .arpa, .lan,
  .home, .corp, .intranet, .private) are refused. Once `allow_cidrs` is set, names other
  than localhost are left to `check_ip`, which sees their addresses; localhost and
  *.localhost pass only while loopback (127.0.0.1 or ::1) is allowed.
- Ports must be in `allowed_ports`, except for IP literals inside `allow_cidrs` and for
  localhost while loopback is allowed: the operator trusted those destinations.
- Percent-encoded hosts are refused, never decoded. Hosts go through IDNA (UTS 46, as yarl
  does for aiohttp) first, so full-width digits, case and a trailing dot change nothing.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from yarl import URL

from shared.errors import EgressBlocked

if TYPE_CHECKING:
    from shared.settings import Settings

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 2048
DEFAULT_ALLOWED_PORTS: tuple[str, ...] = ("80", "443", "8080", "8443")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_INTERNAL_SUFFIXES = (
    "localhost", "local", "internal", "localdomain", "arpa",
    "lan", "home", "corp", "intranet", "private",
)  # fmt: skip
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
_HOST_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)", re.DOTALL)
_ZONE = re.compile(r"[A-Za-z0-9._~-]+")


def _table(text: str) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]:
    rows = (row.split("=", 1) for row in text.split(";"))
    return tuple((ipaddress.ip_network(net.strip()), label.strip()) for net, label in rows)


# CIDR=label; metadata first so the message names the worst case. is_global backs these up.
_V4_BLOCKS = _table(
    "169.254.169.254/32=cloud metadata; 100.100.100.200/32=cloud metadata (Alibaba);"
    "0.0.0.0/8='this network'; 10.0.0.0/8=private network; 172.16.0.0/12=private network;"
    "192.168.0.0/16=private network; 100.64.0.0/10=shared address space; 127.0.0.0/8=loopback;"
    "169.254.0.0/16=link-local; 192.0.0.0/24=IETF protocol assignments;"
    "192.0.2.0/24=documentation; 198.51.100.0/24=documentation; 203.0.113.0/24=documentation;"
    "192.88.99.0/24=6to4 relay anycast; 198.18.0.0/15=benchmarking; 224.0.0.0/4=multicast;"
    "240.0.0.0/4=reserved"
)
_V6_BLOCKS = _table(
    "fd00:ec2::254/128=cloud metadata; ::1/128=loopback; 64:ff9b:1::/48=local-use NAT64;"
    "::/8=reserved (incl. IPv4-compatible); 100::/64=discard-only; 2001::/32=Teredo;"
    "2001::/23=IETF protocol assignments; 2001:db8::/32=documentation; 3fff::/20=documentation;"
    "5f00::/16=SRv6 SIDs; fc00::/7=unique local; fe80::/10=link-local; fec0::/10=site-local;"
    "ff00::/8=multicast"
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _parse_ipv4_part(part: str) -> int:
    if part.startswith("0x"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part[1:], 8)  # inet_aton reads a leading zero as octal
    return int(part, 10)


def _parse_ipv4(host: str) -> ipaddress.IPv4Address:
    """Parse an IPv4 address the way inet_aton and browsers do (hex, octal, 1-4 parts)."""
    parts = host.split(".")
    valid = 1 <= len(parts) <= 4 and all(_NUMERIC_LABEL.fullmatch(p) for p in parts)
    try:
        nums = [_parse_ipv4_part(p) for p in parts] if valid else []
    except ValueError:  # an octal part with an 8 or 9
        nums = []
    if not nums or any(n > 255 for n in nums[:-1]) or nums[-1] >= 256 ** (5 - len(nums)):
        raise ValueError(f"{host!r} is not a valid IPv4 address")
    value = nums[-1] + sum(n << (8 * (3 - i)) for i, n in enumerate(nums[:-1]))
    return ipaddress.IPv4Address(value)


def _split_zone(text: str) -> tuple[str, str]:
    addr, sep, zone = text.partition("%")
    if sep and zone.startswith("25"):
        zone = zone[2:]  # in a URL the zone separator is written %25
    if sep and not _ZONE.fullmatch(zone):
        raise ValueError(f"invalid IPv6 zone id in {text!r}")
    return addr, zone


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address `host` denotes if it is an IP literal in any form, else None.

    Understands dotted quads, integers, hex, octal and short forms (`127.1`), and IPv6 with
    or without brackets and zone ids (dropped). Raises ValueError for a host that looks
    numeric but is no valid address (`1.2.3.4.5`, `0x1g`): resolvers disagree on those.
    """
    text = host.lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    elif text.endswith("."):
        text = text[:-1]
    if ":" in text:
        return ipaddress.IPv6Address(_split_zone(text)[0])
    if _NUMERIC_LABEL.fullmatch(text.rpartition(".")[2]):
        return _parse_ipv4(text)
    return None


def _unscoped(addr: IPAddress) -> IPAddress:
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        return ipaddress.IPv6Address(int(addr))
    return addr


_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def canonical_ip(addr: IPAddress) -> IPAddress:
    """The one form of an address that rules compare: IPv4-mapped (::ffff:a.b.c.d) and
    IPv4-compatible (::a.b.c.d, but not :: or ::1) IPv6 as the IPv4 address, without zone."""
    addr = _unscoped(addr)
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr in _V4_COMPATIBLE and int(addr) > 1:
            return ipaddress.IPv4Address(int(addr))
    return addr


def canonical_address(host: str) -> IPAddress | None:
    """The canonical address (`canonical_ip`) if `host` is an IP literal in any spelling
    `parse_ip_literal` reads (2130706435, 0x7f000003, 0177.0.0.3, 127.3, [::ffff:7f00:3]),
    else None (a name, or something numeric that is no address)."""
    try:
        addr = parse_ip_literal(host.strip())
    except ValueError:
        return None
    return None if addr is None else canonical_ip(addr)


def canonical_host(host: str) -> str:
    """A host as rules compare it: an IP literal as its canonical address, a name in lower
    case and IDNA (punycode) form without a trailing dot."""
    addr = canonical_address(host)
    if addr is not None:
        return str(addr)
    name = host.strip().lower().rstrip(".")
    if not name.isascii():
        with contextlib.suppress(ValueError):  # not a valid IDNA name: compared as written
            name = URL.build(scheme="http", host=name).raw_host or name  # IDNA as aiohttp does
        addr = canonical_address(name)  # full-width digits, now ASCII
        if addr is not None:
            return str(addr)
    return name


def _v4_reason(addr: ipaddress.IPv4Address) -> str | None:
    for net, label in _V4_BLOCKS:
        if addr in net:
            return label
    return None if addr.is_global else "not globally routable"


def forbidden_reason(addr: IPAddress) -> str | None:
    """Why `addr` is forbidden by default (ignoring any allow list), or None if public."""
    addr = _unscoped(addr)
    if isinstance(addr, ipaddress.IPv4Address):
        return _v4_reason(addr)
    if addr.ipv4_mapped is not None:
        return _v4_reason(addr.ipv4_mapped)
    embedded: list[ipaddress.IPv4Address] = []
    if addr in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    elif addr.sixtofour is not None:
        embedded.append(addr.sixtofour)
    elif addr.teredo is not None:
        embedded.extend(addr.teredo)  # (server, client); the client is de-obfuscated
    for v4 in embedded:
        if (reason := _v4_reason(v4)) is not None:
            return f"embeds {v4}, {reason}"
    if addr in _NAT64 or addr.sixtofour is not None:
        return None  # a public IPv4 behind a translator is as public as the IPv4
    for net, label in _V6_BLOCKS:
        if addr in net:
            return label
    return None if addr.is_global else "not globally routable"


def _parse_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        net = ipaddress.ip_network(text.strip())
    except ValueError as exc:
        raise ValueError(f"invalid egress allow CIDR {text!r}: {exc}") from None
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:  # ::ffff:a.b.c.d/n is the IPv4 range a.b.c.d/(n-96)
            return ipaddress.IPv4Network(f"{mapped}/{net.prefixlen - 96}")
    return net


def _parse_port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.strip().partition("-")
    if low.isdecimal() and (high.isdecimal() or not sep):
        lo, hi = int(low), int(high or low)
        if 1 <= lo <= hi <= 65535:
            return lo, hi
    raise ValueError(
        f"invalid egress port entry {text!r}: expected a port like 8080 or a range like "
        "8000-9000, within 1-65535"
    )


def _coerce(ip: str | IPAddress) -> IPAddress:
    return ipaddress.ip_address(ip) if isinstance(ip, str) else ip


def _blocked(message: str) -> EgressBlocked:
    return EgressBlocked(message, code="blocked_destination")


def _invalid(message: str) -> EgressBlocked:
    return EgressBlocked(message, code="invalid_url")


PASSED_CACHE_SIZE = 4096


@dataclass(frozen=True)
class EgressPolicy:
    """Where outbound requests may go: public addresses on `allowed_ports`, plus `allow_cidrs`.

    Invalid CIDRs or port entries raise ValueError here, at construction.
    """

    allow_cidrs: Sequence[str] = ()
    allowed_ports: Sequence[str] = DEFAULT_ALLOWED_PORTS
    _v4: tuple[ipaddress.IPv4Network, ...] = field(init=False, repr=False, compare=False)
    _v6: tuple[ipaddress.IPv6Network, ...] = field(init=False, repr=False, compare=False)
    _ports: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)
    # URLs that passed `check_url`, with their normal form: a policy never changes, and
    # batches and crawls check the same URLs over and over.
    _passed: dict[str, str] = field(init=False, repr=False, compare=False)
    _authorities: dict[tuple[str, str], tuple[str, int, IPAddress | None, str]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for name in ("allow_cidrs", "allowed_ports"):
            if isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a sequence of strings, not a string")
        cidrs, ports = tuple(self.allow_cidrs), tuple(self.allowed_ports)
        nets = [_parse_cidr(c) for c in cidrs]
        # Frozen dataclass: __setattr__ is blocked, so derived fields go through object.
        object.__setattr__(self, "allow_cidrs", cidrs)
        object.__setattr__(self, "allowed_ports", ports)
        object.__setattr__(self, "_v4", tuple(n for n in nets if n.version == 4))
        object.__setattr__(self, "_v6", tuple(n for n in nets if n.version == 6))
        object.__setattr__(self, "_ports", tuple(_parse_port_range(p) for p in ports))
        object.__setattr__(self, "_passed", {})
        object.__setattr__(self, "_authorities", {})

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        """The policy configured by OUTRIDER_EGRESS_ALLOW_CIDRS and ..._ALLOWED_PORTS."""
        return cls(settings.egress_allow_cidrs, settings.egress_allowed_ports)

    def _in_allowlist(self, addr: IPAddress) -> bool:
        addr = _unscoped(addr)
        if isinstance(addr, ipaddress.IPv6Address):
            if addr.ipv4_mapped is not None and self._in_allowlist(addr.ipv4_mapped):
                return True
            return any(addr in net for net in self._v6)
        return any(addr in net for net in self._v4)

    def _port_allowed(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self._ports)

    def _block_reason(self, addr: IPAddress) -> str | None:
        plain = _unscoped(addr)
        if plain.is_unspecified or (
            isinstance(plain, ipaddress.IPv6Address)
            and plain.ipv4_mapped is not None
            and plain.ipv4_mapped.is_unspecified
        ):
            return "unspecified (it reaches this host)"
        return None if self._in_allowlist(plain) else forbidden_reason(plain)

    def is_ip_allowed(self, ip: str | IPAddress) -> bool:
        """Whether a connection to `ip` is allowed (ports aside); False for non-addresses."""
        try:
            return self._block_reason(_coerce(ip)) is None
        except ValueError:
            return False

    def check_ip(self, ip: str | IPAddress, port: int | None = None) -> None:
        """Connect-time check of a resolved address; raises EgressBlocked if forbidden."""
        try:
            addr = _coerce(ip)  # strict: resolvers hand back canonical addresses only
        except ValueError:
            raise _blocked(f"resolved address {ip!r} is not an IP address") from None
        if (reason := self._block_reason(addr)) is not None:
            raise _blocked(f"destination {addr} is forbidden: {reason}")
        if port is not None and not self._port_allowed(port) and not self._in_allowlist(addr):
            raise _blocked(f"destination port {port} is not allowed")

    def _check_name(self, name: str) -> bool:
        """Refuse internal names; True when the name's port is free (trusted localhost)."""
        suffix = next((s for s in _INTERNAL_SUFFIXES if name == s or name.endswith("." + s)), "")
        if suffix == "localhost":
            if not (self.is_ip_allowed("127.0.0.1") or self.is_ip_allowed("::1")):
                raise _blocked(f"host {name!r} is loopback")
            return True
        if (suffix or "." not in name) and not (self._v4 or self._v6):
            raise _blocked(f"host {name!r} is an internal name")
        return False

    def check_url(self, url: str) -> str:
        """Check a URL before requesting it; returns it normalized, raises EgressBlocked."""
        normal = self._passed.get(url)
        if normal is None:
            normal = self._check_url(url)
            if len(self._passed) >= PASSED_CACHE_SIZE:
                self._passed.clear()
            self._passed[url] = normal
        return normal

    def _check_url(self, url: str) -> str:
        if len(url) > MAX_URL_LENGTH:
            raise _invalid(f"URL is longer than {MAX_URL_LENGTH} characters")
        if _has_space_or_control(url):
            raise _invalid("URL contains whitespace or control characters")
        match = _SCHEME.fullmatch(url)
        scheme = match.group(1).lower() if match else ""
        if not match or scheme not in _DEFAULT_PORTS:
            raise _invalid("URL scheme must be http or https")
        rest = match.group(2)
        if not rest.startswith("//"):
            raise _invalid("URL has no host")
        # The authority ends at the first / ? or #; browsers also end it at a backslash.
        authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
        tail = rest[2 + len(authority) :]
        key = (scheme, authority)
        checked = self._authorities.get(key)
        if checked is None:
            checked = self._check_authority(scheme, authority)
            if len(self._authorities) >= PASSED_CACHE_SIZE:
                self._authorities.clear()
            self._authorities[key] = checked
        name, port, ip, prefix = checked
        if not tail.startswith("/"):
            tail = "/" + tail
        if _PLAIN_TAIL.fullmatch(tail):
            # Nothing for yarl to encode, decode or remove: the URL is what it would make of it.
            normalized = prefix + tail
            if len(normalized) > MAX_URL_LENGTH:
                raise _invalid(f"URL is longer than {MAX_URL_LENGTH} characters")
            return normalized
        return _rebuild(scheme, name, port, tail, ip)

    def _check_authority(
        self, scheme: str, authority: str
    ) -> tuple[str, int, IPAddress | None, str]:
        """The host (normalized), port and IP literal of an authority the policy accepts, and
        the URL's start as yarl writes it (scheme://host[:port]). The same for every URL of the
        authority: a batch of one site's pages checks it once."""
        if "\\" in authority:
            raise _invalid("URL authority contains a backslash")
        if "@" in authority:
            raise _invalid("URL must not contain credentials (userinfo)")
        if authority.startswith("["):
            host, bracket, after = authority[1:].partition("]")
            if not bracket or (after and not after.startswith(":")):
                raise _invalid("URL has a malformed IPv6 address")
            port_text, bracketed, has_port = after[1:], True, bool(after)
        else:
            host, colon, port_text = authority.partition(":")
            bracketed, has_port = False, bool(colon)
        if not host:
            raise _invalid("URL has no host")
        digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
        port = (int(port_text) if digits else 0) if has_port else _DEFAULT_PORTS[scheme]
        if not 1 <= port <= 65535:
            raise _invalid(f"URL port {port_text!r} is not a port number")

        zone = ""
        if bracketed:
            try:
                addr, zone = _split_zone(host)
                ip: IPAddress | None = ipaddress.IPv6Address(addr)
            except ValueError:
                raise _invalid(f"invalid IPv6 address [{host}]") from None
            name = f"{ip}%25{zone}" if zone else str(ip)
        else:
            if "%" in host:
                raise _invalid("percent-encoded hosts are not allowed")
            try:
                built = URL.build(scheme="http", host=host)  # IDNA exactly as aiohttp does
                name = built.raw_host or ""
                valid = built.host is not None  # decoding back catches bad punycode labels
            except ValueError:  # includes UnicodeError
                valid = False
            if not valid:
                raise _invalid(f"invalid host {host!r} (not valid IDNA)")
            name = name.lower().removesuffix(".")
            if len(name) > 253 or not all(_HOST_LABEL.fullmatch(p) for p in name.split(".")):
                raise _invalid(f"invalid host {host!r}")
            try:
                ip = parse_ip_literal(name)
            except ValueError as exc:
                raise _invalid(str(exc)) from None
            if ip is not None:
                name = str(ip)

        if ip is not None:
            if (reason := self._block_reason(ip)) is not None:
                raise _blocked(f"destination {ip} is forbidden: {reason}")
            port_free = self._in_allowlist(ip)
        else:
            port_free = self._check_name(name)
        if not port_free and not self._port_allowed(port):
            raise _invalid(f"port {port} is not allowed")
        # The authority ends where the path starts, so what yarl reads from it does not depend
        # on the rest of the URL.
        prefix = _rebuild(scheme, name, port, "/", ip).removesuffix("/")
        return name, port, ip, prefix


# ASCII whitespace and control characters (categories Cc and Zs): U+0000-U+0020 and U+007F.
_ASCII_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def _has_space_or_control(url: str) -> bool:
    """Whitespace, or a character of Unicode category C (control, format, unassigned...) or Z
    (separators). One regex search for ASCII URLs, the common case; a scan otherwise."""
    if url.isascii():
        return _ASCII_SPACE_OR_CONTROL.search(url) is not None
    return any(c.isspace() or unicodedata.category(c)[0] in "CZ" for c in url)


# A path (and query) that yarl leaves exactly as it is: unreserved characters only, no empty,
# `.` or `..` segment, a query of unreserved characters, `=` and `&`, no fragment.
_PLAIN_TAIL = re.compile(r"(?:/[A-Za-z0-9_~-]+(?:\.[A-Za-z0-9_~-]+)*)*/?(?:\?[A-Za-z0-9_.~=&-]+)?")


def _rebuild(scheme: str, name: str, port: int, tail: str, ip: IPAddress | None) -> str:
    """Reassemble the URL, then make sure yarl (what aiohttp uses) reads it alike."""
    netloc = f"[{name}]" if isinstance(ip, ipaddress.IPv6Address) else name
    if port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    if not tail.startswith("/"):
        tail = "/" + tail
    try:
        parsed = URL(f"{scheme}://{netloc}{tail}")
        same = (parsed.raw_host, parsed.port, parsed.user) == (name, port, None)
        same = same and parsed.host is not None  # decoding catches invalid IDNA labels
        normalized = str(parsed)
    except ValueError:
        raise _invalid("URL cannot be parsed") from None
    if not same:
        raise _invalid("URL is ambiguous")
    if len(normalized) > MAX_URL_LENGTH:
        raise _invalid(f"URL is longer than {MAX_URL_LENGTH} characters")
    return normalized
