"""The site's public DNS name: an A record in a public Route 53 zone, at the Elastic IP.

Optional (`publicZoneId`): when the domain's DNS is managed elsewhere, point the name at the
`load_balancer_public_ip` output there. The record follows the Elastic IP, which outlives load
balancer replacements, so it changes only if the address itself does. The certificate needs it:
the ACME CA resolves the domain and asks this address for the HTTP-01 answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

RECORD_TTL_SECONDS = 300


@dataclass(frozen=True)
class SiteRecordArgs:
    zone_id: str
    """A public hosted zone that holds `domain` (the zone of example.com for www.example.com)."""
    domain: str
    public_ip: pulumi.Input[str]
    """The load balancer's Elastic IP."""


class SiteRecord(pulumi.ComponentResource):
    fqdn: pulumi.Output[str]

    def __init__(
        self, name: str, args: SiteRecordArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("web-infra:site_record:SiteRecord", name, None, opts)
        record = aws.route53.Record(
            f"{name}-a",
            zone_id=args.zone_id,
            name=args.domain,
            type="A",
            ttl=RECORD_TTL_SECONDS,
            records=[args.public_ip],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.fqdn = record.fqdn
        self.register_outputs({"fqdn": self.fqdn})
