"""How the labs' commands print a table of hosts (`python -m lab status`, `python -m lab.boot`).

Both labs describe their hosts with the same keys (`name`, `role`, `address`, `port`, `state`),
so one table serves both; each lab says what goes in the last, free-form column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

HOST_HEADER = ("HOST", "ROLE", "ADDRESS", "STATE", "DETAIL")


def columns(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        + "  "
        + row[-1]
        for row in rows
    )


def host_table(hosts: Sequence[dict[str, Any]], detail: Callable[[dict[str, Any]], str]) -> str:
    """A row per host: name, role, address:port, state and `detail(host)`."""
    rows: list[Sequence[str]] = [HOST_HEADER]
    rows += [
        (
            host["name"],
            host["role"],
            f"{host['address']}:{host['port']}",
            host["state"],
            detail(host),
        )
        for host in hosts
    ]
    return columns(rows)
