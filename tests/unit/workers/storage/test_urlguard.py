"""The download guard's address policy, allow-list and connect-what-was-checked backend."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpcore
import pytest

from workers.settings import Settings
from workers.storage import UnsafeURLError
from workers.storage.urlguard import (
    AllowList,
    GuardedBackend,
    allow_entry_for,
    check_url,
    forbidden_reason,
)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-global"),  # shared address space (CGNAT)
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_forbidden_addresses(address: str, reason: str | None) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://cdn.example/a.mp3", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("http://user:pw@cdn.example/a.mp3", "credentials"),
        ("http://user@cdn.example/a.mp3", "credentials"),
        ("http:///a.mp3", "no host"),
    ],
)
def test_check_url_refuses(url: str, words: str) -> None:
    with pytest.raises(UnsafeURLError, match=words) as refused:
        check_url(url)
    assert "pw" not in str(refused.value)


def test_allow_list_entries() -> None:
    allow = AllowList.parse(["Emulator.local", "127.0.0.1:8787", "[::1]:9000", " ", "::2"])
    assert allow.allows("emulator.local", 1)
    assert allow.allows("127.0.0.1", 8787)
    assert not allow.allows("127.0.0.1", 6379)  # a port entry allows that port only
    assert allow.allows("[::1]", 9000) and allow.allows("::2", 80)
    assert allow_entry_for("http://127.0.0.1:5000/x") == "127.0.0.1:5000"
    assert allow_entry_for("https://[::1]/x") == "[::1]:443"
    with pytest.raises(ValueError, match="port"):
        AllowList.parse(["host:http"])


def test_allow_hosts_setting_is_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCER_DOWNLOAD_ALLOW_HOSTS", "cdn.internal, 127.0.0.1:8787")
    assert Settings().download_allow_hosts == ["cdn.internal", "127.0.0.1:8787"]


def test_backend_connects_to_the_address_it_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding: whatever the name resolves to later, the socket goes to the checked IP.
    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80))]])
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: next(answers))
    connected: list[str] = []

    def fake_connect(self: Any, host: str, port: int, *args: Any) -> Any:
        connected.append(host)
        return object()

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", fake_connect)
    GuardedBackend(AllowList()).connect_tcp("rebind.example", 80)
    assert connected == ["93.184.216.34"]


def test_backend_refuses_a_name_with_any_internal_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    infos = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 80)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: infos)
    with pytest.raises(UnsafeURLError, match=r"private address 10\.0\.0\.5"):
        GuardedBackend(AllowList()).connect_tcp("two-faced.example", 80)
