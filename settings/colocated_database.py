"""The database tier's shape with `dbMode: colocated`: MariaDB on the web nodes themselves.

The architecture's own layout: `web-1` runs the primary next to its app, `web-2` the replica,
and every node writes to web-1's database and reads from web-2's. Changes when that layout
does. `userdata/` and the program read the same names.

web-1 and web-2 keep the web tier's zones (web-1 in the first private subnet, web-2 in the
second) and take the fixed addresses the database hosts of `dbMode: ec2` would have there
(`settings.database_hosts`: the first address of an explicit subnet CIDR reservation), so
their database names exist before they boot and a replaced node comes back where the other
already looks for it. Web nodes 3 and up are plain web nodes.
"""

from __future__ import annotations

from settings import database_hosts

HOSTS = ("web-1", "web-2")
"""In replacement order: the primary first (the web tier's canary), the replica after it serves."""
ROLES = {"web-1": "primary", "web-2": "replica"}
COLOCATED_MIN_WEB_NODES = len(HOSTS)


def server_id(host: str) -> int:
    """MariaDB's server_id: 1 for web-1, 2 for web-2."""
    return HOSTS.index(host) + 1


def reserved_cidr(vpc_cidr: str, host: str) -> str:
    """The explicit reservation holding `host`'s address, in its zone's private subnet."""
    return database_hosts.reserved_cidr(vpc_cidr, HOSTS.index(host))


def fixed_private_ip(vpc_cidr: str, host: str) -> str:
    return database_hosts.fixed_private_ip(vpc_cidr, HOSTS.index(host))
