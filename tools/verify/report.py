"""The report of `tools.verify`: one `Check` per line (check, expected, found, ok), the facts a
check is made of, and the table and summary printed at the end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

BAD = " (!)"  # marks the fact in `found` that makes a check fail
ELLIPSIS = "…"
MAX_VALUE_CHARS = 60
"""A value echoed in an error message is cut to this many characters: the outputs or an
argument can be any size (a 100 KB value would bury the message that names it)."""


def cut(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """`text`, cut to `limit` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def shorten(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """`repr(value)` (strings quoted), cut to `limit` characters with an ellipsis."""
    return cut(repr(value), limit)


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    check: str
    expected: str
    found: str
    ok: bool


@dataclass
class Facts:
    """What was found for one check, fact by fact; the check passes if every fact is good."""

    items: list[tuple[str, bool]] = field(default_factory=list)

    def add(self, text: str, ok: bool = True) -> None:
        self.items.append((text, ok))

    @property
    def ok(self) -> bool:
        return all(ok for _, ok in self.items)

    def check(self, name: str, expected: str, prefix: str = "") -> Check:
        found = ", ".join(text if ok else text + BAD for text, ok in self.items)
        return Check(name, expected, prefix + found, self.ok)


def render_table(checks: Sequence[Check]) -> str:
    """Plain-text table: check, expected, found, ok (`yes` / `NO`), columns aligned."""
    rows = [("check", "expected", "found", "ok")]
    rows += [(c.check, c.expected, c.found, "yes" if c.ok else "NO") for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[3]]))
    lines.insert(1, "  ".join("-" * w for w in [*widths, 2]))
    return "\n".join(lines)


def summary(checks: Sequence[Check]) -> str:
    failed = [c.check for c in checks if not c.ok]
    if not failed:
        return f"{len(checks)} checks, all passed"
    return f"{len(checks)} checks, {len(failed)} failed: {', '.join(failed)}"
