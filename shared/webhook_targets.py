"""Where webhooks may be sent: the SSRF guard shared by every submission path (HTTP gateway, CLI, Python
client) and re-applied by the worker before each delivery.

A webhook URL is user input that makes *our* servers send requests, so by default it must point at the
public internet: the host is resolved and **every** address it resolves to must be globally routable —
loopback (127/8, ::1), private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16 — cloud
metadata —, fe80::/10), shared (100.64/10), multicast, reserved and unspecified addresses are refused, as are
IPv4-mapped IPv6 forms of them. `webhooks.allow_private_targets = true` lifts the rule (development, an
internal receiver). The worker checks again at delivery time, so a name that later re-resolves to a private
address (DNS rebinding) is refused then too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import urlsplit

from shared.errors import InputError

Resolver = Callable[[str, int], list[str]]
CODE = "webhook_target_refused"


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _refused(url: str, why: str) -> InputError:
    return InputError(f"webhook URL {url!r} refused: {why}", code=CODE)


def _not_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def check_webhook_url(url: str, *, allow_private: bool = False, resolver: Resolver | None = None) -> None:
    """Raise `InputError(code="webhook_target_refused")` when `url` may not receive webhooks."""
    if len(url) > 2048:
        raise _refused(url[:64] + "…", "longer than 2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise _refused(url, f"not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https"):
        raise _refused(url, "the scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise _refused(url, "credentials in the URL are not allowed (they would be stored and logged)")
    host = parts.hostname
    if not host:
        raise _refused(url, "it names no host")
    if allow_private:
        return
    addresses = _addresses(url, host, port or (443 if parts.scheme == "https" else 80), resolver)
    for ip in addresses:
        if _not_public(ip):
            raise _refused(
                url,
                f"{host} resolves to {ip}, a loopback, private, link-local or otherwise non-public address "
                "(set webhooks.allow_private_targets = true to allow internal receivers)",
            )


def _addresses(
    url: str, host: str, port: int, resolver: Resolver | None
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass  # a name: resolve it
    try:
        resolved = (resolver or system_resolver)(host, port)
    except (OSError, UnicodeError) as e:
        raise _refused(url, f"host {host!r} does not resolve ({e})") from None
    addresses = []
    for a in resolved:
        try:
            addresses.append(ipaddress.ip_address(a.split("%", 1)[0]))
        except ValueError:
            raise _refused(url, f"host {host!r} resolved to an unparseable address {a!r}") from None
    if not addresses:
        raise _refused(url, f"host {host!r} does not resolve")
    return addresses


class WebhookTargetGuard:
    """`check_webhook_url` with the config's rule and a short memo of accepted URLs, for validating many lines
    (a 50,000-line batch naming one receiver resolves it once, not 50,000 times). Accepted URLs are
    re-checked after `ttl_s`, so a long-lived producer (the gateway) notices a name that moved."""

    def __init__(
        self, *, allow_private: bool, resolver: Resolver | None = None, memo_size: int = 1024, ttl_s: float = 60.0
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self.ttl_s = ttl_s
        self._ok: OrderedDict[str, float] = OrderedDict()
        self._memo_size = memo_size

    def check(self, url: str) -> None:
        checked_at = self._ok.get(url)
        if checked_at is not None and time.monotonic() - checked_at < self.ttl_s:
            return
        check_webhook_url(url, allow_private=self.allow_private, resolver=self.resolver)
        self._ok[url] = time.monotonic()
        while len(self._ok) > self._memo_size:
            with contextlib.suppress(KeyError):  # another thread may be trimming too
                self._ok.popitem(last=False)
