"""Text that both stores can keep.

Not every Python string is text a database can hold: PostgreSQL's ``text`` takes no NUL character,
and a lone surrogate (``"\\ud800"``, which JSON can escape and some codecs produce) is not Unicode
at all, so UTF-8 cannot encode it and neither SQLite nor PostgreSQL can store it. Text from outside
that holds one is refused where its sender can hear why and send it again (a request body: see
:func:`flowbot.sources.webhooks.read_json`), and elsewhere kept with U+FFFD in its place (a commit
a poller reads, a worker's message), as bytes that are not UTF-8 already are.
"""

from __future__ import annotations

import re

#: A character no database keeps: NUL, or half of a surrogate pair on its own.
UNKEEPABLE = re.compile("[\x00\ud800-\udfff]")


def keepable(text: str) -> str:
    """``text`` with every character no database can keep replaced by U+FFFD."""
    return UNKEEPABLE.sub("\ufffd", text)


def why_unkeepable(text: str) -> str | None:
    """Why no database can keep ``text`` (what it holds), or None when both can."""
    found = UNKEEPABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "holds a NUL character, which PostgreSQL cannot store"
    return f"holds a lone surrogate ({found.group()!r}), which is not Unicode text and no database can store"
