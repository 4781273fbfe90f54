"""Give HAProxy time to follow a DNS change before `pulumi up` deletes the hosts it left.

Pulumi deletes replaced and removed resources at the end of an update. When a web node's record
changes, HAProxy still sends requests to the old address until the VPC resolver's cached answer
expires (the record's TTL) and HAProxy re-resolves the name (every second).

- Replaced nodes: `DnsPropagationWait`'s update sleeps through that window whenever the web
  nodes' records change, so every old host is deleted only after HAProxy stopped using it. On a
  new stack nothing is replaced: no sleep.
- Removed nodes (scale down, destroy): nothing is updated, everything of the node is deleted.
  `DnsDrain` sits in the graph between the node's readiness gate and its record (the record
  takes the node's address from it). Pulumi deletes in reverse dependency order, in waves
  (`ScheduleDeletes` in the engine's step generator), so the record is deleted first; then the
  drain's delete sleeps through the same window while HAProxy lets go of the name; only then
  are the gate and the instance deleted. A resource hook (`before_delete`) could sleep as well,
  but delete hooks need `pulumi destroy --run-program`, and a removed node's hook must still be
  defined by the program that removed it: a resource of its own is deleted by any engine run.

Both providers are serialized by value (`components.by_value`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from components.by_value import by_value


class PropagationWaitProvider(pulumi.dynamic.ResourceProvider):
    """Keep this class at this name in this module: stacks deployed before the providers were
    serialized by value hold a reference to it."""

    serialize_as_secret_always = False  # code and constants only; nothing secret in it

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
            by_value(PropagationWaitProvider)(),
            name,
            {"records": dict(args.records), "seconds": args.seconds},
            opts,
        )


class DrainProvider(pulumi.dynamic.ResourceProvider):
    """Passes a node's address on to its record; deleting it waits for HAProxy to let go."""

    serialize_as_secret_always = False  # code and constants only; nothing secret in it

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_=f"drain-{props['host']}", outs=props)

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        # Never replaced: a replacement would delete (so wait) while the node stays. A new
        # address is an update, and the record's change is waited for by DnsPropagationWait.
        changed = any(olds.get(k) != news.get(k) for k in ("host", "address", "seconds"))
        return pulumi.dynamic.DiffResult(changes=changed, replaces=[])

    def update(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=news)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # The node's record is gone by now (it depends on this resource): wait until HAProxy
        # stopped sending it requests, then let its gate and instance be deleted.
        time.sleep(float(props["seconds"]))


@dataclass(frozen=True)
class DnsDrainArgs:
    host: str
    """The record's label, e.g. web-3."""
    address: pulumi.Input[str]
    """The node's address, from its readiness gate."""
    seconds: int
    """As `DnsPropagationWaitArgs.seconds`."""


class DnsDrain(pulumi.dynamic.Resource, module="dns", name="Drain"):
    """Put between a node's gate and its record: `address` is what the record points at."""

    address: pulumi.Output[str]

    def __init__(
        self, name: str, args: DnsDrainArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            by_value(DrainProvider)(),
            name,
            {"host": args.host, "address": args.address, "seconds": args.seconds},
            opts,
        )
