"""`make setup` installs every program the tests and the labs run: a machine that never had one
installed by hand must pass too.

The commands are found in the code (tests/, lab/, tools/): every `require("x")`, `program("x")`,
`find_program("x")` and `shutil.which("x")`, every `REQUIRED = (...)` list of programs, every
`for tool in ("x", ...): require(tool)` loop, and every subprocess started from a literal
command line. Each must map, through `PACKAGES_OF` below, to a package in
`lab/install-packages.sh` (or be part of every Debian system, or be installed by another step
of `make setup`). A new command without a row here fails with what to add. Where a program is
installed, its path's owner (dpkg -S) checks the row.

Python modules that the app and the hosts' scripts import under Debian's Python (gunicorn runs
the app; the lab runs the scripts with /usr/bin/python3, as the hosts do) are Debian packages
too, and are checked the same way.
"""

from __future__ import annotations

import ast
import functools
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from system_tools import unavailable

from lab.processes import find_program

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "lab" / "install-packages.sh"
SCANNED = ("tests", "lab", "tools")

# What `dpkg -S` says (Debian 12), as the package install-packages.sh names: where that is a
# package depending on the owner (nginx-light, mariadb-server, graphviz), the name installed.
PACKAGES_OF = {
    "haproxy": "haproxy",
    "nginx": "nginx-light",
    "gunicorn": "gunicorn",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadb": "mariadb-client",
    "mariadb-binlog": "mariadb-client",
    "mariadb-backup": "mariadb-backup",
    "mbstream": "mariadb-backup",
    "dnsmasq": "dnsmasq-base",
    "openssl": "openssl",
    "nft": "nftables",
    "ip": "iproute2",
    "keepalived": "keepalived",
    "cloud-init": "cloud-init",
    "wrk": "wrk",
    "dot": "graphviz",
    "certbot": "certbot",
    "pebble": "pebble",
    "systemd-nspawn": "systemd-container",
    "mmdebstrap": "mmdebstrap",
    "apt-cacher-ng": "apt-cacher-ng",
    "prometheus-nginx-exporter": "prometheus-nginx-exporter",
    "curl": "curl",
}
# Priority "required": on every Debian system, nothing to install.
BASE = {
    "sh": "dash",
    "bash": "bash",
    "tar": "tar",
    "mount": "mount",
    "umount": "mount",
    "losetup": "mount",
    "nsenter": "util-linux",
    "dpkg-query": "dpkg",
    "mkfs.ext4": "e2fsprogs",
    "rm": "coreutils",
}
# Installed by another step of `make setup`: the command, its package and the script.
ELSEWHERE = {"node": ("nodejs", ROOT / ".github" / "scripts" / "install-actionlint.sh")}
# Imported by the app and the hosts' scripts under Debian's Python (not the test environment).
PYTHON_MODULES_OF = {
    "pymysql": "python3-pymysql",
    "boto3": "python3-boto3",
    "botocore": "python3-boto3",  # python3-botocore, which python3-boto3 depends on
}
SYSTEM_PYTHON_CODE = (ROOT / "userdata" / "web_app", ROOT / "userdata" / "scripts")

LOOKUPS = {"require", "program", "find_program", "which"}
RUNNERS = {"run", "Popen", "check_output", "check_call", "call"}


def script_packages(text: str | None = None) -> list[str]:
    """The PACKAGES=(...) array of install-packages.sh."""
    text = SCRIPT.read_text() if text is None else text
    found = re.search(r"^PACKAGES=\((.*?)\)", text, re.MULTILINE | re.DOTALL)
    assert found, f"no PACKAGES=(...) in {SCRIPT}"
    return found.group(1).split()


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [
            e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
        ]
    return []


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _command_of(argument: ast.expr) -> str | None:
    """The program of a literal command line: ["nft", ...] or ["/usr/bin/python3", ...]; not
    a path outside the system's folders (a test's deliberately missing program)."""
    if isinstance(argument, ast.List) and argument.elts:
        first = argument.elts[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            if first.value.startswith("-"):
                return None  # a helper's arguments (`run(["--outputs", ...])`), not a program
            path = Path(first.value)
            if path.is_absolute() and not str(path.parent).endswith(("/bin", "/sbin")):
                return None
            return path.name
    return None


def commands_in(source: str) -> set[str]:
    """The external commands one Python file looks up or runs (see the module's docstring)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if name in LOOKUPS and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
            if name in RUNNERS and node.args and (command := _command_of(node.args[0])):
                found.add(command)
            if name == "start" and len(node.args) > 1 and (command := _command_of(node.args[1])):
                found.add(command)  # lab.processes.start(name, command, log)
        elif isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if any(t.endswith("REQUIRED") for t in targets):
                found |= set(_strings(node.value))
        elif isinstance(node, ast.For) and isinstance(node.target, ast.Name):
            looked_up = any(
                isinstance(call, ast.Call)
                and _name(call.func) in LOOKUPS
                and any(isinstance(a, ast.Name) and a.id == node.target.id for a in call.args)
                for statement in node.body
                for call in ast.walk(statement)
            )
            if looked_up:
                found |= set(_strings(node.iter))
    return found


def python_files() -> Iterator[Path]:
    for folder in SCANNED:
        yield from sorted((ROOT / folder).rglob("*.py"))


@functools.cache
def suite_commands() -> dict[str, list[str]]:
    """Every command the suite and the labs use, with the files that use it."""
    used: dict[str, list[str]] = {}
    for path in python_files():
        for command in commands_in(path.read_text()):
            used.setdefault(command, []).append(str(path.relative_to(ROOT)))
    return used


def system_python_modules() -> set[str]:
    """Modules outside the standard library that code run by Debian's Python imports."""
    modules: set[str] = set()
    for folder in SYSTEM_PYTHON_CODE:
        # A folder that moved would scan nothing, and its imports would go unchecked.
        assert folder.is_dir(), f"{folder} is gone; update SYSTEM_PYTHON_CODE"
        for path in folder.glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m != "__future__"}


