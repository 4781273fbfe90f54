"""How the report prints numbers and tables: one place, so every section reads alike."""

from __future__ import annotations

from collections.abc import Sequence

HEADING_WIDTH = 100
"""Where a section's heading wraps: the report reads in a terminal and in the README."""


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """First column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), *(line(row) for row in rows)])


def ms(value: float | None) -> str:
    """Milliseconds, or "-" when not measured."""
    return "-" if value is None else f"{value:.2f}"


def seconds(value: float | None) -> str:
    """A duration in a sentence; None: it never happened."""
    return "never" if value is None else f"{value:.2f} s"


def ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
