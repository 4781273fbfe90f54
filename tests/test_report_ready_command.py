"""`report_ready.py --check-command`: a host whose readiness is a command's exit status (a
database host: `database_node.py check`) reports once the command exits 0, and not at all when
it keeps failing or hangs; every wait bounded. The shipped script, run by the machine's Python
3, against moto (the fixtures of test_readiness)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from test_readiness import PARAMETER, REGION, SCRIPT, aws, boot_files, ssm  # noqa: F401

PYTHON = sys.executable


def stored() -> str:
    """The host's report parameter, as moto holds it ("{}" until a report)."""
    client = boto3.client("ssm", region_name=REGION)
    return str(client.get_parameter(Name=PARAMETER)["Parameter"]["Value"])


def report_ready(
    command: str, extra: list[str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    line = [
        "/usr/bin/python3",
        str(SCRIPT),
        "--parameter",
        PARAMETER,
        "--region",
        REGION,
        "--check-command",
        command,
        "--timeout",
        str(timeout),
        *extra,
    ]
    return subprocess.run(
        line,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.usefixtures("ssm")
def test_a_host_reports_once_its_check_command_passes(tmp_path: Path) -> None:
    """The command fails twice, then passes: the report follows, with the host's instance."""
    counter = tmp_path / "runs"
    counter.write_text("0")
    script = tmp_path / "check.py"
    script.write_text(
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1\n"
        "p.write_text(str(n))\n"
        "sys.exit(0 if n >= 3 else 1)\n"
    )
    result = report_ready(f"{PYTHON} {script}", boot_files(tmp_path, "i-0db"))
    assert result.returncode == 0, result.stderr
    assert counter.read_text() == "3"
    assert result.stderr.count("exited 1") == 2
    report = json.loads(stored())
    assert report["instance_id"] == "i-0db"


@pytest.mark.usefixtures("ssm")
def test_a_check_command_that_keeps_failing_reports_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    result = report_ready("/bin/false", boot_files(tmp_path, "i-0failing"), timeout=2)
    assert result.returncode == 1
    assert "the check command failed for 2 s; not reporting ready" in result.stderr
    assert time.monotonic() - started < 15
    assert stored() == "{}"


@pytest.mark.usefixtures("ssm")
def test_a_hung_check_command_is_bounded(tmp_path: Path) -> None:
    started = time.monotonic()
    result = report_ready("/bin/sleep 60", boot_files(tmp_path, "i-0hung"), timeout=2)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 15
    assert stored() == "{}"


@pytest.mark.usefixtures("ssm")
def test_a_check_command_that_cannot_run_reports_nothing(tmp_path: Path) -> None:
    result = report_ready("/nonexistent/check", boot_files(tmp_path, "i-0none"), timeout=1)
    assert result.returncode == 1
    assert "could not run" in result.stderr
    assert stored() == "{}"


def test_a_url_and_a_command_are_not_both_given(tmp_path: Path) -> None:
    line = [
        "/usr/bin/python3",
        str(SCRIPT),
        "--parameter",
        PARAMETER,
        "--region",
        REGION,
        "--check-url",
        "http://127.0.0.1:9/",
        "--check-command",
        "/bin/true",
    ]
    result = subprocess.run(
        line,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr
