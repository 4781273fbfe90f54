"""The lab's clear errors: a taken port, a daemon that dies at start, a userdata it cannot map."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from system_tools import require

from lab import processes
from lab.lab import REQUIRED, Lab
from lab.localize import LabError, rewrite
from lab.topology import Ports, network_of


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    for tool in REQUIRED:  # checked before the ports
        require(tool)
    state = tmp_path / "lab"
    address = network_of("test-errors").load_balancer(1)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        port = Ports.for_user(os.geteuid() == 0).http
        squatter.bind((address, port))
        squatter.listen(1)
        with pytest.raises(
            LabError, match=rf"{address}:{port} for load-balancer-1 is already in use"
        ):
            Lab("test-errors", state=state).up()
    assert not state.exists(), "nothing was started, nothing is left"


def test_a_daemon_that_dies_at_start_shows_its_log(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    daemon = processes.start("x/sh", ["sh", "-c", "echo 'bind failed: no such file'; exit 3"], log)
    with pytest.raises(LabError, match=r"exited during start-up(.|\n)*bind failed: no such file"):
        processes.wait_until(lambda: False, daemon, what="x/sh", timeout=5)


def test_a_missing_program_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="not installed; run `make setup`"):
        processes.start("x/y", ["/nonexistent/haproxy-9"], tmp_path / "log")


def test_a_userdata_change_the_lab_does_not_know_stops_it() -> None:
    with pytest.raises(LabError, match="no longer contains 'bind \\*:80'"):
        rewrite("frontend http\n    bind :8080\n", [("bind *:80", "bind 127.0.10.10:80")], what="x")


def test_status_without_a_lab_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="not running; start it with `make lab`"):
        Lab("test-errors", state=tmp_path / "none").status()


def test_an_unknown_lab_lists_the_labs() -> None:
    with pytest.raises(KeyError, match="no lab named 'prod'; labs are: dev, test"):
        Lab("prod")
