"""The environment's proxy, as Go's net/http (kubectl, docker, oras) takes it: providers/proxies.py."""

from __future__ import annotations

import pytest

from providers.proxies import proxy_for

ALL = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL:
        monkeypatch.delenv(name, raising=False)


def test_the_scheme_chooses_the_variable_and_loopback_never_goes_through_a_proxy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert proxy_for("https://api.github.com/repos") is None
    monkeypatch.setenv("https_proxy", "proxy.corp:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://plain.corp:8080")
    monkeypatch.setenv("ALL_PROXY", "socks5://nobody:1080")  # Go reads no ALL_PROXY
    assert proxy_for("https://api.github.com/repos") == "http://proxy.corp:3128"
    assert proxy_for("http://registry.corp:5000/v2/") == "http://plain.corp:8080"
    for url in ("http://127.0.0.1:2375", "https://127.0.0.2:6443", "http://[::1]:8080/health", "http://localhost:80",
                "https://api.localhost:6443", "http+docker://localhost/v1.41/containers/json", "unix:///x.sock"):
        assert proxy_for(url) is None, url
    monkeypatch.setenv("HTTPS_PROXY", "http://upper.corp:3128")  # the upper-case name first, as Go reads them
    assert proxy_for("https://api.github.com") == "http://upper.corp:3128"


@pytest.mark.parametrize(("no_proxy", "url", "direct"), [
    ("*", "https://anything.example", True),
    ("example.com", "https://example.com", True),
    ("example.com", "https://api.example.com:443", True),
    (".example.com", "https://api.example.com", True),
    (".example.com", "https://example.com", True),
    ("example.com", "https://notexample.com", False),
    ("10.0.0.0/8", "http://10.1.2.3:5985/wsman", True),
    ("10.0.0.0/8", "http://192.168.1.2:5985/wsman", False),
    ("192.168.1.2", "http://192.168.1.2:5985/wsman", True),
    ("registry.corp:5000", "http://registry.corp:5000/v2/", True),
    ("registry.corp:5000", "http://registry.corp:443/v2/", False),
    (" a.corp , b.corp ", "https://x.b.corp", True),
    ("[fd00::1]:443", "https://[fd00::1]/", True),
])
def test_no_proxy_as_go_reads_it(monkeypatch: pytest.MonkeyPatch, no_proxy: str, url: str, direct: bool) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("no_proxy", no_proxy)
    assert (proxy_for(url) is None) == direct

