"""The operator's command, `fund-collector` (or `python -m auto_collector`).

`status` shows what the collector did, read from its table. Per account: the calls counting against the
rolling hour and when the next slot frees, any back-off the exchange imposed (429/418), the last outcomes,
the failures of the last day, and crash traces - window reservations that no outcome record claims, left by
a process killed between reserving a slot and recording what it did. Read-only: one GetItem and two Queries
per account, plus one for the registry.

`dry-run` and `invoke` call the deployed function once, synchronously, as `aws lambda invoke` does, and
print its JSON answer.

Exit codes (for cron and scripts): 0 all well; 1 an account has failures in the last day, an active
back-off or a crash trace (status), or the function reported an error (dry-run, invoke); 2 a usage,
configuration or access problem (nothing shown).

Only boto3 is needed besides this package: nothing here imports Powertools (the function's logging).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from ..config import EXCHANGE_HOURLY_LIMIT, MAX_RECV_WINDOW_MS, Settings
from ..config import _integer as environment_integer
from ..errors import CollectorError, ConfigurationError
from ..store import CollectorTable
from . import deployed
from .model import DEFAULT_LAST, Limits
from .queries import build_report
from .render import render_json, render_text

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


_STATUS_DESCRIPTION = """\
What the collector did, read from its table (read-only). Per account: the calls counting against the
rolling hour and when the next slot frees, any back-off the exchange imposed (429/418), the last outcomes,
the failures of the last day, and crash traces - window reservations that no outcome record claims.

Exit codes: 0 all well; 1 an account has failures in the last day, an active back-off or a crash trace;
2 a usage, configuration or access problem (nothing shown)."""


def status(
    table: str,
    *,
    accounts: Sequence[str] = (),
    last: int = DEFAULT_LAST,
    limits: Limits | None = None,
    as_json: bool = False,
    client: DynamoDBClient | None = None,
    region: str | None = None,
    clock_ms: Callable[[], int] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the status of `table`'s accounts; the exit code (0 fine, 1 alert, 2 could not read the table)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        client = client or _dynamodb_client(region)
        now_ms = clock_ms() if clock_ms else time.time_ns() // 1_000_000
        report = build_report(
            CollectorTable(client, table), table, accounts=accounts, last=last, limits=limits or Limits(), now_ms=now_ms
        )
    except CollectorError as error:
        print(f"error: {explain(error, table, client)}", file=err)
        return 2
    out.write(render_json(report) + "\n" if as_json else render_text(report))
    return 1 if report.alert else 0


def call_function(
    function: str, event: Any, region: str | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Invoke the deployed function with `event` and print its answer; 0 when it returned, 1 when it reported
    an error (its errorType and errorMessage go to stderr), 2 when it could not be invoked."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        result = deployed.invoke(function, event, region)
    except CollectorError as error:
        print(f"error: {explain(error)}", file=err)
        return 2
    out.write(json.dumps(result.payload, indent=2) + "\n")
    if result.function_error:
        print(f"error: {function} failed ({result.function_error}): {result.error_line}", file=err)
        return 1
    return 0


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    prog: str = "fund-collector",
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`fund-collector [status|dry-run|invoke] [options]`; returns the exit code (see the module docstring)."""
    env = os.environ if environ is None else environ
    err = err or sys.stderr
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or (arguments[0].startswith("-") and arguments[0] not in ("-h", "--help")):
        arguments.insert(0, "status")
    try:
        args = _parser(prog).parse_args(arguments)
    except SystemExit as stop:  # argparse has printed the usage error (2) or the help (0)
        return stop.code if isinstance(stop.code, int) else 2
    try:
        # What can be checked here is checked before anything is asked of AWS.
        if args.command == "status":
            limits = _limits(args.limit, env)
            table = deployed.stack_output(args.stack, "TableName", args.region) if args.stack else args.table
            if args.stack and args.limit is None:
                # The limit in force is the one the stack was deployed with.
                deployed_limit = deployed.stack_parameter(args.stack, "MaxCallsPerHour", args.region)
                if deployed_limit is not None and deployed_limit.isdigit():
                    limits = replace(limits, fallback_limit=int(deployed_limit), fallback_source="stack")
            table = (table or env.get("TABLE_NAME", "")).strip()
            if not table:
                raise ConfigurationError(
                    "no table given: pass --table NAME, --stack NAME or set TABLE_NAME (the stack's table name)"
                )
        else:
            event = _event(args)
            function = deployed.stack_output(args.stack, "FunctionName", args.region) if args.stack else args.function
    except CollectorError as error:
        print(f"error: {explain(error)}", file=err)
        return 2
    if args.command == "status":
        return status(
            table,
            accounts=args.account or (),
            last=args.last,
            limits=limits,
            as_json=args.json,
            region=args.region,
            out=out,
            err=err,
        )
    return call_function(function, event, args.region, out=out, err=err)


