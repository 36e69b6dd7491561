"""Providers, registered in one explicit dict: spec kind -> "module:Class", imported only when needed."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.provider import Provider

PROVIDERS: dict[str, str] = {
    "HostState": "providers.hosts.provider:HostProvider",
    "Bundle": "providers.oras.provider:BundleProvider",
    "Model": "providers.models:ModelProvider",
}

_loaded: dict[str, Provider] = {}


def provider_for(kind: str) -> Provider | None:
    """The provider of a kind, or None for kinds that only describe (like HostGroup)."""
    path = PROVIDERS.get(kind)
    if path is None:
        return None
    if path not in _loaded:
        module, _, cls = path.partition(":")
        _loaded[path] = getattr(importlib.import_module(module), cls)()
    return _loaded[path]
