"""The operator command `fund-collector`: `status`, `dry-run` and `invoke` against a deployed stack.

AWS is moto's server (CloudFormation's DescribeStacks for the stack's outputs, DynamoDB for the table) and, for
Lambda's Invoke API - which moto serves only with Docker - a local endpoint running the collector's real handler
(tests/support/lambda_invoke_api.py); the exchange is the emulator.

The tests marked `packaging` install the project with `pip install .` into a fresh venv, from a copy of the
tree as a clone has it, and run the command lines the README's "Operator command" section shows, exactly as
written; `test_the_readme_shows_the_command_lines_these_tests_run` keeps the two lists the same.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from auto_collector.errors import ExchangeRateLimitedError, ExchangeRejectedError
from auto_collector.operator_view import main
from auto_collector.store import CollectorTable
from localdev.exchange_emulator import AUTO_COLLECTION_PATH, Fault
from tests.support.deployment import Deployment
from tests.support.events import scheduled_event
from tests.support.lambda_invoke_api import LambdaInvokeApi

REPO = Path(__file__).resolve().parents[2]
STACK = "fund-auto-collector"
FUNCTION = "fund-auto-collector-CollectorFunction-Q1W2E3R4T5Y6"

#: The README's "Operator command" block, line for line (comments stripped): what the packaging tests run.
DOCUMENTED = [
    "pip install .",
    "fund-collector --help",
    "fund-collector status --help",
    "fund-collector dry-run --help",
    "fund-collector invoke --help",
    f"fund-collector dry-run --stack {STACK}",
    f"fund-collector invoke --stack {STACK}",
    f"fund-collector status --stack {STACK}",
]


@dataclass
class Stack:
    """A deployed collector as the command finds it: a CloudFormation stack whose outputs name its table and
    function, the function behind Lambda's Invoke API, and the environment pointing boto3 at them."""

    deployment: Deployment
    api: LambdaInvokeApi
    cloudformation: Any
    env: dict[str, str]


