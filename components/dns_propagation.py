"""Give HAProxy time to follow a DNS switch before `pulumi up` deletes the hosts it replaced.

Pulumi deletes replaced and removed resources at the end of an update. When a web node's record
changes, HAProxy still sends requests to the old address until the VPC resolver's cached answer
expires (the record's TTL) and HAProxy re-resolves the name (every second). This resource's
update sleeps through that window whenever the web nodes' records change, so every old host is
deleted only after HAProxy stopped using it. On a new stack nothing is replaced: no sleep.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic


class PropagationWaitProvider(pulumi.dynamic.ResourceProvider):
    serialize_as_secret_always = False  # a reference to this module; nothing secret in it

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_="dns-propagation", outs=props)

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        changed = any(olds.get(k) != news.get(k) for k in ("records", "seconds"))
        return pulumi.dynamic.DiffResult(changes=changed, replaces=[])

    def update(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        if olds.get("records") != news.get("records"):
            time.sleep(float(news["seconds"]))
        return pulumi.dynamic.UpdateResult(outs=news)


@dataclass(frozen=True)
class DnsPropagationWaitArgs:
    records: Mapping[str, pulumi.Input[str]]
    """Record name -> the address it points at; a change to any of them starts the wait."""
    seconds: int
    """The record TTL, HAProxy's re-resolution and a margin for requests in flight."""


class DnsPropagationWait(pulumi.dynamic.Resource, module="dns", name="PropagationWait"):
    def __init__(
        self, name: str, args: DnsPropagationWaitArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            PropagationWaitProvider(),
            name,
            {"records": dict(args.records), "seconds": args.seconds},
            opts,
        )
