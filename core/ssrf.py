"""SSRF guard for user-supplied base URLs (model configs).

A URL is allowed when it is http(s) and every address its host resolves to is
global. Checking the name is not enough: the caller must then connect to the
address that was checked (`pin_url`), or a DNS answer that changes between the
check and the connection (rebinding) reaches an internal host. Redirects are
never followed by the callers. `ALLOW_PRIVATE_MODEL_URLS` lifts the address
rule for operators who run models on their own network.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

import httpx

from core.config import settings
from core.errors import AppError

ALLOWED_SCHEMES = ("http", "https")
# Not covered by `is_global` on every Python version; refused explicitly.
_EXTRA_BLOCKED = (
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64 spelling of IPv4 addresses
    ipaddress.ip_network("2002::/16"),  # 6to4 spelling of IPv4 addresses
)
# A DNS label as resolvers take it (RFC 1035 lengths); `_` too, as in service names on
# private networks. A host httpx left percent-encoded (a space, `%00`) never matches.
_DNS_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")
_MAX_HOST_CHARS = 253


class UnsafeURL(AppError):
    status_code = 422
    code = "validation_error"
    loc = ("body", "base_url")


@dataclass(frozen=True)
class PinnedURL:
    """A URL rewritten to a checked address, with the name for Host and TLS (SNI)."""

    url: str
    host_header: str
    sni_hostname: str


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        return False
    return not any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version)


@dataclass(frozen=True)
class ParsedURL:
    """A base URL that passed the syntax checks; `host` in its ASCII (IDNA) form."""

    url: httpx.URL
    host: str
    port: int


def _checked_host(raw_host: bytes) -> str:
    """The host if it is an IP address or a well-formed DNS name; raises UnsafeURL."""
    host = raw_host.decode("ascii", "replace")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return host
    labels = host.removesuffix(".").split(".")
    if len(host) > _MAX_HOST_CHARS or not all(map(_DNS_LABEL.fullmatch, labels)):
        raise UnsafeURL("base_url's host is not a valid host name.")
    return host


def parse_base_url(url: str) -> ParsedURL:
    """`url` checked for syntax alone (no DNS); anything malformed is an UnsafeURL."""
    try:
        parsed = httpx.URL(url)
        # `host` decodes IDNA lazily and refuses some A-labels (`xn--`): inside the try.
        has_host = bool(parsed.host)
    except (httpx.InvalidURL, ValueError) as exc:
        raise UnsafeURL("base_url is not a valid URL.") from exc
    if parsed.scheme not in ALLOWED_SCHEMES or not has_host:
        raise UnsafeURL("base_url must be an http or https URL with a host.")
    if parsed.userinfo:
        raise UnsafeURL("base_url must not carry credentials.")
    port = parsed.port if parsed.port is not None else (443 if parsed.scheme == "https" else 80)
    if not 1 <= port <= 65535:
        raise UnsafeURL("base_url's port must be between 1 and 65535.")
    return ParsedURL(parsed, _checked_host(parsed.raw_host), port)


def resolve_checked(url: str) -> list[str]:
    """The addresses of `url`'s host, all of them allowed; raises UnsafeURL otherwise.

    Blocking (DNS): the API calls it in a thread.
    """
    parsed = parse_base_url(url)
    try:
        infos = socket.getaddrinfo(parsed.host, parsed.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL("base_url's host does not resolve.") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnsafeURL("base_url's host does not resolve.")
    if not settings.allow_private_model_urls and not all(map(is_public_address, addresses)):
        raise UnsafeURL("base_url points at a private, loopback, link-local or metadata address.")
    return addresses


def pin_url(url: str) -> PinnedURL:
    """Resolve and check `url` now, and point it at the checked address."""
    parsed = parse_base_url(url)
    address = resolve_checked(url)[0]
    # The ASCII form: a Host header and an SNI name are never raw Unicode.
    host_header = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    if parsed.url.port is not None:
        host_header += f":{parsed.url.port}"
    return PinnedURL(
        url=str(parsed.url.copy_with(host=address)),
        host_header=host_header,
        sni_hostname=parsed.host,
    )
