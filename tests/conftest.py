"""Pytest fixtures, and how the suite is split for speed. The AWS-like Pulumi mocks live in
`tools/mocked_program.py`, shared with `make diagram`, and are re-exported here for the tests.

Each test file gets a marker for what it runs (`KINDS`: the process lab, the boot lab, or
nothing: a fast test) and a pytest-xdist group, so `make test` runs side by side what can:

- the boot lab's files share one group ("boot"): one boot lab per machine (one bridge, and
  `boot_support.machine_lock`), so its tests run one after the other in one worker;
- every other file is a group of its own: a module's lab (its own loopback network and state
  folder, see lab/topology.py) is brought up once, in one worker, and its tests stay in order;
- the timing-bound lab files (`SHARED`) share one group too, so no two of them compete
  for the cores while one measures a failover or a lag against its bound; and a file that
  uses an address in another file's lab network joins that file's group.

A new file gets a sensible default from its name: test_boot_* is a boot test, test_lab_* a
process-lab test in its own group, anything else a fast test (`make check`). The groups with
the most to wait for are handed out first (`pytest_collection_modifyitems` puts them first and
the Makefile passes `--no-loadscope-reorder`). The groups are given to pytest-xdist by its
scheduler hook below, from each test's file, rather than by the `xdist_group` mark, whose
node-ID suffix pytest 9.2 drops (pytest-xdist issue 1386); the mark is still set.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.mocked_program import (
    REGION,
    AwsMocks,
    ProgramRun,
    Registration,
    run_program,
)

__all__ = ["REGION", "AwsMocks", "ProgramRun", "Registration", "run_program"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-table",
        action="store_true",
        help="print each test file's wall time and CPU at the end (tests/cpu_use.py)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("cpu_table"):
        from cpu_use import CpuUse  # noqa: PLC0415 - only when asked for

        config.pluginmanager.register(CpuUse(config), "cpu-use-counter")


@pytest.fixture(scope="session")
def default_run() -> ProgramRun:
    """The program with the dev stack's defaults, run once for the tests that only read it."""
    return run_program()


# The files that run a lab, by kind (the marker); any other file is a fast test, except the
# default by name below.
KINDS = {
    "boot": {
        "test_boot_e2e",
        "test_boot_failures",
        "test_boot_cleanup",
        "test_boot_parts",
    },
    "lab": {
        "test_lab_e2e",
        "test_lab_changes",
        "test_lab_degradation",
        "test_lab_https",
        "test_lab_scale",
        "test_lab_errors",
        "test_app_mariadb",
        "test_benchmark_smoke",
        "test_database_node",
    },
}
# Files named like a lab's that need none: fast tests.
FAST = {"test_lab_tables", "test_lab_main", "test_boot_metadata"}
# Lab files whose tests hold a measured bound (detection, lag, failover times) and so run one
# after another in one group rather than beside each other.
SHARED = {
    "test_lab_e2e": "lab-timed",
    "test_lab_degradation": "lab-timed",
    "test_app_mariadb": "lab-timed",
    # Zero failed requests through every replacement: not beside the other timed tests either
    # (two POSTs got the app's 503 once when its database queries starved under that load).
    "test_lab_changes": "lab-timed",
    # Binds 127.0.24.201, in test-https's network (lab/topology.py).
    "test_https_load_balancer": "test_lab_https",
    # Its HAProxy binds addresses of test-scale's network.
    "test_lab_routing": "test_lab_scale",
}
# The order groups are handed to workers in: the longest first, the fast files after.
FIRST = ("boot", "lab-timed", "test_lab_https", "test_benchmark_smoke")
# The boot files on the standard lab (boot_support.StandardLabs), after the boot group's other
# files (each of which boots a lab of its own): test_boot_e2e checks it as booted, ending on
# Debian 12, whose lab test_boot_pair then goes on with, killing and replacing hosts.
BOOT_ORDER = ("test_boot_e2e", "test_boot_pair")


def kind_of(stem: str) -> str | None:
    """ "boot", "lab" or None (a fast test) for a test file's name without its suffix."""
    for kind, stems in KINDS.items():
        if stem in stems:
            return kind
    if stem in FAST:
        return None
    if stem.startswith("test_boot_"):
        return "boot"
    if stem.startswith("test_lab_"):
        return "lab"
    return None


def group_of(stem: str) -> str:
    """The pytest-xdist group of a test file: its tests run in one worker, in order."""
    if kind_of(stem) == "boot":
        return "boot"
    return SHARED.get(stem, stem)


def group_of_node(nodeid: str) -> str:
    """The group of a test by its node ID (tests/test_x.py::test_y[...], maybe "@group")."""
    return group_of(Path(nodeid.split("::", 1)[0]).stem)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {group: i for i, group in enumerate(FIRST)}
    for item in items:
        stem = Path(str(item.path)).stem
        kind = kind_of(stem)
        if kind:
            item.add_marker(getattr(pytest.mark, kind))
        item.add_marker(pytest.mark.xdist_group(group_of(stem)))
    # A stable sort: each file keeps its own order, the longest groups come first, and the
    # boot files that share the standard lab come last in theirs, in BOOT_ORDER.
    items.sort(key=lambda item: sort_key(Path(str(item.path)).stem, rank))


def sort_key(stem: str, rank: dict[str, int]) -> tuple[int, int]:
    group = group_of(stem)
    within = BOOT_ORDER.index(stem) + 1 if stem in BOOT_ORDER else 0
    return rank.get(group, len(rank)), within


@pytest.fixture(scope="session")
def standard_boot_labs() -> Iterator[object]:
    """The boot lab shared by the boot test files that need only the standard hosts
    (boot_support.StandardLabs), taken down at the end of the session."""
    from boot_support import STANDARD_LABS  # noqa: PLC0415 - only the boot files need it

    yield STANDARD_LABS
    STANDARD_LABS.close()


@pytest.fixture(scope="module", autouse=True)
def lab_network_lock(request: pytest.FixtureRequest) -> Iterator[None]:
    """A lab file holds its group's machine-wide lock while it runs: a checkout's labs are
    named like every other checkout's (same loopback network, same state folder as root), so
    two test runs on one machine take turns per group instead of refusing each other's labs."""
    stem = Path(str(request.path)).stem
    if kind_of(stem) != "lab":
        yield
        return
    from boot_support import machine_lock  # noqa: PLC0415 - only the lab files need it

    folder = Path("/var/lib/web-infra") if os.geteuid() == 0 else Path(tempfile.gettempdir())
    with machine_lock(folder / f"lab-tests-{group_of(stem)}.lock"):
        yield


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`--dist loadgroup`: whole groups (`group_of`) to one worker each, in collection order."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415 - only with xdist running

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return group_of_node(nodeid)

    return GroupScheduling(config, log)
