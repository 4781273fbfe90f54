"""The host table both labs print: aligned columns, each lab's own detail."""

from __future__ import annotations

from lab.tables import host_table

HOSTS = [
    {"name": "web-1", "role": "web", "address": "127.0.10.101", "port": 80, "state": "up"},
    {
        "name": "db-primary",
        "role": "database",
        "address": "127.0.10.51",
        "port": 3306,
        "state": "down",
    },
]


def test_every_column_starts_where_its_heading_does() -> None:
    lines = host_table(HOSTS, lambda host: f"detail of {host['name']}").splitlines()
    assert lines[0].split() == ["HOST", "ROLE", "ADDRESS", "STATE", "DETAIL"]
    for heading in ("ROLE", "ADDRESS", "STATE", "DETAIL"):
        column = lines[0].index(heading)
        for line in lines[1:]:
            assert line[column - 2 : column] == "  ", (heading, line)
            assert line[column] != " ", (heading, line)
    assert lines[2].startswith(
        "db-primary  database  127.0.10.51:3306  down   detail of db-primary"
    )
