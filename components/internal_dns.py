"""A private Route 53 zone that gives every host a stable name inside the VPC.

Userdata refers to `web-1.<zone>` and `db-primary.<zone>` rather than to addresses, because
addresses only exist after AWS creates things. Names keep userdata fully known at preview and
let one host be replaced without rewriting (and so replacing) the hosts that talk to it.

A host's A record takes its address from the host's readiness gate, so a name points at a new
host only once it serves. HAProxy follows the web nodes' records; when they change, the update
waits (`DnsPropagationWait`) until HAProxy has followed them before any old host is deleted,
and a removed node's record is deleted first and waited for (`DnsDrain`) before the node is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.dns_propagation import (
    DnsDrain,
    DnsDrainArgs,
    DnsPropagationWait,
    DnsPropagationWaitArgs,
)

RECORD_TTL_SECONDS = 10  # short, so HAProxy and the app follow a replaced host quickly
# After a web node's record changes: the resolver's cache (TTL), HAProxy's re-resolution (1 s)
# and its hold on a vanished name (`hold nx 5s`), and a margin for requests in flight.
SWITCH_WAIT_SECONDS = RECORD_TTL_SECONDS + 1 + 5 + 4
# Hosts boot and ask for names before their records exist (RDS takes many minutes). Resolvers
# cache that "no such name" for the SOA's minimum TTL, 900 s by default in Route 53; 10 s lets
# the stack work as soon as the records appear.
NEGATIVE_CACHE_SECONDS = 10


@dataclass(frozen=True)
class InternalDnsArgs:
    zone_name: str
    vpc_id: pulumi.Input[str]


@dataclass(frozen=True)
class HostRecords:
    a_records: Mapping[str, pulumi.Input[str]]
    """Host label -> private IPv4 address (web nodes, the load balancer), from their gates."""
    followed_by_haproxy: Sequence[str]
    """The labels HAProxy sends traffic to (the web nodes): a change waits for it to follow."""
    cname_records: Mapping[str, pulumi.Input[str]]
    """Host label -> DNS name (the RDS endpoints, whose addresses RDS may change)."""


class InternalDns(pulumi.ComponentResource):
    """Made in two steps: the zone first (a tier may name its hosts in it before they boot),
    then the hosts' records with `add_records`, from their gates."""

    zone_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: InternalDnsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("web-infra:internal_dns:InternalDns", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zone = aws.route53.Zone(
            f"{name}-zone",
            name=args.zone_name,
            comment="web-infra host names, visible only inside the VPC",
            vpcs=[aws.route53.ZoneVpcArgs(vpc_id=args.vpc_id)],
            # The zone only holds records this program manages; let destroy remove them.
            force_destroy=True,
            opts=child,
        )
        # Route 53 creates the SOA with the zone; this takes it over to lower its minimum TTL.
        aws.route53.Record(
            f"{name}-soa",
            zone_id=zone.zone_id,
            name=args.zone_name,
            type="SOA",
            ttl=60,
            allow_overwrite=True,
            records=[zone.primary_name_server.apply(_soa)],
            opts=child,
        )
        self._name, self._zone_name, self._zone = name, args.zone_name, zone
        self.zone_id = zone.zone_id
        self.register_outputs({"zone_id": self.zone_id})

    def add_records(self, args: HostRecords) -> None:
        """The hosts' A records (HAProxy's followed and drained) and the CNAMEs."""
        name, zone = self._name, self._zone
        child = pulumi.ResourceOptions(parent=self)
        a_records = dict(args.a_records)
        for label in args.followed_by_haproxy:
            a_records[label] = DnsDrain(
                f"{name}-{label}-drain",
                DnsDrainArgs(host=label, address=a_records[label], seconds=SWITCH_WAIT_SECONDS),
                opts=child,
            ).address
        records = [("A", label, value) for label, value in a_records.items()]
        records += [("CNAME", label, value) for label, value in args.cname_records.items()]
        created = {}
        for record_type, label, value in records:
            created[label] = aws.route53.Record(
                f"{name}-{label}",
                zone_id=zone.zone_id,
                name=f"{label}.{self._zone_name}",
                type=record_type,
                ttl=RECORD_TTL_SECONDS,
                records=[value],
                opts=child,
            )
        DnsPropagationWait(
            f"{name}-haproxy-follows",
            DnsPropagationWaitArgs(
                records={
                    label: created[label].records.apply(lambda r: ",".join(r or []))
                    for label in args.followed_by_haproxy
                },
                seconds=SWITCH_WAIT_SECONDS,
            ),
            opts=child,
        )


def _soa(primary_name_server: str) -> str:
    """Route 53's own SOA values, with the negative-caching minimum lowered."""
    return (
        f"{primary_name_server.rstrip('.')}. awsdns-hostmaster.amazon.com. "
        f"1 7200 900 1209600 {NEGATIVE_CACHE_SECONDS}"
    )