def missing_packages(used: dict[str, list[str]], packages: list[str]) -> list[str]:
    """What the script lacks, one line per command or module."""
    problems = []
    for command, files in sorted(used.items()):
        if command in BASE:
            continue
        if command in ELSEWHERE:
            package, installer = ELSEWHERE[command]
            if package not in installer.read_text():
                problems.append(f"{command}: {installer.name} no longer installs {package}")
            continue
        known = PACKAGES_OF.get(command)
        if known is None:
            problems.append(
                f"{command} (used in {', '.join(files)}): no Debian package known; add it to "
                f"PACKAGES_OF in {Path(__file__).name} and to {SCRIPT.name}"
            )
        elif known not in packages:
            problems.append(f"{command} (used in {', '.join(files)}): add {known} to {SCRIPT}")
    for module in sorted(system_python_modules()):
        debian = PYTHON_MODULES_OF.get(module)
        if debian is None:
            problems.append(f"python module {module}: add its Debian package to PYTHON_MODULES_OF")
        elif debian not in packages:
            problems.append(f"python module {module}: add {debian} to {SCRIPT}")
    return problems


def test_the_scan_finds_the_commands_the_labs_and_tests_are_known_to_use() -> None:
    used = suite_commands()
    for command in ("haproxy", "nginx", "mariadbd", "systemd-nspawn", "wrk", "dot", "node", "ip"):
        assert command in used, f"the scan lost {command}"
    assert {"pymysql", "boto3"} <= system_python_modules()


def test_every_command_the_suite_uses_is_installed_by_the_setup_script() -> None:
    problems = missing_packages(suite_commands(), script_packages())
    assert not problems, "\n".join(problems)


def test_a_command_without_a_package_in_the_script_fails() -> None:
    used = {"haproxy": ["tests/a.py"], "conntrack": ["tests/b.py"], "wrk": ["tests/c.py"]}
    packages = [p for p in script_packages() if p != "wrk"]
    problems = missing_packages(used, packages)
    assert any(p.startswith("conntrack (used in tests/b.py): no Debian package") for p in problems)
    assert any(p.startswith("wrk (used in tests/c.py): add wrk to") for p in problems)
    assert not any(p.startswith("haproxy") for p in problems)


def test_the_scan_reads_every_way_the_code_names_a_command() -> None:
    source = """
REQUIRED = ("alpha", "beta")
require("gamma")
processes.program("delta")
shutil.which("epsilon")
for tool in ("zeta", "eta"):
    require(tool)
for name in ("web-1", "web-2"):
    print(name)
subprocess.run(["theta", "-x"], check=True)
subprocess.Popen(["/usr/sbin/iota"])
subprocess.run(["/nonexistent/lambda"])
processes.start("x/kappa", ["kappa", "-f"], log)
"""
    assert commands_in(source) == {
        *("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"),
        *("theta", "iota", "kappa"),
    }


def test_every_package_in_the_script_is_needed() -> None:
    used = suite_commands()
    needed = {PACKAGES_OF[c] for c in used if c in PACKAGES_OF}
    needed |= {PYTHON_MODULES_OF[m] for m in system_python_modules() if m in PYTHON_MODULES_OF}
    unused = [p for p in script_packages() if p not in needed]
    assert not unused, f"nothing the tests or the labs run needs {unused}"


def _owner(path: str) -> str | None:
    """The package owning a path, trying the /bin and /usr/bin spellings (merged /usr)."""
    candidates = [path]
    if path.startswith("/usr/"):
        candidates.append(path.removeprefix("/usr"))
    for candidate in candidates:
        result = subprocess.run(
            ["dpkg-query", "-S", candidate], capture_output=True, text=True, check=False
        )
        owners = [
            line.split(":")[0]
            for line in result.stdout.splitlines()
            if not line.startswith("diversion by ")  # /bin/sh: "diversion by dash from: ..."
        ]
        if result.returncode == 0 and owners:
            return owners[0]
    return None


def _depends(package: str) -> set[str]:
    """The package and what it depends on, two levels down (installed packages only)."""
    seen = {package}
    frontier = {package}
    for _ in range(2):
        listed = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Depends} ${Pre-Depends}\n", *sorted(frontier)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        frontier = {
            re.split(r"[\s:(]", alternative.strip())[0]
            for clause in re.split(r"[,|]", listed)
            if (alternative := clause.strip())
        } - seen
        seen |= frontier
    return seen


@pytest.mark.parametrize("command", sorted(PACKAGES_OF.keys() | BASE.keys()))
def test_the_table_agrees_with_dpkg(command: str) -> None:
    if shutil.which("dpkg-query") is None:
        unavailable("dpkg-query is not installed: not a Debian system")
    path = find_program(command)
    if path is None:
        unavailable(f"{command} is not installed; run `make setup`")
    owner = _owner(path)
    package = PACKAGES_OF.get(command) or BASE[command]
    assert owner is not None, f"dpkg knows no package owning {path}"
    assert owner in _depends(package), f"{path} is {owner}'s, not installed by {package}"
    if command in BASE:
        priority = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Priority}", owner],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        assert priority == "required", f"{owner} is {priority}: add it to {SCRIPT.name}"
