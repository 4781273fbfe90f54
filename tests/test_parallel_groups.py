"""The suite's split for `make test` (tests/conftest.py): what runs side by side cannot collide.

Groups run in different pytest-xdist workers at the same time. Two groups must never bring up
the same lab (its state folder and loopback network are the lab's name's, lab/topology.py), nor
bind an address in another group's lab network or the same address as another group; the boot
lab's files, one boot lab per machine, share one group.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from conftest import group_of, group_of_node, kind_of

from lab.topology import LAB_NETWORKS

TESTS = Path(__file__).resolve().parent
ADDRESS = re.compile(r"^127\.0\.(\d+)\.(\d+)$")
# Files whose addresses cannot collide, and why.
NO_FIXED_PORTS = {
    "test_benchmark_reuse": "its addresses are text: /proc/net/tcp lines it parses",
    "test_verify_certificate": "binds a port the kernel hands out, never a lab's fixed port",
}


def suite_files() -> list[Path]:
    """The suite's test files, but this one (its sources are examples)."""
    return sorted(p for p in TESTS.glob("test_*.py") if p.name != Path(__file__).name)


def _imported(tree: ast.Module) -> dict[str, str]:
    """Local names of imported modules: {"runner": "lab.bench.runner"}."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name] = alias.name
    return names


def _value(node: ast.expr, constants: dict[str, str], modules: dict[str, str]) -> str | None:
    """A string literal, a module constant, or `module.CONSTANT` of an imported module."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in modules
    ):
        value = getattr(importlib.import_module(modules[node.value.id]), node.attr, None)
        return value if isinstance(value, str) else None
    return None


def uses(source: str) -> tuple[set[str], set[str]]:
    """The labs a test file brings up (`Lab(name)`) and the loopback addresses it names."""
    tree = ast.parse(source)
    modules = _imported(tree)
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    labs = {
        name
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Lab"
        and node.args
        and (name := _value(node.args[0], constants, modules))
        and name in LAB_NETWORKS  # Lab("prod") is refused before it starts anything
    }
    addresses = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and (found := ADDRESS.match(node.value))
        and found.group(1) != "0"  # 127.0.0.1 with ports the kernel hands out
    }
    return labs, addresses


def collisions(files: dict[str, tuple[set[str], set[str]]]) -> list[str]:
    """Pairs of files in different groups that would collide, by {stem: (labs, addresses)}."""
    found = []
    stems = sorted(files)
    for i, one in enumerate(stems):
        for other in stems[i + 1 :]:
            if group_of(one) == group_of(other):
                continue
            (labs_1, addresses_1), (labs_2, addresses_2) = files[one], files[other]
            networks_1 = {LAB_NETWORKS[lab] for lab in labs_1}
            networks_2 = {LAB_NETWORKS[lab] for lab in labs_2}
            shared = (labs_1 & labs_2) | (addresses_1 & addresses_2)
            shared |= {a for a in addresses_1 if a.rsplit(".", 1)[0] in networks_2}
            shared |= {a for a in addresses_2 if a.rsplit(".", 1)[0] in networks_1}
            if shared:
                found.append(f"{one} and {other} both use {sorted(shared)}: give them one group")
    return found


def test_no_two_groups_bring_up_the_same_lab_or_bind_the_same_address() -> None:
    files = {path.stem: uses(path.read_text()) for path in suite_files()}
    for stem in NO_FIXED_PORTS:
        files[stem] = (files[stem][0], set())
    assert {"test", "test-ops", "test-faults", "test-https", "bench"} <= set().union(
        *(labs for labs, _ in files.values())
    ), "the scan lost the labs the lab tests bring up"
    problems = collisions(files)
    assert not problems, "\n".join(problems)


def test_a_collision_between_groups_is_found() -> None:
    files = {
        "test_lab_e2e": ({"test"}, set()),
        "test_lab_new": ({"test"}, set()),
        "test_new_a": (set(), {"127.0.20.201"}),
        "test_new_b": (set(), {"127.0.41.1"}),
        "test_new_c": (set(), {"127.0.41.1"}),
        "test_new_d": (set(), {"127.0.42.1"}),
    }
    problems = collisions(files)
    assert any(p.startswith("test_lab_e2e and test_lab_new both use ['test']") for p in problems)
    assert any("test_lab_e2e and test_new_a" in p for p in problems)
    assert any("test_new_b and test_new_c" in p for p in problems)
    assert not any("test_new_d" in p for p in problems)


def test_the_scan_reads_the_ways_a_test_names_its_lab() -> None:
    source = """
from lab.bench import runner
LAB = "test-https"
ADDRESS = "127.0.40.1"
Lab(LAB)
Lab("test-ops", state=tmp)
Lab(runner.LAB_NAME)
url = "http://127.0.0.1:8080/"
"""
    assert uses(source) == ({"test-https", "test-ops", "bench"}, {"127.0.40.1"})


def test_every_boot_lab_file_is_in_the_boot_group_and_new_files_get_a_default() -> None:
    boot = [
        p.stem for p in suite_files() if "BootLab" in p.read_text() or "boot_lab(" in p.read_text()
    ]
    assert boot, "the boot lab's tests were not found"
    for stem in boot:
        assert (kind_of(stem), group_of(stem)) == ("boot", "boot"), stem
    assert (kind_of("test_boot_new"), group_of("test_boot_new")) == ("boot", "boot")
    assert (kind_of("test_lab_new"), group_of("test_lab_new")) == ("lab", "test_lab_new")
    assert (kind_of("test_new"), group_of("test_new")) == (None, "test_new")
    assert group_of_node("tests/test_lab_e2e.py::test_x[a::b]@lab") == "lab-timed"


def test_every_file_that_brings_up_a_lab_is_marked_so_make_check_skips_it() -> None:
    for path in suite_files():
        labs, _ = uses(path.read_text())
        if labs:
            assert kind_of(path.stem) == "lab", f"{path.name} brings up {labs}: add it to KINDS"
