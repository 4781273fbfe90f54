"""Which of a host's files travel in its userdata, and which come from the artifacts bucket.

Documents are built whole (every file in `write_files`, readable, testable); `offload` then
moves the big ones (the app's code, scripts, the metrics agent's files) out of the userdata
into S3 objects named by their digest, and makes the host's first runcmd step install them with
`scripts/fetch_artifact.py`. The userdata still names every offloaded file's digest, so any
change to one still changes the userdata (and rolls the host); the object's content shows the
change itself in a preview. Config files that belong to a package (HAProxy's, Nginx's) and the
small ones stay inline, as readable text.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from userdata import cloud_config, web_node_config

FETCH_ARTIFACT_SOURCE = Path(__file__).parent / "scripts" / "fetch_artifact.py"
FETCH_ARTIFACT = "/usr/local/lib/web-infra/fetch_artifact.py"
KEY_PREFIX = "files"
# Offloaded: code and scripts, the metrics agent's generated files, keepalived's template,
# certbot's settings and the certificate's units (a domain's load balancer would pass 16 KiB).
# haproxy.cfg and Nginx's config stay inline, so a preview shows their diff as text.
OFFLOADED_PREFIXES = (
    web_node_config.APP_DIR + "/",
    "/usr/local/lib/web-infra/",
    "/usr/local/sbin/",
    "/etc/cloudwatch-agent/",
    "/etc/keepalived/",
    "/etc/letsencrypt/",
    "/etc/systemd/system/site-certificate.",
)


@dataclass(frozen=True)
class ShippedFile:
    """A file a host installs from the artifacts bucket at boot."""

    destination: str
    content: bytes
    mode: str = "0644"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def key(self) -> str:
        """Content-addressed: the key changes exactly when the content does."""
        return f"{KEY_PREFIX}/{self.sha256}/{posixpath.basename(self.destination)}"


@dataclass(frozen=True)
class PublishedFile:
    """One object in the artifacts bucket and the hosts that install it."""

    file: ShippedFile
    hosts: tuple[str, ...]

    @property
    def label(self) -> str:
        """A stable name for the object's resource: a new version of the same file replaces
        it (a preview then shows the content's diff) instead of adding another."""
        if len(self.hosts) == 1:
            who = self.hosts[0]
        elif all(h.startswith("web-") for h in self.hosts):
            who = "web"
        elif all(h.startswith("load-balancer-") for h in self.hosts):
            who = "load-balancer"
        elif all(h.startswith("database-") for h in self.hosts):
            who = "database"
        else:
            who = "hosts"
        return f"{who}-{posixpath.basename(self.file.destination)}"


@dataclass(frozen=True)
class ArtifactStore:
    bucket: str
    region: str


def offloaded(path: str) -> bool:
    return path != FETCH_ARTIFACT and path.startswith(OFFLOADED_PREFIXES)


def offload(
    document: dict[str, Any], store: ArtifactStore
) -> tuple[dict[str, Any], list[ShippedFile]]:
    """`document` with its big files replaced by a first runcmd step that fetches them."""
    kept: list[dict[str, Any]] = []
    shipped: list[ShippedFile] = []
    for entry in document.get("write_files", []):
        if offloaded(entry["path"]):
            shipped.append(
                ShippedFile(
                    entry["path"],
                    cloud_config.file_content(entry),
                    str(entry.get("permissions", "0644")),
                )
            )
        else:
            kept.append(entry)
    if not shipped:
        return document, []
    fetch = [
        "python3",
        FETCH_ARTIFACT,
        "--bucket",
        store.bucket,
        "--region",
        store.region,
    ]
    for file in shipped:
        fetch += ["--file", file.key, file.sha256, file.destination, file.mode]
    script = cloud_config.compressed_file(
        FETCH_ARTIFACT, FETCH_ARTIFACT_SOURCE.read_bytes(), "0755"
    )
    return (
        {
            **document,
            "write_files": [script, *kept],
            "runcmd": [fetch, *document.get("runcmd", [])],
        },
        shipped,
    )


def publish(shipped: dict[str, list[ShippedFile]]) -> list[PublishedFile]:
    """One object per content, however many hosts install it (host -> its shipped files)."""
    hosts: dict[str, list[str]] = {}
    files: dict[str, ShippedFile] = {}
    for host, host_files in shipped.items():
        for file in host_files:
            files[file.key] = file
            hosts.setdefault(file.key, []).append(host)
    return [PublishedFile(files[key], tuple(hosts[key])) for key in files]
