"""`SettingsError`, and how a bad config value is quoted in its message.

Changes when the way a value is shown to a user changes (how long a quote may be, which
characters are escaped), not when a key or rule is added: every part of the loader, the
lab's and the tools' argument checks quote bad values through here.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

MAX_SHOWN = 60  # characters of a bad value quoted in an error; the rest is cut off


class SettingsError(ValueError):
    """One or more config values are wrong; the message says which and how to fix them."""


_SHOWN_REPR = reprlib.Repr()  # nested values (deep JSON) shown a few levels and items deep
_SHOWN_REPR.maxlevel, _SHOWN_REPR.maxdict, _SHOWN_REPR.maxlist = 2, 4, 4
_SHOWN_REPR.maxstring = _SHOWN_REPR.maxother = MAX_SHOWN


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    """`value` quoted for an error message: control, format (bidi) and other invisible
    characters escaped, cut to `limit` characters with an ellipsis and the full length.

    A bad value must be recognisable in a message, but must not flood a terminal (a 100 KB
    value), hide what follows (a right-to-left override) or break a log line (a newline)."""
    if not isinstance(value, str):  # a repr: quotes and backslashes are escaped already
        return escaped(_SHOWN_REPR.repr(value), limit)
    body = escaped(value.replace("\\", "\\\\").replace("'", "\\'"), limit, count=False)
    cut = f"… ({len(value)} characters)" if len(value) > limit else ""
    return f"'{body}'{cut}"


def escaped(text: str, limit: int = MAX_SHOWN, *, count: bool = True) -> str:
    """`text` with invisible characters escaped, cut to `limit` characters with an ellipsis."""
    body = "".join(map(_escape, text[:limit]))
    if len(text) <= limit:
        return body
    return f"{body}… ({len(text)} characters)" if count else body


def shown_key(key: Any) -> str:
    """A config key as an error names it: as it is when it is a plain key, else quoted."""
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_.:-]{1,60}", key):
        return key
    return shown(key)


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():  # False for control, format (bidi), separator and unassigned ones
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
