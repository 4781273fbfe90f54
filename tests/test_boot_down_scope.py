"""`python -m lab.boot down` removes its own boot lab only (issue 15, item 8).

The containers' cgroups, the bridge and the fault rules have one name per machine, so `down`
of an empty state folder (another checkout, or a test's own folder) used to remove whatever
boot lab ran on the machine. These tests need no root: the cgroup hierarchy and the mount
table are stand-ins, and nothing is started.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import processes
from lab.boot import faults, network, teardown
from lab.boot.bootlab import BootLab
from lab.boot.containers import CGROUP_GROUP


def other_lab(tmp_path: Path, host: str = "web-1") -> tuple[Path, str]:
    """A running boot lab of another state folder: its state file and its host's mount."""
    folder = tmp_path / "other"
    (folder / "hosts" / host / "root").mkdir(parents=True)
    (folder / "state.json").write_text("{}")
    mount = f"overlay {folder}/hosts/{host}/root overlay rw,relatime 0 0\n"
    return folder, mount


def test_hosts_of_another_state_folder_are_recognised(tmp_path: Path) -> None:
    _, mount = other_lab(tmp_path)
    mine = tmp_path / "mine"
    assert teardown.other_labs_containers(mine, mount) == {"web-1"}
    assert teardown.other_labs_containers(tmp_path / "other", mount) == set(), "its own hosts"
    unrelated = "tmpfs /srv/hosts/web-2/root tmpfs rw 0 0\n"  # not a boot lab: no state file
    assert teardown.other_labs_containers(mine, unrelated) == set()


def test_down_of_an_empty_state_folder_leaves_another_boot_lab_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards `down` tearing down the boot lab of another checkout or state folder."""
    _, mount = other_lab(tmp_path)
    hierarchy = tmp_path / "cgroup"
    (hierarchy / CGROUP_GROUP / "web-1").mkdir(parents=True)
    calls: list[str] = []
    monkeypatch.setattr(teardown, "proc_mounts", lambda: mount)
    monkeypatch.setattr(teardown, "cgroup_hierarchies", lambda: [hierarchy])
    monkeypatch.setattr(processes, "find_program", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(faults, "clear", lambda: calls.append("faults cleared"))
    monkeypatch.setattr(network.Bridge, "delete", lambda self: calls.append("bridge"))

    removed = BootLab(state=tmp_path / "mine").down()

    assert removed == []
    assert calls == [], "the other lab's bridge or fault rules were removed"
    assert (hierarchy / CGROUP_GROUP / "web-1").is_dir(), "the other lab's container was removed"
