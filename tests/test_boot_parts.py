"""The boot lab's pieces that need no root: image recipes, seeds, stand-in configs, checks.

Fast guards for what the end-to-end boot tests would only show after minutes: a recipe
change that does not rebuild the image, a seed that is not the userdata, a DNS that resolves
more than the private zone and the AWS names, a mirror proxy that forwards anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from components.rendered_hosts import userdata_for
from lab import checks
from lab.boot import acme, faults, images, network, seed, standins
from lab.boot.state import ROOT
from lab.localize import LabError
from settings import load_stack_file
from userdata.cloud_config import parse


def test_a_changed_recipe_is_a_new_image_and_the_same_recipe_the_same() -> None:
    bookworm = images.recipe_for("bookworm")
    assert images.recipe_for("bookworm").key == bookworm.key
    assert images.recipe_for("trixie").key != bookworm.key
    more = dataclasses.replace(bookworm, packages=(*bookworm.packages, "curl"))
    assert more.key != bookworm.key
    assert bookworm.name.startswith("bookworm-")


def test_older_recipes_images_are_pruned_and_other_suites_kept(tmp_path: Path) -> None:
    current = images.recipe_for("bookworm")
    for name in (current.name, "bookworm-0000000000000000", "trixie-1111111111111111"):
        (tmp_path / name).mkdir()
        (tmp_path / f"{name}.tar").write_bytes(b"")
    images.prune_older_images(tmp_path, current)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            current.name,
            f"{current.name}.tar",
            "trixie-1111111111111111",
            "trixie-1111111111111111.tar",
        ]
    )


def test_the_image_leaves_what_the_userdata_installs_to_the_userdata() -> None:
    """The hosts' packages must be installed by cloud-init at boot, not baked in (curl is in
    Ubuntu's cloud image too, so the image has it)."""
    _, web = userdata_for(load_stack_file(ROOT / "Pulumi.dev.yaml", stack="dev"), "eu-west-1", "1")
    packages = set(parse(next(iter(web.values())))["packages"]) - {"curl"}
    assert {"nginx", "gunicorn", "python3-boto3", "prometheus-nginx-exporter"} <= packages
    for package in ("haproxy", *packages):
        assert package not in images.PACKAGES, package


def test_the_https_streams_client_records_without_loading_a_trust_store() -> None:
    """acme.get's context verifies nothing, so it must not load the system's roots: doing so
    for every request of a stream took most of a core from the booting hosts."""
    context = acme.UNVERIFIED
    assert (context.check_hostname, context.verify_mode) == (False, ssl.CERT_NONE)
    assert context.cert_store_stats()["x509_ca"] == 0


def test_an_unknown_image_is_refused_with_the_choices() -> None:
    with pytest.raises(LabError, match="bookworm, trixie"):
        images.recipe_for("jammy")


def test_the_seed_is_the_userdata_and_the_differences_are_outside_it(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / seed.SYSTEM_BUNDLE).parent.mkdir(parents=True)
    (base / seed.SYSTEM_BUNDLE).write_bytes(b"PUBLIC CAS\n")
    layer = tmp_path / "layer"
    userdata = b"#cloud-config\nhostname: web-1\n"
    seed.write(
        layer,
        host="web-1",
        instance_id="i-0123456789abcdef0",
        address="169.254.77.11",
        userdata=userdata,
        ca_pem=b"CA\n",
        base=base,
    )

    assert (layer / seed.SEED / "user-data").read_bytes() == userdata
    assert "instance-id: i-0123456789abcdef0" in (layer / seed.SEED / "meta-data").read_text()
    assert (layer / seed.SYSTEM_BUNDLE).read_bytes() == b"PUBLIC CAS\nCA\n"
    networkd = (layer / "etc/systemd/network/10-bridge.network").read_text()
    assert "Address=169.254.77.11/24" in networkd
    assert "Gateway" not in networkd, "the containers must have no route off the bridge"
    assert (layer / "etc/resolv.conf").read_text() == f"nameserver {network.GATEWAY}\n"


def test_dns_answers_the_zone_and_aws_names_and_forwards_nothing(tmp_path: Path) -> None:
    config = standins.dns_config(
        "dev.web-infra.internal", {"web-1": "169.254.77.11"}, tmp_path / "q.log", "eu-west-1"
    )
    lines = config.splitlines()
    assert "no-resolv" in lines
    assert not [line for line in lines if line.startswith("server=")]
    assert "local=/dev.web-infra.internal/" in lines
    assert "host-record=web-1.dev.web-infra.internal,169.254.77.11" in lines
    assert f"address=/amazonaws.com/{network.AWS_API}" in lines
    assert f"address=/truststore.pki.rds.amazonaws.com/{network.TRUSTSTORE}" in lines
    # The secret store has an address of its own, so it can fail while S3 and SSM do not.
    for service in ("secretsmanager", "rds"):
        assert f"address=/{service}.eu-west-1.amazonaws.com/{network.SECRET_STORE}" in lines
    assert standins.endpoint("s3") == standins.endpoint("ssm") == network.AWS_API
    assert standins.endpoint("rds") == standins.endpoint("secretsmanager") == network.SECRET_STORE


def test_a_cut_off_drops_only_that_hosts_packets_to_that_stand_in() -> None:
    rules = faults.ruleset({"169.254.77.12": [network.AWS_API]}).splitlines()
    assert f"    ip saddr 169.254.77.12 ip daddr {network.AWS_API} drop" in rules
    assert len([line for line in rules if line.strip().endswith("drop")]) == 1
    # The table is replaced whole, in one transaction; nothing cut off leaves an empty chain.
    assert rules[:2] == [f"table inet {faults.TABLE} {{}}", f"delete table inet {faults.TABLE}"]
    assert not [line for line in faults.ruleset({}).splitlines() if "drop" in line]


def test_the_mirror_proxy_forwards_only_to_debian(tmp_path: Path) -> None:
    config = standins.apt_proxy_config(tmp_path / "cache", tmp_path / "logs")
    assert "ForceManaged: 1" in config
    assert "PassThroughPattern: ^$" in config
    remapped = [line for line in config.splitlines() if line.startswith("Remap-")]
    assert remapped
    assert all("deb.debian.org" in line for line in remapped)


class _Node(BaseHTTPRequestHandler):
    """A web node as the checks see one: `/health` and `/api/messages` with X-Served-By."""

    name = "web-1"
    database = True

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("X-Served-By", self.name)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._answer(200, {"status": "ok"})
        elif self.database:
            self._answer(200, {"read_from": "replica", "messages": []})
        else:
            self._answer(503, {"error": "no database is reachable for reads"})

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def node() -> Iterator[tuple[str, type[_Node]]]:
    handler = type("Node", (_Node,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_served_by_and_rotation_checks_pass_and_fail(node: tuple[str, type[_Node]]) -> None:
    url, _ = node
    assert checks.check_served_by(url, "web-1").ok
    assert not checks.check_served_by(url, "web-2").ok
    # One node answering every request is no rotation over two.
    rotation = checks.check_rotation(url, ["web-1", "web-2"])
    assert not rotation.ok
    assert rotation.found == "web-1 web-1 web-1 web-1"


def test_the_defined_state_without_a_database_is_told_apart(
    node: tuple[str, type[_Node]],
) -> None:
    url, handler = node
    assert not checks.check_database_unavailable(url).ok
    handler.database = False
    result = checks.check_database_unavailable(url)
    assert result.ok, result.found
    assert "no database is reachable" in result.found
