"""A web node that runs the database too (`dbMode: colocated`): web-1 the primary, web-2 the
replica.

Its document is the web node's (Nginx, gunicorn, the app, the metrics agent) with a database
host's parts added, taken from the document `database_host.database_host_cloud_config` builds
for it, so the database steps are exactly those of `dbMode: ec2`: MariaDB's packages, the
host's config, the stack's CA and the node's server certificate, `database_node.py` and its
`install` and `bootstrap` steps. Those run after the web node's own steps: the app serves
meanwhile and answers database requests with 503 until its database is there, as it does while
RDS is being made. The readiness report waits for both, the app's health through Nginx and
`database_node.py check`, so the replica's node starts only once the primary's database serves.
"""

from __future__ import annotations

import shlex
from typing import Any

from userdata.cloud_config import REPORT_READY

CHECK_URL = "--check-url"
CHECK_COMMAND = "--check-command"


def _is_report(step: list[str]) -> bool:
    return step[:2] == ["python3", REPORT_READY]


def _report(document: dict[str, Any]) -> list[str]:
    (report,) = [step for step in document["runcmd"] if _is_report(step)]
    return list(report)


def both_checks(web_report: list[str], database_report: list[str]) -> list[str]:
    """The web node's report step, ready once its health URL answers and the database's check
    passes. The report runs one command without a shell, so the two are joined by `sh -c`."""
    url = web_report[web_report.index(CHECK_URL) + 1]
    check = database_report[database_report.index(CHECK_COMMAND) + 1]
    both = f"curl --fail --silent --output /dev/null {shlex.quote(url)} && {check}"
    at = web_report.index(CHECK_URL)
    return [
        *web_report[:at],
        CHECK_COMMAND,
        shlex.join(["sh", "-c", both]),
        *web_report[at + 2 :],
    ]


def with_database(web: dict[str, Any], database: dict[str, Any]) -> dict[str, Any]:
    """`web` (a web node's whole document, its report last) running `database` (a database
    host's document for the same node) too. Neither is changed; a file both write must be
    the same file."""
    files = {entry["path"]: entry for entry in web["write_files"]}
    added = []
    for entry in database["write_files"]:
        known = files.get(entry["path"])
        if known is None:
            added.append(entry)
        elif known != entry:
            raise ValueError(f"the web node and its database both write {entry['path']}")
    packages = list(web["packages"])
    steps = [step for step in web["runcmd"] if not _is_report(step)]
    database_steps = [step for step in database["runcmd"] if not _is_report(step)]
    return {
        **web,
        "packages": packages + [p for p in database["packages"] if p not in packages],
        "write_files": [*web["write_files"], *added],
        "runcmd": [*steps, *database_steps, both_checks(_report(web), _report(database))],
    }
