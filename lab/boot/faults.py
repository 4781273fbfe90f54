"""Failure injection: a stand-in for AWS made unreachable from one host, on the host side.

An nftables table of the boot lab's own drops, without an answer, what one container sends to
one stand-in's address: the name still resolves and the connection times out, as when a
security group, a missing route or an outage of the endpoint stands in the way on AWS. Nothing
changes inside the container (the rule lives on this machine, where the stand-ins are), so the
userdata meets the failure exactly as it would on an instance. Each change replaces the whole
table in one nft transaction; `clear` removes it.

`cut_vrrp` cuts the load-balancer pair's VRRP (IP protocol 112) between two containers, in a
table of its own in the bridge family (their packets never reach this machine's IP stack):
a network partition between the pair while both still serve, healed by `heal_vrrp`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence

from lab.localize import LabError
from lab.processes import INSTALL, find_program

TABLE = "web_infra_boot_faults"
VRRP_TABLE = "web_infra_boot_vrrp"
VRRP = 112  # IP protocol number


def ruleset(cut_off: Mapping[str, Sequence[str]]) -> str:
    """The table for `cut_off` (a host's address -> the stand-in addresses it cannot reach)."""
    rules = [
        f"    ip saddr {host} ip daddr {stand_in} drop"
        for host, stand_ins in sorted(cut_off.items())
        for stand_in in sorted(stand_ins)
    ]
    return (
        f"table inet {TABLE} {{}}\n"
        f"delete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n"
        "  chain input {\n"
        "    type filter hook input priority filter; policy accept;\n"
        + "".join(rule + "\n" for rule in rules)
        + "  }\n"
        "}\n"
    )


def apply(cut_off: Mapping[str, Sequence[str]]) -> None:
    """Make exactly these stand-ins unreachable from exactly these hosts."""
    nft(ruleset(cut_off))


def clear() -> None:
    """Remove the table (nothing is cut off); harmless when there is none."""
    nft(f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")


def cut_vrrp(first: str, second: str) -> None:
    """Drop VRRP between the two addresses, both ways, on the bridge."""
    rules = "".join(
        f"    ip saddr {a} ip daddr {b} ip protocol {VRRP} drop\n"
        for a, b in ((first, second), (second, first))
    )
    nft(
        f"table bridge {VRRP_TABLE} {{}}\n"
        f"delete table bridge {VRRP_TABLE}\n"
        f"table bridge {VRRP_TABLE} {{\n"
        "  chain forward {\n"
        "    type filter hook forward priority filter; policy accept;\n"
        f"{rules}"
        "  }\n"
        "}\n"
    )


def heal_vrrp() -> None:
    """VRRP passes again; harmless when it was not cut."""
    nft(f"table bridge {VRRP_TABLE} {{}}\ndelete table bridge {VRRP_TABLE}\n")


def nft(script: str, what: str = "fault rules") -> None:
    """Load `script` into nftables in one transaction; `what` names the rules in an error."""
    program = find_program("nft")
    if program is None:
        raise LabError(f"nft is not installed; {INSTALL}")
    result = subprocess.run(  # noqa: S603 - the boot lab's own fixed rules
        [program, "-f", "-"], input=script, capture_output=True, text=True, timeout=10, check=False
    )
    if result.returncode != 0:
        raise LabError(f"nft refused the boot lab's {what}: {result.stderr.strip()}")
