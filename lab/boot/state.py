"""What a boot lab records about its run, and the lab as those records describe it.

Every helper process, host container and mount is written to the state folder's `state.json`
as soon as it exists, so `down` (also after a failed start or Ctrl-C) removes exactly what the
run made. This module owns that file's shape and where the state folder is; the modules above
it (bring-up, host operations, tear-down, readings) change or read what it holds.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.boot import images, network
from lab.boot.containers import Container
from lab.boot.pki import CertificateAuthority
from lab.localize import LabError
from lab.processes import Daemon
from settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE = Path("/var/lib/web-infra/boot")
STATE_VARIABLE = "WEB_INFRA_BOOT_STATE"


def default_state() -> Path:
    return Path(os.environ.get(STATE_VARIABLE) or DEFAULT_STATE)


@dataclass
class HostRecord:
    """One booted host as the state file keeps it."""

    name: str
    role: str
    address: str
    port: int
    instance_id: str = ""
    """The instance the EC2 stand-in runs for this host: what the metadata stand-in and the
    NoCloud seed both name, as EC2's metadata does."""
    nspawn_pid: int | None = None
    leader_pid: int | None = None
    started_at: float | None = None
    """When the container was last started (seconds since the epoch)."""
    booted_seconds: float | None = None
    """From starting the container to cloud-init's end and systemd's settling, first boot."""
    boots: int = 0


@dataclass
class State:
    image: str
    image_root: str
    stack: str
    region: str
    settings: dict[str, Any]
    helpers: list[dict[str, Any]] = field(default_factory=list)
    hosts: list[HostRecord] = field(default_factory=list)
    cut_off: dict[str, list[str]] = field(default_factory=dict)
    """Host name -> the stand-ins it cannot reach (failure injection)."""
    image_timing: dict[str, float | None] = field(default_factory=dict)
    db_mode: str = "rds"
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    """`dbMode: ec2`: host name -> its data volume's stand-in (`lab.boot.database_hosts`)."""

    def settings_object(self) -> Settings:
        # JSON turned the settings' tuples into lists; nothing in them is a list otherwise.
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in self.settings.items()
        }
        return Settings(**fields)

    def host(self, name: str) -> HostRecord:
        for host in self.hosts:
            if host.name == name:
                return host
        names = ", ".join(h.name for h in self.hosts)
        raise LabError(f"no booted host {name!r}; hosts are: {names}")


class BootRecords:
    """A boot lab's state folder: its `state.json`, and what the records point at."""

    def __init__(
        self, state: Path | None = None, stack: str = "dev", cache: Path | None = None
    ) -> None:
        self.folder = state or default_state()
        self.stack = stack
        self.cache = cache or images.cache_folder()
        self.state_file = self.folder / "state.json"
        self.bridge = network.Bridge()

    def load(self) -> State:
        if not self.state_file.exists():
            raise LabError("the boot lab is not running; start it with `make boot`")
        data = json.loads(self.state_file.read_text())
        data["hosts"] = [HostRecord(**h) for h in data["hosts"]]
        return State(**data)

    def _save(self, state: State) -> None:
        self.state_file.write_text(json.dumps(dataclasses.asdict(state), indent=2))

    def _helper(self, state: State, daemon: Daemon) -> None:
        state.helpers.append(dataclasses.asdict(daemon))
        self._save(state)

    def container(self, host: HostRecord) -> Container:
        return Container(
            host.name, self.folder / "hosts" / host.name, host.nspawn_pid, host.leader_pid
        )

    @property
    def authority(self) -> CertificateAuthority:
        return CertificateAuthority(self.folder / "pki")

    def url(self) -> str:
        """The site, at its public address (the lab's Elastic IP, `lab.boot.elastic_ip`)."""
        return f"http://{network.PUBLIC}/"
