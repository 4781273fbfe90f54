"""The machine the numbers come from: CPU, memory, kernel and every measured program's version."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

import pymysql

from lab.processes import find_program


def extract_version(text: str, pattern: str) -> str:
    found = re.search(pattern, text)
    return found.group(1) if found else "?"


def machine_facts() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    memory_kib = extract_version(meminfo, r"MemTotal:\s+(\d+) kB")
    memory = f"{int(memory_kib) / 2**20:.1f} GiB" if memory_kib.isdigit() else "?"
    tools = {
        "haproxy": (["haproxy", "-v"], r"version (\S+)"),
        "nginx": (["nginx", "-v"], r"nginx/(\S+)"),
        "mariadb": (["mariadbd", "--version"], r"Ver (\S+)"),
        "gunicorn": (["gunicorn", "--version"], r"version ([^)\s]+)"),
        "wrk": (["wrk", "-v"], r"wrk (\S+)"),
    }
    facts = {
        "cpu": extract_version(cpuinfo, r"model name\s*:\s*(.+)"),
        "cores": str(os.cpu_count() or "?"),
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pymysql": pymysql.__version__,
    }
    for name, (command, pattern) in tools.items():
        facts[name] = extract_version(_output_of(command), pattern)
    return facts


def _output_of(command: list[str]) -> str:
    program = find_program(command[0]) or command[0]
    try:
        result = subprocess.run(  # noqa: S603 - fixed version queries
            [program, *command[1:]], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout + result.stderr  # nginx -v writes to stderr, wrk -v exits 1