def _event(args: argparse.Namespace) -> dict[str, Any]:
    """The event `dry-run` or `invoke` sends: the console events the function accepts (see events.py)."""
    if getattr(args, "event", None) is not None:
        return _event_file(args.event)
    event: dict[str, Any] = {"dryRun": True} if args.command == "dry-run" else {}
    if args.accounts is not None:
        labels = [label.strip() for label in args.accounts.split(",")]
        if not all(labels):
            raise ConfigurationError(f"--accounts takes labels separated by commas, got {args.accounts!r}")
        event["accounts"] = list(dict.fromkeys(labels))
    return event


def _event_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as file:
            event = json.load(file)
    except OSError as error:
        raise ConfigurationError(f"cannot read the event file {path!r}: {error.strerror}") from None
    except ValueError as error:
        raise ConfigurationError(f"the event file {path!r} is not JSON: {error}") from None
    if not isinstance(event, dict):
        raise ConfigurationError(f"the event file {path!r} holds a {type(event).__name__}, not a JSON object")
    return event


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The operator's command for the Fund Auto-collection function: what it did (status, read from "
        "its DynamoDB table) and one call of the deployed function (dry-run, invoke).",
        epilog="exit codes: 0 all well; 1 an alert (status) or an error reported by the function (dry-run, "
        "invoke); 2 a usage, configuration or access problem",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{status,dry-run,invoke}")
    show = commands.add_parser(
        "status",
        help="window usage, back-off, last outcomes, failures and crash traces per account (the default)",
        description=_STATUS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = show.add_mutually_exclusive_group()
    where.add_argument("--table", help="the collector's DynamoDB table (default: $TABLE_NAME)")
    where.add_argument("--stack", metavar="NAME", help="read the table name from this stack's TableName output")
    show.add_argument(
        "--account",
        action="append",
        metavar="LABEL",
        help="an account label; repeat for several (default: every account in the table's registry)",
    )
    show.add_argument(
        "--last",
        type=_bounded(0, 1000),
        default=DEFAULT_LAST,
        metavar="N",
        help=f"how many recent outcomes to show per account (default {DEFAULT_LAST})",
    )
    show.add_argument(
        "--limit",
        type=_bounded(1, EXCHANGE_HOURLY_LIMIT),
        metavar="CALLS",
        help="calls per hour to assume when the table records none (default: $MAX_CALLS_PER_HOUR, else 500)",
    )
    show.add_argument("--json", action="store_true", help="machine-readable output with stable keys")
    _region_option(show)

    check = commands.add_parser(
        "dry-run",
        help='invoke the deployed function with {"dryRun": true}: checks its setup, sends no collection',
        description='Invoke the deployed function once with {"dryRun": true} and print its JSON answer. The '
        "function checks its configuration, secret, key and window and sends no collection. Exits 1, with the "
        "function's errorType and errorMessage, when the function reports an error.",
    )
    _function_options(check)
    check.add_argument("--accounts", metavar="A,B", help="check only these account labels (comma-separated)")
    _region_option(check)

    run = commands.add_parser(
        "invoke",
        help="invoke the deployed function once, now: a real collection (as the schedule does)",
        description="Invoke the deployed function once with {} - a real collection for every configured account, "
        "within the same hourly limit as the scheduled runs - and print its JSON answer. Exits 1, with the "
        "function's errorType and errorMessage, when the function reports an error.",
    )
    _function_options(run)
    payload = run.add_mutually_exclusive_group()
    payload.add_argument("--accounts", metavar="A,B", help="collect only for these account labels (comma-separated)")
    payload.add_argument("--event", metavar="FILE", help="send this JSON event instead (e.g. events/dry-run.json)")
    _region_option(run)
    return parser


def _function_options(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--function", metavar="NAME", help="the function's name or ARN")
    which.add_argument("--stack", metavar="NAME", help="invoke the function named by this stack's FunctionName output")


def _region_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", help="the AWS region (default: $AWS_REGION or your profile's)")


def _bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse type for a whole-number option (argparse names the option in its message)."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _limits(option: int | None, env: Mapping[str, str]) -> Limits:
    """The limit to assume when the table records none: --limit, else the function's own configuration
    (read by the function's rules, so a value the function refuses is refused here too)."""
    recv_window = environment_integer(env, "RECV_WINDOW_MS", Settings.recv_window_ms, 1, MAX_RECV_WINDOW_MS)
    if option is not None:
        return Limits(option, "option", recv_window)
    if env.get("MAX_CALLS_PER_HOUR", "").strip():
        configured = environment_integer(env, "MAX_CALLS_PER_HOUR", EXCHANGE_HOURLY_LIMIT, 1, EXCHANGE_HOURLY_LIMIT)
        return Limits(configured, "environment", recv_window)
    return Limits(recv_window_ms=recv_window)


def _dynamodb_client(region: str | None = None) -> DynamoDBClient:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    from ..aws_config import BOUNDED_CLIENT_CONFIG
    from ..errors import WindowStoreError

    # The function's retry policy, with room for a person's connection to a far region.
    config = BOUNDED_CLIENT_CONFIG.merge(Config(connect_timeout=5, read_timeout=10))
    try:
        # A session of its own: the environment (AWS_PROFILE, AWS_ENDPOINT_URL...) is read now, not cached
        # from an earlier client in the same process.
        return boto3.session.Session(region_name=region).client("dynamodb", config=config)
    except BotoCoreError as error:
        raise WindowStoreError(f"could not create a DynamoDB client: {error}") from error


def explain(error: CollectorError, table: str = "", client: DynamoDBClient | None = None) -> str:
    """One line naming what is wrong with reaching AWS: the table, the stack or the function (the errors keep
    the AWS error as their cause)."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    cause = error.__cause__
    where = ""
    if client is not None:
        where = f" (region {client.meta.region_name}, endpoint {client.meta.endpoint_url})"
    if isinstance(cause, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(after `aws sso login` for SSO profiles)"
        )
    if isinstance(cause, NoRegionError):
        return "no AWS region configured: set AWS_REGION (or a region in your AWS profile)"
    if isinstance(cause, ProfileNotFound):
        return f"{cause} (check AWS_PROFILE)"
    if not table:  # the stack or the function: their messages name them, the region and AWS's error
        return " ".join(str(error).split())
    if isinstance(cause, EndpointConnectionError):
        return f"cannot reach DynamoDB{where}: {cause}"
    if isinstance(cause, ClientError):
        details = cause.response.get("Error", {})
        code, message = details.get("Code", "?"), details.get("Message", "")
        if code == "ResourceNotFoundException":
            return f"table {table!r} not found{where}: check --table / TABLE_NAME, the region and the account"
        return f"AWS refused to read table {table!r}{where}: {code}: {message}"
    return " ".join(str(error).split())
