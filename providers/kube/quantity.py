"""Kubernetes quantities (`500m`, `1Gi`, `2e3`) compared by value: the API server writes them back in its own
canonical form (`1024Mi` as `1Gi`, `0.5` as `500m`), so a quantity recon applies and the one it reads back are
the same when their values are."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

_SUFFIX: dict[str, Fraction] = {
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
    "Pi": Fraction(2**50), "Ei": Fraction(2**60), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000), "": Fraction(1), "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9),
    "T": Fraction(10**12), "P": Fraction(10**15), "E": Fraction(10**18)}
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
                       r"(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


def value(text: Any) -> Fraction | None:
    """The value of a quantity, or None when it is not one."""
    if not isinstance(text, str | int | float):
        return None
    m = _QUANTITY.match(str(text).strip())
    if m is None:
        return None
    number = Fraction(m.group(1))
    if m.group(2):
        return number * Fraction(10) ** int(m.group(2)[1:])
    return number * _SUFFIX[m.group(3) or ""]


def same(path: str, a: Any, b: Any) -> bool:
    """Equal, or (at a resources field) equal quantities."""
    if a == b:
        return True
    if ".resources." not in path:
        return False
    va, vb = value(a), value(b)
    return va is not None and va == vb
