"""The spec kinds users write. One explicit list: a kind exists when it is named here."""

from specs.base import API_VERSION, Envelope, KindSpec
from specs.hostgroup import HostGroupSpec
from specs.hoststate import HostStateSpec

KINDS: dict[str, type[KindSpec]] = {
    "HostGroup": HostGroupSpec,
    "HostState": HostStateSpec,
}

__all__ = ["API_VERSION", "KINDS", "Envelope", "KindSpec"]
