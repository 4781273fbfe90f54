"""Where the stack runs: the region, the account and the availability zones, as AWS answers
for the deploying credentials. Looked up once, by the top-level component, and handed to every
tier that places something."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class Placement:
    """Where the stack runs, as AWS answers for the deploying credentials."""

    region: str
    account_id: str
    zones: Sequence[str]

    @staticmethod
    def look_up(parent: pulumi.Resource) -> Placement:
        invoke = pulumi.InvokeOptions(parent=parent)
        region = aws.get_region(opts=invoke).region
        account_id = aws.get_caller_identity(opts=invoke).account_id
        zones = aws.get_availability_zones(
            state="available",
            # Local Zones and Wavelength Zones need opting in and lack instance types we use.
            filters=[
                aws.GetAvailabilityZonesFilterArgs(
                    name="opt-in-status", values=["opt-in-not-required"]
                )
            ],
            opts=invoke,
        ).names
        return Placement(region, account_id, zones)
