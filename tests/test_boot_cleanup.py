"""The boot lab's clean-up after an interrupted or failed start: nothing of it may remain.

A Ctrl-C (or any failure) while the hosts boot must remove the containers, their overlay
mounts and cgroups, every helper process, the fault rules and the bridge, exactly as `down`
does; otherwise a
crashed run blocks the next one and leaves daemons on the machine.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from boot_support import TEST_STATE, leftovers, machine_lock, require_boot_capabilities

from lab import processes
from lab.boot.bootlab import BootLab
from lab.boot.containers import Container


def test_ctrl_c_while_the_hosts_boot_removes_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_boot_capabilities()
    started: set[int] = set()
    start_container, start_process = Container.start, processes.start

    def record_container(self: Container, *args: Sequence[str]) -> None:
        start_container(self, *args)
        started.update(pid for pid in (self.nspawn_pid, self.leader_pid) if pid)

    def record_process(*args: object, **kwargs: object) -> processes.Daemon:
        daemon = start_process(*args, **kwargs)  # type: ignore[arg-type]
        started.add(daemon.pid)
        return daemon

    def interrupt(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Container, "start", record_container)
    monkeypatch.setattr(processes, "start", record_process)
    monkeypatch.setattr(BootLab, "wait_booted", interrupt)
    folder = TEST_STATE / "interrupted"

    with machine_lock():
        with pytest.raises(KeyboardInterrupt):
            BootLab(state=folder).up(cut_off={"web-1": ["truststore"]})
        left = leftovers(folder, started)

    assert len(started) >= 7 + 3 * 2, f"the run did not get as far as the containers: {started}"
    assert left == []
