"""The README's walk-through of the local lab, run as written.

A newcomer runs `make lab`, pastes the `curl` line it prints, then the README's blocks. When the
lab changed under them (HTTP began to redirect to HTTPS, the site got a name only the lab's DNS
knows and a certificate from the lab's CA) the blocks went on printing nothing useful, and no
test noticed. Here the blocks are pulled out of README.md by the comment above each
(`<!-- lab-walkthrough: any folder -->`: run in a folder outside the checkout;
`<!-- lab-walkthrough: checkout -->`: run in the checkout), and run in order in one bash, with
`set -e -o pipefail`, against a lab this test starts as `make lab` does (`python -m lab up`).
The line that command prints is run from the home folder.

What is swapped: only what differs between the README's lab (`dev`, as root) and this test's
own lab, so the two can run side by side: the network prefix, the state folder, the lab's name
on `python -m lab` command lines, and the ports when not root. Each value swapped must appear
in the README, so the README cannot drift from them either.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from system_tools import require

from lab import acme
from lab.lab import REQUIRED, Lab
from lab.state import default_state
from lab.topology import LAB_NETWORKS, Ports

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LAB = "test-readme"
BLOCK = re.compile(r"<!-- lab-walkthrough: (any folder|checkout) -->\n```bash\n(.*?)```", re.S)
SEPARATOR = "@@ end of block @@"


def walkthrough() -> list[tuple[str, str]]:
    """(where, script) of each marked block, in README order."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(README.read_text())]


def for_this_lab(script: str, lab: Lab) -> str:
    """The README's dev-lab values swapped for this test's lab's."""
    dev = LAB_NETWORKS["dev"] + "."
    ports = Ports.for_user(os.geteuid() == 0)
    https = "" if ports.https == 443 else f":{ports.https}"
    http = "" if ports.http == 80 else f":{ports.http}"
    swaps = {
        # As root (the README's case) the dev lab keeps its state here, whoever runs the test.
        "/var/lib/web-infra-lab/dev/": f"{lab.state}/",
        "python -m lab ": f"python -m lab --lab {LAB} ",
        f"{acme.LAB_DOMAIN}:443:{dev}": f"{acme.LAB_DOMAIN}:{ports.https}:{lab.network.prefix}.",
        f"https://{acme.LAB_DOMAIN}/": f"https://{acme.LAB_DOMAIN}{https}/",
        f"http://{dev}10/": f"http://{lab.network.public}{http}/",
    }
    for readme_value, ours in swaps.items():
        assert readme_value in README.read_text(), f"the README no longer shows {readme_value!r}"
        script = script.replace(readme_value, ours)
    assert dev not in script, f"a dev-lab address this test does not swap: {script}"
    return script


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Lab, str]]:
    """A lab started as `make lab` starts one; yields it and what `up` printed."""
    for tool in (*REQUIRED, *acme.REQUIRED, "curl", "bash"):
        require(tool)
    the_lab = Lab(LAB)
    assert the_lab.state == default_state(LAB)
    the_lab.down()  # a left-over from an interrupted run
    try:
        up = subprocess.run(
            [sys.executable, "-m", "lab", "--lab", LAB, "up"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert up.returncode == 0, f"python -m lab up failed:\n{up.stdout}\n{up.stderr}"
        yield the_lab, up.stdout
    finally:
        the_lab.down()


def bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_line_make_lab_prints_fetches_the_site_from_the_home_folder(
    lab: tuple[Lab, str],
) -> None:
    _, printed = lab
    lines = printed.splitlines()
    assert lines[0].startswith(f"The lab is up: https://{acme.LAB_DOMAIN}"), printed
    (command,) = [line.strip() for line in lines if line.strip().startswith("curl ")]
    assert "--cacert /" in command, command
    assert "--resolve" in command, command
    result = bash(command, Path.home())
    assert result.returncode == 0, f"{command}\n{result.stderr}"
    assert "<h1>Served by web-" in result.stdout, f"{command} gave:\n{result.stdout[:500]}"


def test_the_walkthrough_runs_as_written(lab: tuple[Lab, str], tmp_path: Path) -> None:
    the_lab, _ = lab
    blocks = walkthrough()
    assert [where for where, _ in blocks] == ["any folder", "any folder", "checkout"], (
        "the README's lab walk-through changed: update what this test expects of each block"
    )
    anywhere = tmp_path / "anywhere"
    anywhere.mkdir()
    script = "set -e -o pipefail\n"
    for where, block in blocks:
        script += f"cd {anywhere if where == 'any folder' else ROOT}\n"
        script += for_this_lab(block, the_lab) + f"printf '\\n%s\\n' '{SEPARATOR}'\n"
    result = bash(script, ROOT)
    assert result.returncode == 0, f"the walk-through failed:\n{result.stdout}\n{result.stderr}"
    health, things_to_try, checkout, _ = [
        part.strip() for part in result.stdout.split(SEPARATOR + "\n")
    ]

    assert json.loads(health)["status"] == "ok", health

    served_by = re.findall(r"(?im)^x-served-by: (web-\d+)", things_to_try)
    assert len(served_by) == 4, things_to_try
    assert len(set(served_by)) == 2, things_to_try
    assert served_by[:2] == served_by[2:], f"not a round robin: {served_by}"
    posted, read = [json.loads(line) for line in things_to_try.splitlines() if line[:1] == "{"]
    assert posted["message"]["text"] == "hello", f"the POST stored nothing: {posted}"
    assert read["read_from"] == "replica", read
    assert "HTTP/1.1 301 Moved Permanently" in things_to_try, things_to_try

    stopped, from_primary = checkout.splitlines()[:2]
    assert stopped == "db-replica stopped", checkout
    assert json.loads(from_primary)["read_from"] == "primary", checkout
    assert "hello" in {m["text"] for m in json.loads(from_primary)["messages"]}, checkout
