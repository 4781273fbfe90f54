"""The benchmark (`python -m lab.benchmark`, `make bench`): its runner and its measurements.

runner.py brings the lab up and calls each measurement of its MEASUREMENTS list; measurement.py
says what a measurement is given and returns. The measurements (throughput, failover, lag,
changes, reuse) share wrk.py (running wrk, parsing its output), cpu.py (where the CPU goes),
stats.py (percentiles, ratios, verdicts), machine.py (the machine's facts) and table.py with
report.py (the printed report).
"""
