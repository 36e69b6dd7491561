"""Addresses as users write them (IPv6 among them) in the URLs recon builds."""

from __future__ import annotations


def test_a_windows_host_on_an_ipv6_address_has_a_url_that_parses() -> None:
    """`https://fd00::5:5986/wsman` is no URL (the client reached no host): an IPv6 address goes in brackets."""
    from urllib.parse import urlsplit

    from providers.hosts.model import HostInfo
    from providers.hosts.windows.transport import WinrmTransport
    from specs.hostgroup import WinrmSettings

    for address, host in (("fd00::5", "fd00::5"), ("10.0.0.5", "10.0.0.5"), ("win1.corp", "win1.corp")):
        t = WinrmTransport(HostInfo("w", "winrm", None, address=address, port=5986, winrm=WinrmSettings()))
        url = urlsplit(t.endpoint)
        assert (url.hostname, url.port, url.path) == (host, 5986, "/wsman"), t.endpoint
