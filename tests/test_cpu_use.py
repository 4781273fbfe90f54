"""The CPU table `make test` prints (tests/cpu_use.py): a file that burns CPU in a child
process is charged with it, one that only waits is not, with pytest-xdist workers or without."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cpu_use import SHOWN, table

BURN = """\
import subprocess, sys

def test_burns_in_a_child():
    program = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.6: pass"
    subprocess.run([sys.executable, "-c", program], check=True)
"""
WAIT = """\
import time

def test_waits():
    time.sleep(0.6)
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_child_s_cpu_is_charged_to_its_file_and_waiting_costs_none(
    tmp_path: Path, workers: list[str]
) -> None:
    (tmp_path / "test_burn.py").write_text(BURN)
    (tmp_path / "test_wait.py").write_text(WAIT)
    options = ["-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "cpu_use", *workers, *options, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {
        m.group(1): (float(m.group(2)), float(m.group(3)))
        for m in re.finditer(r"^(test_\w+\.py)\s+([\d.]+)\s+([\d.]+)$", result.stdout, re.M)
    }
    assert set(rows) == {"test_burn.py", "test_wait.py"}, result.stdout
    assert rows["test_burn.py"][1] >= 0.5, result.stdout
    assert rows["test_wait.py"][1] < 0.3, result.stdout
    assert rows["test_wait.py"][0] >= 0.55, result.stdout
    assert "the machine was busy" in result.stdout, result.stdout


def test_the_table_lists_the_busiest_files_first_and_sums_the_rest() -> None:
    files = {f"test_{i:02}.py": [1.0, float(i)] for i in range(SHOWN + 3)}
    lines = table(files, wall=100.0, machine=400.0).splitlines()
    assert lines[1].split()[0] == f"test_{SHOWN + 2:02}.py"
    assert lines[SHOWN].split()[0] == "test_03.py"
    assert lines[SHOWN + 1].split()[-2:] == ["3.0", "3.0"]  # 0 + 1 + 2, one second of wall each
    total = sum(range(SHOWN + 3))
    assert lines[SHOWN + 2].split()[-1] == f"{total:.1f}"
    assert f"busy 400 CPU s (4.00 cores on average), {400 - total} of them" in lines[-1]
