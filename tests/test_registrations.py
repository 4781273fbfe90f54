"""Every registration the program makes, pinned: type, name, inputs, the names of what it waits
for, its parent and its options, for the default stack, a five-node stack with a domain and a
stack of each MariaDB `dbMode`; and the userdata the lab renders for the same stacks.

Guards a refactoring of how the program is composed (which module builds which tier, which
helper renders which host) against changing what the engine sees: a different name, type or
parent changes a URN and would replace a deployed resource, a different input or option
updates or replaces it, and a different dependency reorders a rollout. The lab's userdata must
stay byte-identical too, since the lab boots it as the program's hosts would. A deliberate
change regenerates the golden files with

    uv run python -m tests.test_registrations --write

and the diff is reviewed with the change.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.rendered_hosts import render_hosts
from settings import load_settings
from tools.mocked_program import ACCOUNT, REGION, run_program

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden" / "registrations"

STACKS: dict[str, dict[str, Any]] = {
    "default": {},
    "5-nodes-domain": {
        "webNodeCount": 5,
        "dbInstanceClass": "db.t4g.medium",
        "domain": "www.example.com",
        "acmeEmail": "ops@example.com",
        "publicZoneId": "Z0PUBLIC12345",
    },
    # The database tier's other variants: MariaDB on hosts of its own, and on web-1 and web-2.
    "db-ec2": {"dbMode": "ec2"},
    "db-colocated": {"dbMode": "colocated", "webNodeCount": 3},
}


def _name(urn: str) -> str:
    """A URN's type and name (`type::name`): stable, and what a change of parent would move."""
    return urn.split("::", 2)[-1] if urn else ""


def _pinned_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """A dynamic resource's provider is stored by value, code objects with the checkout's file
    paths in them: it differs between checkouts. The engine ignores it when diffing (the gates'
    and drains' `diff`), tests/test_provider_serialization.py checks it, and here it is named."""
    if "__provider" not in inputs:
        return inputs
    return {**inputs, "__provider": "<the provider, serialized by value>"}


def registrations(config: dict[str, Any]) -> list[dict[str, Any]]:
    """What the engine sees of each resource, sorted by URN (registration order is threaded)."""
    run = run_program(config)
    recorded = [
        {
            "urn": r.urn,
            "type": r.type,
            "name": r.name,
            "parent": r.parent,
            "provider": r.provider,
            "inputs": _pinned_inputs(r.inputs),
            "dependencies": sorted(_name(u) for u in r.dependencies),
            "explicit_dependencies": sorted(_name(u) for u in r.explicit_dependencies),
            "ignore_changes": r.ignore_changes,
            "delete_before_replace": r.delete_before_replace,
            "replace_on_changes": r.replace_on_changes,
            "replacement_trigger": r.replacement_trigger,
        }
        for r in run.registrations
    ]
    return sorted(recorded, key=lambda r: (r["urn"], r["type"], r["name"]))


def lab_userdata(config: dict[str, Any]) -> dict[str, Any]:
    """What the lab renders for the stack: each host's userdata and the files it fetches."""
    hosts = render_hosts(load_settings(config, stack="dev"), REGION, ACCOUNT)
    return {
        "load_balancers": hosts.load_balancers,
        "web": hosts.web,
        "bucket": hosts.store.bucket,
        "files": [
            {
                "label": p.label,
                "hosts": p.hosts,
                "key": p.file.key,
                "destination": p.file.destination,
                "mode": p.file.mode,
                "sha256": p.file.sha256,
            }
            for p in hosts.files
        ],
    }


def _asset(value: object) -> object:
    """An asset or archive by what it holds (the object's repr changes every run)."""
    if isinstance(value, pulumi.AssetArchive):
        return {"archive": value.assets}
    if isinstance(value, pulumi.StringAsset):
        return {"text": value.text}
    if isinstance(value, (pulumi.FileAsset, pulumi.FileArchive)):
        path = Path(value.path)
        content = path.read_bytes() if path.is_file() else b""
        # Installed packages by their place in site-packages: the environment's path varies.
        where = path.as_posix().rsplit("site-packages/", 1)[-1]
        if path.is_relative_to(ROOT) and "site-packages/" not in path.as_posix():
            where = path.relative_to(ROOT).as_posix()
        return {"path": where, "sha256": hashlib.sha256(content).hexdigest()}
    raise TypeError(f"cannot pin a {type(value).__name__}: {value!r}")


def capture(config: dict[str, Any]) -> str:
    document = {"registrations": registrations(config), "lab_userdata": lab_userdata(config)}
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False, default=_asset) + "\n"


@pytest.mark.parametrize("stack", STACKS)
def test_every_registration_and_the_labs_userdata_are_unchanged(stack: str) -> None:
    """Fails on any change to a resource's URN, inputs, dependencies or options."""
    golden = GOLDEN / f"{stack}.json"
    expected = golden.read_text(encoding="utf-8")
    actual = capture(STACKS[stack])
    assert actual == expected, (
        f"{stack}: the registrations differ from {golden.relative_to(Path.cwd())}; if the change "
        "is intended, regenerate with `uv run python -m tests.test_registrations --write` and "
        "review the diff"
    )


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print("usage: python -m tests.test_registrations --write", file=sys.stderr)
        return 2
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for stack, config in STACKS.items():
        (GOLDEN / f"{stack}.json").write_text(capture(config), encoding="utf-8")
        print(f"wrote {GOLDEN / stack}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
