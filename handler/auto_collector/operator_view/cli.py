"""The operator's view: `python -m auto_collector status` shows what the collector did, read from its table.

Per account: the calls counting against the rolling hour and when the next slot frees, any back-off the
exchange imposed (429/418), the last outcomes, the failures of the last day, and crash traces - window
reservations that no outcome record claims, left by a process killed between reserving a slot and
recording what it did. Read-only: one GetItem and two Queries per account, plus one for the registry.

Exit codes (for cron and scripts): 0 all well; 1 an account has failures in the last day, an active
back-off or a crash trace; 2 a usage, configuration or access problem (nothing shown).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from ..config import EXCHANGE_HOURLY_LIMIT, MAX_RECV_WINDOW_MS, Settings
from ..config import _integer as environment_integer
from ..errors import CollectorError, ConfigurationError
from ..store import WindowStore
from .model import DEFAULT_LAST, Limits
from .queries import build_report
from .render import render_json, render_text

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


def status(
    table: str,
    *,
    accounts: Sequence[str] = (),
    last: int = DEFAULT_LAST,
    limits: Limits | None = None,
    as_json: bool = False,
    client: DynamoDBClient | None = None,
    clock_ms: Callable[[], int] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the status of `table`'s accounts; the exit code (0 fine, 1 alert, 2 could not read the table)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        client = client or _dynamodb_client()
        now_ms = clock_ms() if clock_ms else time.time_ns() // 1_000_000
        report = build_report(
            WindowStore(client, table), table, accounts=accounts, last=last, limits=limits or Limits(), now_ms=now_ms
        )
    except CollectorError as error:
        print(f"error: {explain(error, table, client)}", file=err)
        return 2
    out.write(render_json(report) + "\n" if as_json else render_text(report))
    return 1 if report.alert else 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """`python -m auto_collector [status] [options]`; returns the exit code (see the module docstring)."""
    env = os.environ if environ is None else environ
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or (arguments[0].startswith("-") and arguments[0] not in ("-h", "--help")):
        arguments.insert(0, "status")
    try:
        args = _parser().parse_args(arguments)
    except SystemExit as stop:  # argparse has printed the usage error (2) or the help (0)
        return stop.code if isinstance(stop.code, int) else 2
    try:
        table = (args.table or env.get("TABLE_NAME", "")).strip()
        if not table:
            raise ConfigurationError("no table given: pass --table NAME or set TABLE_NAME (the stack's table name)")
        limits = _limits(args.limit, env)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return status(table, accounts=args.account or (), last=args.last, limits=limits, as_json=args.json)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m auto_collector",
        description="The operator's view of the Fund Auto-collection function, read from its DynamoDB table.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser(
        "status",
        help="window usage, back-off, last outcomes, failures and crash traces per account (the default)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("--table", help="the collector's DynamoDB table (default: $TABLE_NAME)")
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
    return parser


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


def _dynamodb_client() -> DynamoDBClient:
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
        return boto3.session.Session().client("dynamodb", config=config)
    except BotoCoreError as error:
        raise WindowStoreError(f"could not create a DynamoDB client: {error}") from error


def explain(error: CollectorError, table: str, client: DynamoDBClient | None) -> str:
    """One line naming what is wrong with reaching the table (the store's errors keep the AWS error as cause)."""
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
    if isinstance(cause, EndpointConnectionError):
        return f"cannot reach DynamoDB{where}: {cause}"
    if isinstance(cause, ClientError):
        details = cause.response.get("Error", {})
        code, message = details.get("Code", "?"), details.get("Message", "")
        if code == "ResourceNotFoundException":
            return f"table {table!r} not found{where}: check --table / TABLE_NAME, the region and the account"
        return f"AWS refused to read table {table!r}{where}: {code}: {message}"
    return " ".join(str(error).split())
