"""Where artifact downloads may go: public addresses only, unless a host is allowed by name.

A provider (or whoever rewrites its replies) names the URLs a collect fetches, so a
worker must not become a proxy into its own network. The guard refuses:

* URLs that are not http(s), or that carry userinfo (``user:pass@``, which httpx would
  send as Basic auth) — checked on the first URL and on every redirect hop, by an
  httpx ``request`` event hook;
* connections to loopback, private, shared (CGNAT), link-local, multicast, reserved
  and unspecified addresses, IPv4 and IPv6, IPv4-mapped IPv6 judged by its IPv4 —
  checked on the address the socket actually connects to.

Why in the network backend: httpcore calls :meth:`GuardedBackend.connect_tcp` for
every new connection, including each redirect hop to a new origin. It resolves the
name once with :func:`socket.getaddrinfo`, checks every address, then connects to
those checked addresses itself, so a DNS answer that changes between a check and the
connect (DNS rebinding) cannot slip an internal address in; numeric forms such as
``2130706433`` or ``0x7f.1`` resolve to what the connect would use and are judged so.
TLS still verifies and sends SNI for the URL's host name: httpcore passes it to
``start_tls`` separately from the socket address.

The allow-list (``PRODUCER_DOWNLOAD_ALLOW_HOSTS``) names hosts, as ``host`` or
``host:port``, that may be reached whatever they resolve to: the local stack and the
tests add their own emulator's ``127.0.0.1:<port>``, never a whole address range.
A client with a guard has no environment proxies (``HTTP_PROXY`` and friends): the
guard would otherwise judge the proxy's address instead of the artifact's.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

from workers.storage.errors import UnsafeURLError, safe_url

__all__ = [
    "AllowList",
    "GuardedBackend",
    "allow_entry_for",
    "check_url",
    "forbidden_reason",
    "guarded_client",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class AllowList:
    """Hosts reached whatever their address: ``host`` (any port) or ``host:port`` entries."""

    hosts: frozenset[str] = frozenset()
    host_ports: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Parse ``host``, ``host:port``, ``[v6]`` and ``[v6]:port`` entries (case-insensitive)."""
        hosts: set[str] = set()
        host_ports: set[tuple[str, int]] = set()
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            host, port = _split_entry(entry)
            if port is None:
                hosts.add(host)
            else:
                host_ports.add((host, port))
        return cls(frozenset(hosts), frozenset(host_ports))

    def allows(self, host: str, port: int) -> bool:
        """Whether ``host:port`` is allowed by name."""
        name = host.strip("[]").lower()
        return name in self.hosts or (name, port) in self.host_ports


def _split_entry(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:
        host, port = entry, ""
    if port and not port.isdigit():
        raise ValueError(f"bad download allow-list entry {entry!r}: the port is not a number")
    return host, int(port) if port else None


def allow_entry_for(url: str) -> str:
    """The allow-list entry (``host:port``) of the server at ``url``, e.g. a local emulator."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def forbidden_reason(address: IPAddress) -> str | None:
    """Why ``address`` must not be fetched from (e.g. ``"loopback"``), or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return forbidden_reason(address.ipv4_mapped)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for name, hit in checks:
        if hit:
            return name
    # Shared (100.64/10), documentation, benchmarking ...: not routable on the internet.
    return None if address.is_global else "non-global"


def check_url(url: str | httpx.URL) -> None:
    """Refuse a URL that is not http(s) or that carries userinfo (the message names why)."""
    text = str(url)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURLError(f"refusing URL scheme {scheme or '(none)'!r}: only http(s) is fetched")
    if "@" in parts.netloc:
        raise UnsafeURLError(f"refusing {safe_url(text)}: credentials in a URL are not sent")
    if not parts.hostname:
        raise UnsafeURLError(f"refusing {safe_url(text)}: no host")


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's sync network backend, connecting only to checked public addresses."""

    def __init__(self, allow: AllowList) -> None:
        self._allow = allow

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Resolve ``host`` once, refuse forbidden addresses, connect to a checked one."""
        if self._allow.allows(host, port):
            return super().connect_tcp(host, port, timeout, local_address, socket_options)
        last: Exception | None = None
        for address in self._checked_addresses(host, port):
            try:
                # The IP itself, never the name again: what was checked is what is used.
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"no address to connect to for {host}")

    def _checked_addresses(self, host: str, port: int) -> list[str]:
        try:
            infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = _unique(str(info[4][0]) for info in infos)
        for text in addresses:
            reason = forbidden_reason(ipaddress.ip_address(text.split("%", 1)[0]))
            if reason is not None:
                # Every address must pass: a name with one internal answer is refused whole.
                raise UnsafeURLError(
                    f"refusing to download from {host}: it resolves to {reason} address "
                    f"{text} (allow a host by name with PRODUCER_DOWNLOAD_ALLOW_HOSTS)"
                )
        return addresses


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _check_request(request: httpx.Request) -> None:
    check_url(request.url)


def guarded_client(
    *, timeout_s: float, allow_hosts: Sequence[str] = (), max_redirects: int = 5
) -> httpx.Client:
    """An httpx client for artifact downloads that only reaches public addresses.

    ``allow_hosts`` entries (``host`` or ``host:port``) are reached whatever they
    resolve to. Redirects stay the caller's choice (``follow_redirects``); each hop is
    checked again, both its URL and the address its connection uses.
    """
    transport = httpx.HTTPTransport()
    # httpx has no public seam for the network backend; its pool is httpcore's own.
    transport._pool = httpcore.ConnectionPool(
        network_backend=GuardedBackend(AllowList.parse(allow_hosts)),
        ssl_context=httpx.create_ssl_context(),
    )
    return httpx.Client(
        timeout=timeout_s,
        transport=transport,
        trust_env=False,
        max_redirects=max_redirects,
        event_hooks={"request": [_check_request]},
    )
