"""Which host files a plan may show as a diff (the diff itself: providers/textdiff.py)."""

from __future__ import annotations

from providers.hosts.model import HostResource
from providers.textdiff import DIFF_MAX, is_text
from specs.hoststate import FileResource


def shows_text(desired: HostResource) -> bool:
    """Whether a change of this file's content may be shown as a diff, as far as the wanted side tells: a
    present, non-secret file whose wanted content is small text, of a spec reviewed already. The old lines come
    from the host: a spec the change under review writes could name any file there to have it printed in its own
    plan and comment, so its files change by digest and size only."""
    res, content = desired.res, desired.content
    if not isinstance(res, FileResource) or res.state != "present" or res.secret or content is None:
        return False
    if not desired.reviewed:
        return False
    return content.data is not None and content.size <= DIFF_MAX and is_text(content.data)