@pytest.fixture
def stack(deployment: Deployment, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    api = LambdaInvokeApi(FUNCTION, deployment.invoke).start()
    cloudformation = boto3.client("cloudformation", endpoint_url=moto_endpoint)
    template = {
        "Resources": {"AlarmTopic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"FunctionName": {"Value": FUNCTION}, "TableName": {"Value": deployment.table}},
    }
    cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    endpoints = {
        "AWS_ENDPOINT_URL_CLOUDFORMATION": moto_endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": moto_endpoint,
        "AWS_ENDPOINT_URL_LAMBDA": api.endpoint,
    }
    for name, value in endpoints.items():
        monkeypatch.setenv(name, value)
    # The command finds the table through the stack, as an operator's shell would (the function keeps its own).
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL") and k != "TABLE_NAME"}
    env.update(endpoints)
    yield Stack(deployment, api, cloudformation, env)
    cloudformation.delete_stack(StackName=STACK)
    api.stop()


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def collections(stack: Stack) -> int:
    return len(stack.deployment.exchange.requests(AUTO_COLLECTION_PATH))


# --- what the function is sent, and what the command prints --------------------------------------


def test_dry_run_sends_the_dry_run_event_and_prints_the_answer(stack: Stack) -> None:
    code, out, err = run("dry-run", "--stack", STACK)
    assert (code, err) == (0, "")
    assert stack.api.events == [{"dryRun": True}]
    answer = json.loads(out)
    assert answer["status"] == "dry_run" and answer["dryRun"] is True
    assert collections(stack) == 0


def test_invoke_sends_an_empty_event_and_collects_once(stack: Stack) -> None:
    code, out, err = run("invoke", "--function", FUNCTION)
    assert (code, err) == (0, "")
    assert stack.api.events == [{}]
    assert json.loads(out)["status"] == stack.deployment.outcomes()[0]["status"] == "collected"
    assert collections(stack) == 1


@pytest.mark.parametrize(
    ("argv", "event"),
    [
        (["invoke", "--accounts", "fund-a,fund-b"], {"accounts": ["fund-a", "fund-b"]}),
        (["invoke", "--accounts", " fund-a , fund-a "], {"accounts": ["fund-a"]}),
        (["dry-run", "--accounts", "fund-b"], {"dryRun": True, "accounts": ["fund-b"]}),
        (["invoke", "--event", str(REPO / "events" / "dry-run.json")], {"dryRun": True}),
    ],
    ids=["accounts", "accounts-once", "dry-run-accounts", "event-file"],
)
def test_the_event_sent_follows_the_options(stack: Stack, argv: list[str], event: dict[str, Any]) -> None:
    run(*argv, "--stack", STACK)
    assert stack.api.events == [event]


def test_a_function_error_exits_1_with_its_type_and_message(stack: Stack) -> None:
    stack.deployment.exchange.inject(Fault(status=400, code=-21001))
    code, out, err = run("invoke", "--stack", STACK)
    assert code == 1
    document = json.loads(out)
    assert document["errorType"] == ExchangeRejectedError.__name__
    assert "-21001" in document["errorMessage"]
    assert err.startswith(f"error: {FUNCTION} failed (Unhandled): ExchangeRejectedError: ")
    assert "-21001" in err and err.count("\n") == 1


def test_a_function_error_is_reported_for_an_account_the_function_does_not_know(stack: Stack) -> None:
    code, out, err = run("dry-run", "--stack", STACK, "--accounts", "nobody")
    assert code == 1
    assert json.loads(out)["errorType"] == "InvalidEventError"
    assert "nobody" in err and err.startswith(f"error: {FUNCTION} failed (Unhandled): InvalidEventError: ")


def test_status_reads_the_table_named_by_the_stack(stack: Stack) -> None:
    stack.deployment.invoke({})
    stack.deployment.set_env(TABLE_NAME="not-this-table")  # --stack wins over $TABLE_NAME
    code, out, err = run("status", "--stack", STACK, "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["table"] == stack.deployment.table
    (account,) = report["accounts"]
    assert account["window"]["used"] == 1 and account["lastOutcomes"][0]["status"] == "collected"


def test_status_shows_the_limit_the_stack_was_deployed_with(stack: Stack) -> None:
    stack.deployment.invoke({})  # the window item records the limit of that run (500)
    template = {
        "Parameters": {"MaxCallsPerHour": {"Type": "Number", "Default": 500}},
        "Resources": {"AlarmTopic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"FunctionName": {"Value": FUNCTION}, "TableName": {"Value": stack.deployment.table}},
    }
    stack.cloudformation.create_stack(
        StackName="lowered",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "MaxCallsPerHour", "ParameterValue": "40"}],
    )
    try:
        code, out, err = run("status", "--stack", "lowered", "--json")
    finally:
        stack.cloudformation.delete_stack(StackName="lowered")
    assert (code, err) == (0, "")
    window = json.loads(out)["accounts"][0]["window"]
    # The limit in force is the stack's, not the one the window recorded before it was lowered (issue 14).
    assert (window["limit"], window["limitSource"], window["free"]) == (40, "stack", 39)


# --- what cannot be done, said in one line --------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["invoke", "--stack", "no-such-stack"], "could not read stack 'no-such-stack' (region eu-west-1): "),
        (["status", "--stack", "no-such-stack"], "Stack with id no-such-stack does not exist"),
        (["invoke", "--function", "no-such-function"], "could not invoke 'no-such-function' (region eu-west-1): "),
        (["invoke", "--function", "no-such-function"], "ResourceNotFoundException"),
        # checked before any AWS call: the stack named need not exist
        (["invoke", "--stack", "gone", "--accounts", "fund-a,,fund-b"], "--accounts takes labels separated by commas"),
        (
            ["invoke", "--stack", "gone", "--event", "no/such/file.json"],
            "cannot read the event file 'no/such/file.json'",
        ),
    ],
    ids=["unknown-stack", "unknown-stack-status", "unknown-function", "not-found", "empty-label", "no-event-file"],
)
def test_what_cannot_be_done_exits_2_in_one_line(stack: Stack, argv: list[str], message: str) -> None:
    code, out, err = run(*argv)
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert stack.api.events == []


def test_an_invocation_is_never_retried(stack: Stack) -> None:
    """Lambda's own 500 is retryable for boto3 by default; an invocation the function may have run is not."""
    stack.api.service_errors = 1
    code, out, err = run("invoke", "--stack", STACK)
    assert (code, out) == (2, "")
    assert "ServiceException" in err and err.count("\n") == 1
    assert stack.api.events == [{}]
    assert collections(stack) == 0


