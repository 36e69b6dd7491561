"""Text diffs of files, as a plan shows them (host files, a bundle's files): bounded in size and lines, only
between text (UTF-8 without control characters). What may be shown at all is the provider's to say (never
sensitive content)."""

from __future__ import annotations

import re

DIFF_MAX = 64 * 1024  # bytes of a text file, old or new, that a plan shows as a diff
DIFF_LINES = 200  # lines of a diff a plan shows; the rest is counted


_BINARY = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")  # control characters that text files do not hold


def is_text(data: bytes) -> bool:
    """UTF-8 without control characters (tabs, newlines and form feeds allowed): shown as lines."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return _BINARY.search(data) is None


def unified(old: str, new: str, path: str) -> str:
    """A unified diff of a file's text (at most DIFF_LINES lines, then how many more)."""
    import difflib

    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), f"{path} (live)", f"{path} (specs)",
                                      lineterm="", n=2))
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"… {len(lines) - DIFF_LINES} more lines of the diff not shown"]
    return "\n".join(lines)
