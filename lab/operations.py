"""What `pulumi up` does on a change, mirrored in the lab: scale, replace, release.

Each operation is a sequence of the steps the other modules provide (launch, gate, route, wait
for HAProxy, retire) in the order the program's resource graph imposes, so the load balancer
serves throughout. It changes when the rollout's order changes (on AWS: the graph in
`components/`), not when a host or a record is handled differently.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
from collections.abc import Mapping

from lab.host_faults import HostFaults
from lab.localize import LabError
from lab.state import Instance, State
from lab.topology import Topology
from settings.web_tier import rollout_batches, web_node_names


class Operations(HostFaults):
    """scale, replace and release on a running lab."""

    def scale(self, web_nodes: int) -> None:
        """Add or remove web nodes: DNS records and nodes only, HAProxy keeps running."""
        state = self._load()
        wanted = self._checked(web_nodes)
        current = state.settings.web_node_count
        userdata = self._userdata(dataclasses.replace(state.settings, web_node_count=wanted))[1]
        topology = self.topology(state)
        if wanted > current:
            added = web_node_names(wanted)[current:]
            launched = [self._launch_web(state, node, userdata[node]) for node in added]
            for instance, report in launched:
                self._gate(state, instance, report)
                self._route(state, instance)
            state.settings = dataclasses.replace(state.settings, web_node_count=wanted)
            self._save(state)
            for instance, _ in launched:
                self._await_haproxy(topology, instance)
            return
        self._scale_in(state, topology, wanted)

    def _scale_in(self, state: State, topology: Topology, wanted: int) -> None:
        """Remove the last nodes as `pulumi up` does (their records are deleted before the
        instances, which wait for HAProxy to let go): each node's record goes, HAProxy follows
        (its admin socket shows the slot without an address, in maintenance), what it had in
        flight on the node finishes, and only then the node's processes stop."""
        current = state.settings.web_node_count
        removed = [state.current(node) for node in web_node_names(current)[wanted:]]
        for instance in removed:
            instance.serving = False
        state.settings = dataclasses.replace(state.settings, web_node_count=wanted)
        self._save(state)
        self._publish_records(state)
        for instance in removed:
            self._event("switched", instance)
        for instance in removed:
            self._await_haproxy(topology, instance, gone=True)
        for instance in removed:
            self._await_drained(instance)
            self._retire(state, instance, drained=True)

    def replace(self, host: str) -> None:
        """A new instance of `host` on a new address, switched to once it serves."""
        state = self._load()
        old = state.current(host)
        if old.role == "load-balancer":
            self._replace_load_balancer(state, old)
            return
        if old.role != "web":
            raise LabError(f"only web nodes and load balancers are replaced; not {host}")
        self._roll(state, [[host]], self._userdata(state.settings)[1])

    def _replace_load_balancer(self, state: State, old: Instance) -> None:
        """One load balancer of the pair at a time: its new instance serves and gets its
        record; if the old one holds the public address, the address moves to the ready peer
        (as keepalived hands it over when the old one stops; without a ready peer, to the new
        instance) before the old instance stops, gracefully."""
        userdata = self._userdata(state.settings)[0][old.host]
        new, report = self._launch_load_balancer(state, old.host, userdata)
        try:
            self._gate(state, new, report)
        except LabError:
            self._stop_instance(new, signal.SIGTERM)
            state.instances.remove(new)
            self._save(state)
            raise
        self._route(state, new)
        if state.address_holder == old.host:
            self._hold_public_address(state, self._ready_peer(state, old.host) or new)
        self._retire(state, old)

    def release(self, app: Mapping[str, bytes], batch_size: int | None = None) -> None:
        """Replace every web node with ones running `app` (its modules by file name, as
        `userdata.web_node_config.app_files` reads them), canary first, in batches."""
        state = self._load()
        userdata = self._userdata(state.settings, app)[1]
        batches = rollout_batches(web_node_names(state.settings.web_node_count), batch_size)
        self._roll(state, batches, userdata)

    def _roll(self, state: State, batches: list[list[str]], userdata: dict[str, str]) -> None:
        """Each batch after the batch before it serves; old instances stop at the end."""
        topology = self.topology(state)
        replaced: list[Instance] = []
        for batch in batches:
            old = {node: state.current(node) for node in batch}
            launched: list[tuple[Instance, subprocess.Popen[bytes]]] = []
            try:
                for node in batch:
                    launched.append(self._launch_web(state, node, userdata[node]))
                for instance, report in launched:
                    self._gate(state, instance, report)
            except LabError:
                # As with a failed gate in `pulumi up`: nothing was switched, old nodes serve.
                for instance in [i for i in state.instances if i.host in batch and not i.serving]:
                    self._stop_instance(instance, signal.SIGTERM)
                    state.instances.remove(instance)
                self._save(state)
                raise
            for instance, _ in launched:
                self._route(state, instance)
            for instance, _ in launched:
                self._await_haproxy(topology, instance)
            replaced += old.values()
        for instance in replaced:
            self._retire(state, instance)
