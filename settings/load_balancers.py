"""The load-balancer tier's shape: one HAProxy instance, or a pair sharing the public address.

Changes when the tier's shape changes. `userdata/` reads the same names, so the keepalived
config on each host names the peer the program builds.

The pair's two hosts each sit in a public subnet of their own zone. Each has a fixed private
address (the 11th of its subnet, `ADDRESS_OFFSET`), known at preview: its record in the private
zone (`load-balancer-1.<zone>`) exists before either host boots, so each host's keepalived finds
its peer by name at first boot, and a replaced host comes back at the address its peer already
sends VRRP advertisements to.
"""

from __future__ import annotations

import ipaddress

PAIR = 2
SINGLE = 1
ADDRESS_OFFSET = 10
"""AWS keeps the first four addresses of a subnet (and the last); the 11th is free and stable."""
SUBNETS_PER_VPC_SPLIT = 2
"""The VPC is cut into four equal subnets (components.network.plan_subnets): prefixlen + 2."""


def load_balancer_names(count: int) -> list[str]:
    """`load-balancer-1` (first zone), `load-balancer-2` (second zone)."""
    if count not in (SINGLE, PAIR):
        raise ValueError(f"a stack runs {SINGLE} or {PAIR} load balancers, not {count}")
    return [f"load-balancer-{i}" for i in range(1, count + 1)]


def fixed_private_ip(vpc_cidr: str, index: int) -> str:
    """The pair's host `index` (0 or 1): the 11th address of the public subnet of zone `index`,
    the subnet `components.network.plan_subnets` gives that zone."""
    blocks = list(ipaddress.IPv4Network(vpc_cidr).subnets(prefixlen_diff=SUBNETS_PER_VPC_SPLIT))
    return str(blocks[index].network_address + ADDRESS_OFFSET)


def peer_of(name: str, names: list[str]) -> str | None:
    """The other host of the pair; None for a single load balancer."""
    others = [other for other in names if other != name]
    return others[0] if others else None
