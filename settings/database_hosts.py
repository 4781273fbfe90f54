"""The database tier's shape with `dbMode: ec2`: two MariaDB hosts of the stack's own.

Changes when that tier's shape changes. `userdata/` reads the same names, so each host's
config names the primary the program builds.

`database-1` (the primary) and `database-2` (the replica) each sit in the private subnet of
their own zone, at a fixed private address known at preview: their records in the private zone
(`database-1.<zone>`) exist before either host boots, and a replaced host comes back at the
address the other already knows. The address lies in a subnet CIDR reservation of the
`explicit` kind, which AWS never hands out by itself, so no web node launched in the same
subnet can take it while a database host is away.
"""

from __future__ import annotations

import ipaddress

from settings.load_balancers import SUBNETS_PER_VPC_SPLIT
from settings.web_tier import MAX_WEB_NODES, database_connections_needed

HOSTS = ("database-1", "database-2")
"""In replacement order: the primary first, the replica after the primary serves."""
ROLES = {"database-1": "primary", "database-2": "replica"}
MAX_CONNECTIONS = database_connections_needed(MAX_WEB_NODES)
"""MariaDB's max_connections on the database's hosts (`ec2` and `colocated`): every connection
the largest web tier may open (20 nodes: 250), so a scale-out never needs a bigger limit and
never changes (and so replaces) a database host. MariaDB's default, 151, would stop at 11 nodes.
A connection's buffers are allocated while it is open: idle slots cost nothing."""
RESERVED_OFFSET = 16
"""The reservation's first address in its subnet: the 17th, a /28 boundary in any subnet of a
/24 VPC or larger, clear of AWS's first four."""
RESERVED_PREFIXLEN = 28
PRIVATE_SUBNETS_START = 2
"""`components.network.plan_subnets`: the two public subnets first, then the private ones."""


def server_id(host: str) -> int:
    """MariaDB's server_id: 1 for database-1, 2 for database-2."""
    return HOSTS.index(host) + 1


def reserved_cidr(vpc_cidr: str, index: int) -> str:
    """The explicit reservation that holds host `index`'s address in its private subnet."""
    blocks = list(ipaddress.IPv4Network(vpc_cidr).subnets(prefixlen_diff=SUBNETS_PER_VPC_SPLIT))
    start = blocks[PRIVATE_SUBNETS_START + index].network_address + RESERVED_OFFSET
    return str(ipaddress.IPv4Network(f"{start}/{RESERVED_PREFIXLEN}"))


def fixed_private_ip(vpc_cidr: str, index: int) -> str:
    """Host `index` (0 or 1): the first address of its reservation."""
    return str(ipaddress.IPv4Network(reserved_cidr(vpc_cidr, index)).network_address)
