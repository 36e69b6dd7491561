"""The registry: every provider and every provider command, in explicit lists, imported only when needed.

Each provider is registered with the optional abilities it declares (names of `contract.ABILITIES`),
so the engine knows what a provider can do without importing it (`abilities()`). A provider is
loaded once and checked once then: it must implement `contract.Provider` and exactly the abilities
it declares. Commands a provider adds to the CLI (`recon bundle …`) are named here too, so the CLI
finds them without importing any provider.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from providers.contract import Provider


@dataclass(frozen=True)
class Registration:
    path: str  # "module:Class"
    abilities: frozenset[str] = frozenset()  # the optional abilities it implements


# spec kind -> its provider
PROVIDERS: dict[str, Registration] = {
    "HostState": Registration("providers.hosts.provider:HostProvider", frozenset({"undo", "locking", "actions"})),
    "Bundle": Registration("providers.oras.provider:BundleProvider", frozenset({"locking"})),
    "Model": Registration("providers.models:ModelProvider",
                          frozenset({"orphans", "locking", "validation", "actions"})),
}

# `recon NAME …` -> "module:typer app" (a provider's own commands, e.g. pull and verify of bundles)
COMMANDS: dict[str, str] = {
    "bundle": "providers.oras.cli:bundle_app",
}


class ContractError(TypeError):
    """A registered provider does not implement the contract (a bug in recon, found when it loads)."""


_loaded: dict[str, Provider] = {}


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def provider_for(kind: str) -> Provider | None:
    """The provider of a kind, or None for kinds that only describe (like HostGroup or Policy)."""
    entry = PROVIDERS.get(kind)
    if entry is None:
        return None
    if kind not in _loaded:
        _loaded[kind] = check(_load(entry.path)(), kind, entry.abilities)
    return _loaded[kind]


def abilities(kind: str) -> frozenset[str]:
    """The optional abilities a kind's provider declares (none for kinds without one); imports nothing."""
    entry = PROVIDERS.get(kind)
    return entry.abilities if entry is not None else frozenset()


def check(provider: Any, kind: str, declared: frozenset[str]) -> Provider:
    """The provider, or ContractError naming what it lacks or what it has but does not declare."""
    from providers.contract import ABILITIES, Provider

    name = type(provider).__name__
    if not isinstance(provider, Provider) or kind not in getattr(provider, "kinds", ()):
        missing = [m for m in ("kinds", "expand", "read", "diff", "apply") if not hasattr(provider, m)]
        raise ContractError(f"{name} is registered for {kind} but does not implement the provider contract "
                            f"(missing: {', '.join(missing) or f'{kind} in kinds'})")
    has = {ability for ability, proto in ABILITIES.items() if isinstance(provider, proto)}
    if has != declared:
        raise ContractError(f"{name} declares the abilities {sorted(declared)} but implements {sorted(has)}")
    return provider


def commands() -> dict[str, Any]:
    """The providers' own command groups (typer apps), by name."""
    return {name: _load(path) for name, path in COMMANDS.items()}