def test_an_event_file_must_hold_a_json_object(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"dryRun": tru')
    (tmp_path / "list.json").write_text("[]")
    assert run("invoke", "--stack", STACK, "--event", str(tmp_path / "broken.json"))[2].startswith(
        f"error: the event file '{tmp_path / 'broken.json'}' is not JSON: "
    )
    assert run("invoke", "--stack", STACK, "--event", str(tmp_path / "list.json"))[2] == (
        f"error: the event file '{tmp_path / 'list.json'}' holds a list, not a JSON object\n"
    )
    assert stack.api.events == []


def test_a_stack_that_is_not_the_collectors_is_named(stack: Stack) -> None:
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": {"TopicArn": {"Value": "arn"}}}
    stack.cloudformation.create_stack(StackName="other-stack", TemplateBody=json.dumps(template))
    try:
        code, _, err = run("dry-run", "--stack", "other-stack")
    finally:
        stack.cloudformation.delete_stack(StackName="other-stack")
    assert code == 2
    assert err == (
        "error: stack 'other-stack' (CREATE_COMPLETE) has no output 'FunctionName' (its outputs: TopicArn): "
        "is it the collector's stack?\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["invoke"], "one of the arguments --function --stack is required"),
        (["dry-run", "--function", "f", "--stack", "s"], "argument --stack: not allowed with argument --function"),
        (["invoke", "--stack", "s", "--accounts", "a", "--event", "e"], "not allowed with argument --accounts"),
        (["dry-run", "--stack", "s", "--event", "e"], "unrecognized arguments: --event e"),
    ],
    ids=["no-function", "function-and-stack", "accounts-and-event", "dry-run-event"],
)
def test_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(*argv)[0] == 2
    assert message in capsys.readouterr().err


# --- the view reads the table as the function's store does ----------------------------------------


def test_the_view_reads_what_the_store_writes(stack: Stack) -> None:
    """The view reads the table through the function's own store (store.py, whose Powertools import is lazy): windows
    with reservations, a back-off and event ids, outcomes with their numbers as ints, the registry."""
    deployment = stack.deployment
    deployment.invoke(scheduled_event("f4e1c2d3-0000-4c55-8e0b-5a2f1d3c4b6e"))
    deployment.invoke({})
    deployment.exchange.inject(Fault(status=429, code=-1003, retry_after=120))
    with pytest.raises(ExchangeRateLimitedError):
        deployment.invoke({})
    deployment.invoke({"dryRun": True})
    store = CollectorTable(deployment.dynamodb, deployment.table)
    assert store.accounts() == ["default"]
    assert store.windows() == {"default": deployment.window_key}  # the account's window (identity.py)
    state, item = store.read_item(deployment.window_key)
    assert state.sequence == 3 and state.blocked_until_ms > 0 and state.events
    assert item["seq"] == 3 and item["blockedUntilMs"] == state.blocked_until_ms
    outcomes = store.outcomes("default")
    assert [o["status"] for o in outcomes] == ["backing_off", "failed", "collected", "collected"]
    assert outcomes == deployment.outcomes()[::-1]
    assert all(type(o["durationMs"]) is int and type(o["expiresAt"]) is int for o in outcomes)
    assert store.outcomes("default", limit=2) == outcomes[:2]
    assert store.outcomes("default", since_iso=outcomes[1]["startedAt"]) == outcomes[:2]


def test_the_command_imports_nothing_but_boto3() -> None:
    """The command's whole import path, with the function's Powertools, requests and PyNaCl (and cryptography, which
    it no longer uses) made unimportable."""
    script = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in ("aws_lambda_powertools", "requests", "nacl", "cryptography"):
            raise ImportError(f"{name} must not be needed")
sys.meta_path.insert(0, Refuse())
from auto_collector.operator_view import main
sys.exit(main(["invoke", "--help"]))
"""
    completed = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO / "handler")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: fund-collector invoke")


# --- installed with pip, run as the README shows ----------------------------------------------------


def readme_block() -> list[str]:
    """The command lines of the code block under the README's "Operator command" heading, comments stripped."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^#+ Operator command\n.*?```bash\n(.*?)```", text, re.MULTILINE | re.DOTALL)
    assert block, 'the README has no "Operator command" section with a bash block'
    lines = (line.split("#", 1)[0].strip() for line in block.group(1).splitlines())
    return [line for line in lines if line]


