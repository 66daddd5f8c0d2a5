"""Which webhook URLs the service may call. A tenant's URL must not reach the service's own
network: loopback, private, link-local (cloud metadata at 169.254.169.254 included), unique-local
and other non-global addresses are refused, and the scheme must be https, unless
`webhook_allow_private_urls` (local testing) is set. Checked when an endpoint is saved and again,
on the resolved addresses, right before each send (a name may resolve elsewhere by then)."""

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class UnsafeUrl(ValueError):
    """The reason a URL is refused."""


def parse(url: str, *, allow_private: bool) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL; raises UnsafeUrl with the reason otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as bad:
        raise UnsafeUrl(f"not a valid URL ({bad})") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeUrl("must be an absolute https:// URL")
    if parts.scheme == "http" and not allow_private:
        raise UnsafeUrl("must use https (http is allowed only with TRAINDOCK_WEBHOOK_ALLOW_PRIVATE_URLS)")
    if parts.username or parts.password:
        raise UnsafeUrl("must not carry a user name or password")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why the service must not call `address`; None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in METADATA:
        return "a cloud metadata address"
    for reason, test in (("a loopback address", address.is_loopback), ("a link-local address", address.is_link_local),
                         ("an unspecified address", address.is_unspecified), ("a multicast address", address.is_multicast),
                         ("a private address", address.is_private), ("a reserved address", address.is_reserved),
                         ("not a public address", not address.is_global)):
        if test:
            return reason
    return None


def resolve(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The host's addresses, all of them checked: one refused address refuses the URL (a name
    with a public and a private address could be made to use either)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as failed:  # unknown name, no DNS, a NUL or an overlong label
        raise UnsafeUrl(f"host {host!r} does not resolve ({failed})") from None
    addresses = list(dict.fromkeys(info[4][0] for info in found))
    if not allow_private:
        for text in addresses:
            if (reason := refusal(ipaddress.ip_address(text.split("%")[0]))) is not None:
                raise UnsafeUrl(f"host {host!r} resolves to {text}, {reason}; webhooks may only call public addresses")
    return addresses


def check(url: str, *, allow_private: bool) -> list[str]:
    """The addresses an acceptable URL resolves to; raises UnsafeUrl otherwise."""
    _scheme, host, port = parse(url, allow_private=allow_private)
    return resolve(host, port, allow_private=allow_private)
