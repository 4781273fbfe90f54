"""The rendered cloud-config documents, checked by the real tools that will consume them."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest
from system_tools import require

from components.rendered_hosts import render_hosts, userdata_for
from settings import load_settings
from settings.web_tier import MAX_WEB_NODES
from userdata.cloud_config import EC2_USERDATA_LIMIT, _gzip_b64, file_content, parse, render
from userdata.load_balancer_config import HAPROXY_CERTIFICATE, ISSUED_ACL, SITE_CERTIFICATE_SOURCE

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def largest() -> tuple[str, dict[str, str]]:
    """The biggest documents the program can make: 20 nodes, a long stack name."""
    settings = load_settings(
        {
            "webNodeCount": MAX_WEB_NODES,
            "dbInstanceClass": "db.r6g.large",
            "domain": "www.a-rather-long-domain-name-for-the-shop.example.com",
            "acmeEmail": "operations-team@example.com",
        },
        stack="production-eu-central",
    )
    return userdata_for(settings, "ap-southeast-2", "123456789012")


def write_files(userdata: str, into: Path) -> dict[str, Path]:
    written = {}
    for entry in parse(userdata)["write_files"]:
        target = into / Path(entry["path"]).name
        target.write_bytes(file_content(entry))
        written[entry["path"]] = target
    return written


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_every_document_passes_cloud_init_schema(
    largest: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    cloud_init = require("cloud-init")
    load_balancer, web = largest
    for name, userdata in [("load-balancer", load_balancer), *web.items()][:3]:
        path = tmp_path / f"{name}.yaml"
        path.write_text(userdata)
        result = run(cloud_init, "schema", "--config-file", str(path))
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
        assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_rejects_a_broken_document(tmp_path: Path) -> None:
    """The schema check above can fail: a misspelt module key is reported."""
    cloud_init = require("cloud-init")
    path = tmp_path / "broken.yaml"
    path.write_text("#cloud-config\npackages: 42\nwrite_files: [{content: x}]\n")
    assert run(cloud_init, "schema", "--config-file", str(path)).returncode != 0


def test_haproxy_accepts_the_rendered_config(
    largest: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    haproxy = require("haproxy")
    files = write_files(largest[0], tmp_path)
    # The certificate is made at first boot, before this check runs: here, by the same script.
    certificate = tmp_path / "certs" / "site.pem"
    made = run(
        "python3", str(SITE_CERTIFICATE_SOURCE), "self-signed", "--name", "x.test",
        "--certificate", str(certificate),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    shipped = files["/etc/haproxy/haproxy.cfg"]
    shipped.write_text(
        shipped.read_text()
        .replace(HAPROXY_CERTIFICATE, str(certificate))
        .replace(ISSUED_ACL, str(files[ISSUED_ACL]))
    )
    result = run(haproxy, "-c", "-f", str(shipped))
    assert result.returncode == 0, result.stdout + result.stderr
    config = files["/etc/haproxy/haproxy.cfg"].read_text()
    assert config.count("    server web-") == MAX_WEB_NODES
    for directive in ("balance roundrobin", "option redispatch", "retries 3", "retry-on "):
        assert directive in config


def test_haproxy_check_can_fail(tmp_path: Path) -> None:
    haproxy = require("haproxy")
    bad = tmp_path / "bad.cfg"
    bad.write_text("defaults\n    mode http\nbackend web\n    balance sideways\n")
    assert run(haproxy, "-c", "-f", str(bad)).returncode != 0


def test_nginx_accepts_the_rendered_config(
    largest: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    nginx = require("nginx")
    files = write_files(largest[1]["web-20"], tmp_path)
    config = files["/etc/nginx/nginx.conf"]
    result = run(nginx, "-t", "-c", str(config), "-p", str(tmp_path))
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text(config.read_text().replace("proxy_pass", "proxy_passs"))
    assert run(nginx, "-t", "-c", str(broken), "-p", str(tmp_path)).returncode != 0


def test_big_files_come_from_s3_exactly_as_the_repository_has_them(
    largest: tuple[str, dict[str, str]],
) -> None:
    """The app's code and scripts are S3 objects named by their digest; the userdata names
    both, so a code change rolls the nodes and a node installs exactly the bytes it was
    launched for. The fetch step runs first; the readiness report stays last."""
    root = Path(__file__).resolve().parent.parent
    settings = load_settings(
        {
            "webNodeCount": MAX_WEB_NODES,
            "dbInstanceClass": "db.r6g.large",
            "domain": "www.a-rather-long-domain-name-for-the-shop.example.com",
            "acmeEmail": "operations-team@example.com",
        },
        stack="production-eu-central",
    )
    hosts = render_hosts(settings, "ap-southeast-2", "123456789012")
    assert hosts.web == largest[1], "the same documents as userdata_for"
    published = {p.file.destination: p for p in hosts.files}
    modules = sorted((root / "userdata" / "web_app").glob("*.py"))
    assert len(modules) > 1, "the app's package and its modules"
    for module in modules:
        app = published[f"/opt/web-app/web_app/{module.name}"]  # every module of the package
        source = module.read_bytes()
        assert app.file.content == source, module.name
        assert app.file.key == f"files/{hashlib.sha256(source).hexdigest()}/{module.name}"
        assert app.label == f"web-{module.name}"
        assert len(app.hosts) == MAX_WEB_NODES, "one object for every node"
    for host, userdata in [("load-balancer-1", largest[0]), *largest[1].items()]:
        document = parse(userdata)
        fetch = document["runcmd"][0]
        assert fetch[:2] == ["python3", "/usr/local/lib/web-infra/fetch_artifact.py"], host
        assert fetch[fetch.index("--bucket") + 1] == hosts.store.bucket
        named = {
            fetch[i + 3]: (fetch[i + 1], fetch[i + 2])
            for i, part in enumerate(fetch)
            if part == "--file"
        }
        assert "/usr/local/lib/web-infra/report_ready.py" in named, host
        for destination, (key, digest) in named.items():
            (object_,) = [p for p in hosts.files if p.file.key == key]
            assert object_.file.sha256 == digest, f"{host}: {destination}"
            assert host in object_.hosts, f"{host}: {destination}"
            assert not any(f["path"] == destination for f in document["write_files"]), host
        assert document["runcmd"][-1][1] == "/usr/local/lib/web-infra/report_ready.py", host
    # The name is known at preview; the stack part is cut to fit S3's 63 characters, with a
    # hash of the whole prefix, so that two stacks sharing a start do not share a bucket.
    assert hosts.store.bucket == "web-infra-producti-0e9dbc-123456789012-ap-southeast-2-artifacts"


def test_the_app_compresses_the_same_on_every_platform() -> None:
    """The gzip header must not carry a time or the OS: either would change the userdata, and
    so replace every web node, depending on when and where `pulumi up` runs."""
    raw = base64.b64decode(_gzip_b64(b"print('hello')\n"))
    assert raw[:4] == b"\x1f\x8b\x08\x00", "gzip, deflate, no file name"
    assert raw[4:8] == b"\x00\x00\x00\x00", "no modification time"
    assert raw[9] == 0xFF, "OS unknown"
    assert _gzip_b64(b"x" * 1000) == _gzip_b64(b"x" * 1000)


def test_userdata_stays_under_the_ec2_limit(largest: tuple[str, dict[str, str]]) -> None:
    load_balancer, web = largest
    sizes = [len(load_balancer.encode())] + [len(u.encode()) for u in web.values()]
    # A margin for what comes next: the pair's keepalived and the shared certificate each
    # took about 1 KiB of the load balancer's; its big files go to the artifacts bucket.
    assert max(sizes) <= EC2_USERDATA_LIMIT - 1024, sizes
    with pytest.raises(ValueError, match="over EC2's 16384"):
        render({"write_files": [{"path": "/x", "content": "x" * EC2_USERDATA_LIMIT}]})


def test_package_configs_are_written_after_the_packages_install(
    largest: tuple[str, dict[str, str]],
) -> None:
    """Without `defer`, installing nginx/haproxy would run before the config exists or
    overwrite it; both orders break first boot."""
    for userdata in (largest[0], largest[1]["web-1"]):
        for entry in parse(userdata)["write_files"]:
            if entry["path"].startswith(("/etc/nginx/", "/etc/haproxy/")):
                assert entry.get("defer") is True, entry["path"]


def test_config_files_diff_as_text(largest: tuple[str, dict[str, str]]) -> None:
    """A preview diff shows config lines, not one escaped string."""
    assert "content: |" in largest[0]
    assert "    balance roundrobin\n" in largest[0]