def test_the_readme_shows_the_command_lines_these_tests_run() -> None:
    assert readme_block() == DOCUMENTED


def test_the_operator_view_lines_of_the_readme_run_as_written(stack: Stack) -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^#+ The operator's view\n.*?```bash\n(.*?)```", text, re.MULTILINE | re.DOTALL)
    assert block, "the README has no operator's view section with a bash block"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert lines and all(line.startswith("fund-collector status") for line in lines)
    stack.deployment.invoke({})
    for line in lines:
        code, out, err = run(*shlex.split(line)[1:])
        assert (code, err) == (0, ""), line
        assert "default" in out


@dataclass(frozen=True)
class Installed:
    clone: Path  # the tree as a fresh clone has it: tracked files plus new ones not ignored
    bin: Path  # the fresh venv's scripts, first on PATH

    def run(self, line: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environment = {**(env or os.environ), "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}"}
        environment.pop("PYTHONPATH", None)
        environment["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        return subprocess.run(
            shlex.split(line), cwd=self.clone, env=environment, capture_output=True, text=True, timeout=300, check=False
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """`pip install .` (the README's line) in a copy of the tree, with a fresh venv's pip: the pip cache is reused."""
    root = tmp_path_factory.mktemp("fund-collector")
    clone = root / "clone"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    installed = Installed(clone, root / "venv" / "bin")
    completed = installed.run(DOCUMENTED[0])
    assert completed.returncode == 0, completed.stderr[-3000:]
    return installed


@pytest.mark.packaging
def test_pip_install_gives_the_command_and_only_boto3(installed: Installed) -> None:
    assert (installed.bin / "fund-collector").is_file()
    listed = installed.run("pip list --format json")
    names = {entry["name"].lower() for entry in json.loads(listed.stdout)}
    assert {"fund-auto-collector", "boto3"} <= names
    assert not names & {"aws-lambda-powertools", "requests", "pynacl", "cryptography", "aws-xray-sdk"}
    located = installed.run("python -c 'import auto_collector; print(auto_collector.__file__)'")
    assert "site-packages" in located.stdout, located.stdout + located.stderr


@pytest.mark.packaging
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (DOCUMENTED[1], ["usage: fund-collector", "status", "dry-run", "invoke", "exit codes"]),
        (DOCUMENTED[2], ["usage: fund-collector status", "--stack NAME", "--table", "--json", "crash traces"]),
        (DOCUMENTED[3], ["usage: fund-collector dry-run", '{"dryRun": true}', "--stack NAME", "--function NAME"]),
        (DOCUMENTED[4], ["usage: fund-collector invoke", "--accounts A,B", "--event FILE", "errorType"]),
    ],
    ids=["help", "status-help", "dry-run-help", "invoke-help"],
)
def test_the_documented_help_lines(installed: Installed, line: str, expected: list[str]) -> None:
    completed = installed.run(line)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    for text in expected:
        assert text in " ".join(completed.stdout.split()), text


@pytest.mark.packaging
def test_the_documented_lines_against_a_deployed_stack(installed: Installed, stack: Stack) -> None:
    dry_run, invoke, status = (installed.run(line, stack.env) for line in DOCUMENTED[5:8])
    assert dry_run.returncode == 0, dry_run.stderr
    assert json.loads(dry_run.stdout)["status"] == "dry_run"
    assert invoke.returncode == 0, invoke.stderr
    assert json.loads(invoke.stdout)["status"] == "collected"
    assert stack.api.events == [{"dryRun": True}, {}]
    assert collections(stack) == 1
    assert status.returncode == 0, status.stderr
    assert f"table {stack.deployment.table!r}" in status.stdout
    assert "1/500 calls in the rolling hour" in status.stdout
    assert "OK: no failures in the last day" in status.stdout


@pytest.mark.packaging
def test_the_documented_invoke_exits_1_when_the_function_fails(installed: Installed, stack: Stack) -> None:
    stack.deployment.exchange.inject(Fault(status=400, code=-21001))
    completed = installed.run(DOCUMENTED[6], stack.env)
    assert completed.returncode == 1
    assert json.loads(completed.stdout)["errorType"] == "ExchangeRejectedError"
    assert completed.stderr.startswith(f"error: {FUNCTION} failed (Unhandled): ExchangeRejectedError: ")
