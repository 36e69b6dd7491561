"""The spec kinds users write. One explicit list: a kind exists when it is named here."""

from specs.base import API_VERSION, Envelope, KindSpec
from specs.bundle import BundleSpec
from specs.hostgroup import HostGroupSpec
from specs.hoststate import HostStateSpec
from specs.model import ModelSpec
from specs.policy import PolicySpec

KINDS: dict[str, type[KindSpec]] = {
    "Bundle": BundleSpec,
    "HostGroup": HostGroupSpec,
    "HostState": HostStateSpec,
    "Model": ModelSpec,
    "Policy": PolicySpec,
}

__all__ = ["API_VERSION", "KINDS", "Envelope", "KindSpec"]
