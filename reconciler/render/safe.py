"""Text from specs, hosts and registries made safe to print: control characters (a newline that would
forge a plan line, an ANSI escape that would move the cursor or hide text, bidirectional overrides that
reorder what a reviewer reads) are shown as escapes, `\\n`, `\\x1b`, `\\u202e`."""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _shown(match: re.Match[str]) -> str:
    ch = match.group()
    return _NAMES.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def visible(text: str, lines: bool = False) -> str:
    """`text` with every control character escaped; with `lines`, newlines (between lines of a message) kept."""
    if lines:
        return "\n".join(_CONTROL.sub(_shown, part) for part in text.split("\n"))
    return _CONTROL.sub(_shown, text)


def esc(text: str) -> str:
    """For rich: control characters escaped, then rich's markup."""
    from rich.markup import escape

    return escape(visible(text))
