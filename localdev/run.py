"""`make run`: the collector's main job on this machine, with no AWS account and no exchange account.

Starts moto's server (Secrets Manager, DynamoDB) and the exchange emulator on 127.0.0.1, creates the
table from template.yaml's own definition and a secret holding a fresh Ed25519 key, then invokes the
handler named by the template with every file in events/ - JSON in, JSON out, as Lambda does - and
prints each invocation's status, the window usage and the outcome records from the table.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from localdev.exchange_emulator import AUTO_COLLECTION_PATH, ApiCredential, ExchangeEmulator
from localdev.keys import new_ed25519_pem
from localdev.lambda_context import LambdaContext
from localdev.template import REPO, create_table_from_template, function_entry_point, load_template

EVENTS = REPO / "events"
LOG_FILE = REPO / ".cache" / "make-run.log"


@contextlib.contextmanager
def local_aws(host: str = "127.0.0.1") -> Iterator[str]:
    """moto's server (Secrets Manager, DynamoDB, ...) on `host`; this process's boto3 clients use it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        AWS_DEFAULT_REGION="eu-west-1",
        AWS_REGION="eu-west-1",
    )
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield endpoint
    finally:
        server.stop()


def load_handler() -> Callable[[Any, Any], Any]:
    code_dir, module, attribute = function_entry_point(load_template())
    sys.path.insert(0, str(code_dir))
    return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]


def provision(exchange: ExchangeEmulator, budget: int) -> dict[str, str]:
    import boto3

    table = "fund-auto-collector-local"
    create_table_from_template(boto3.client("dynamodb"), table)
    private_pem, public_pem = new_ed25519_pem()
    api_key = uuid.uuid4().hex + uuid.uuid4().hex
    exchange.add_credential(ApiCredential(api_key=api_key, public_key_pem=public_pem))
    exchange.set_balances(
        "default",
        {"USDT": {"umWalletBalance": "1250.5"}, "BTC": {"cmWalletBalance": "0.02"}, "BNB": {"umWalletBalance": "3"}},
    )
    secret_id = "fund-auto-collector/local"
    boto3.client("secretsmanager").create_secret(
        Name=secret_id, SecretString=json.dumps({"apiKey": api_key, "privateKey": private_pem})
    )
    return {
        "SECRET_ID": secret_id,
        "TABLE_NAME": table,
        "BINANCE_BASE_URL": exchange.base_url,
        "MAX_CALLS_PER_HOUR": str(budget),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "fund-auto-collector",
        "POWERTOOLS_METRICS_NAMESPACE": "FundAutoCollector",
    }


def invoke(handler: Callable[[Any, Any], Any], event_file: Path, timeout_ms: int) -> dict[str, Any]:
    return _invoke_event(handler, json.loads(event_file.read_text()), timeout_ms)


def _invoke_event(handler: Callable[[Any, Any], Any], event: Any, timeout_ms: int) -> dict[str, Any]:
    try:
        result = handler(event, LambdaContext(timeout_ms=timeout_ms))
        serialised: dict[str, Any] = json.loads(json.dumps(result))  # Lambda serialises the return value
        return serialised
    except Exception as error:
        return {"status": "error", "errorType": type(error).__name__, "errorMessage": str(error)}


def outcome_records(table: str) -> list[dict[str, Any]]:
    import boto3

    from auto_collector.records import plain_record

    response = boto3.client("dynamodb").scan(TableName=table, ConsistentRead=True)
    records = [plain_record(item) for item in response["Items"]]
    return sorted((r for r in records if r["sk"].startswith("OUTCOME#")), key=lambda r: r["sk"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("events", nargs="*", type=Path, help="event files (default: every file in events/)")
    parser.add_argument("--repeat", type=int, default=2, help="invoke the event files this many times")
    parser.add_argument(
        "--budget", type=int, default=2, help="MAX_CALLS_PER_HOUR for this run (small, to show the window at work)"
    )
    parser.add_argument("--timeout-ms", type=int, default=60_000, help="the simulated function timeout")
    parser.add_argument(
        "--accounts",
        type=int,
        default=12,
        help="then collect this many accounts behind the one IP on two scheduled ticks (0 skips it)",
    )
    args = parser.parse_args(argv)
    event_files = args.events or sorted(EVENTS.glob("*.json"))
    out = sys.stdout
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)

    with local_aws() as aws_endpoint, ExchangeEmulator() as exchange, LOG_FILE.open("w") as log:
        environment = provision(exchange, args.budget)
        os.environ.update(environment)
        print(f"AWS emulation (moto) at {aws_endpoint}; exchange emulator at {exchange.base_url}", file=out)
        print(
            f"table {environment['TABLE_NAME']!r} from template.yaml; secret {environment['SECRET_ID']!r} "
            f"holds a fresh Ed25519 key; budget {args.budget}/hour\n",
            file=out,
        )
        with contextlib.redirect_stdout(log):  # the function's JSON logs and EMF metrics go to the log file
            handler = load_handler()
            results = [
                (event_file, invoke(handler, event_file, args.timeout_ms))
                for _ in range(args.repeat)
                for event_file in event_files
            ]
        print(f"{'event':<22} {'status':<17} {'window':>9}  next slot / error", file=out)
        for event_file, result in results:
            window = f"{result.get('windowUsed')}/{result.get('windowLimit')}" if "windowUsed" in result else "-"
            detail = result.get("nextSlotAt") or ""
            if result["status"] == "error":
                detail = f"{result['errorType']}: {result['errorMessage']}"
            print(f"{event_file.name:<22} {result['status']:<17} {window:>9}  {detail}", file=out)

        collections = exchange.requests(AUTO_COLLECTION_PATH)
        accepted = sum(1 for r in collections if r.status == 200)
        print(
            f"\nexchange emulator: {len(collections)} signed collection request(s), {accepted} accepted "
            f"(signature, API key and timestamp verified); USDT now in margin: "
            f"{exchange.balances('default')['USDT']['crossMarginFree']}",
            file=out,
        )
        print("\noutcome records in the table:", file=out)
        for record in outcome_records(environment["TABLE_NAME"]):
            attempts = (
                ", ".join(
                    f"#{a['reservation']} HTTP {a['httpStatus']} {a['latencyMs']} ms" for a in record["attemptLog"]
                )
                or "no request sent"
            )
            print(
                f"  {record['startedAt']}  {record['trigger']:<8} {record['status']:<17} "
                f"window {record['windowUsed']}/{record['windowLimit']}  [{attempts}]",
                file=out,
            )
        print(f"\nfull function logs (JSON, with EMF metrics): {LOG_FILE.relative_to(REPO)}", file=out)

        from auto_collector import operator_view  # importable once load_handler() has put the code on sys.path

        print("\noperator view (`python -m auto_collector status`):\n", file=out)
        operator_view.status(environment["TABLE_NAME"], out=out)
        failed = [r for _, r in results if r["status"] == "error"]
        if args.accounts:
            with contextlib.redirect_stdout(log):
                ticks = many_accounts(handler, exchange, environment, args.accounts, args.timeout_ms)
            print_ticks(ticks, exchange, out)
            failed += [tick for tick in ticks if tick["status"] == "error"]
    return 1 if failed else 0


def many_accounts(
    handler: Callable[[Any, Any], Any],
    exchange: ExchangeEmulator,
    environment: dict[str, str],
    count: int,
    timeout_ms: int,
) -> list[dict[str, Any]]:
    """`count` accounts in one deployment, one scheduled tick, then another two minutes later.

    The exchange allows 12,000 IP weight a minute and a collection weighs 1500: 8 a minute from one address. The
    second tick runs on a clock moved two minutes ahead (for the function, moto and the emulator alike), so the
    demo does not wait for the weight to free.
    """
    import time

    import boto3

    secrets = boto3.client("secretsmanager")
    accounts = []
    for index in range(count):
        label = f"fund-{index + 1:02d}"
        private_pem, public_pem = new_ed25519_pem()
        api_key = uuid.uuid4().hex + uuid.uuid4().hex
        exchange.add_credential(ApiCredential(api_key=api_key, public_key_pem=public_pem, account=label))
        secret_id = f"fund-auto-collector/{label}"
        secrets.create_secret(Name=secret_id, SecretString=json.dumps({"apiKey": api_key, "privateKey": private_pem}))
        accounts.append({"label": label, "secretId": secret_id})
    os.environ.pop("SECRET_ID", None)
    os.environ.update(ACCOUNTS=json.dumps(accounts), MAX_CALLS_PER_HOUR="500")
    event = json.loads((EVENTS / "scheduled.json").read_text())
    real_time_ns = time.time_ns
    ticks = []
    try:
        for tick in range(2):
            shift_ns = (tick + 1) * 120 * 1_000_000_000  # the single-account demo above used this minute
            time.time_ns = lambda shift_ns=shift_ns: real_time_ns() + shift_ns  # type: ignore[misc]
            result = _invoke_event(handler, {**event, "id": str(uuid.uuid4())}, timeout_ms)
            ticks.append(result)
    finally:
        time.time_ns = real_time_ns
    return ticks


def print_ticks(ticks: list[dict[str, Any]], exchange: ExchangeEmulator, out: Any) -> None:
    print(f"\n{len(ticks)} scheduled ticks, two minutes apart, every account behind the one IP:", file=out)
    for number, result in enumerate(ticks, start=1):
        if result["status"] == "error":
            print(f"  tick {number}: {result['errorType']}: {result['errorMessage']}", file=out)
            continue
        summaries = result["accounts"]
        collected = [s["account"] for s in summaries if s["status"] == "collected"]
        deferred = [s for s in summaries if s["status"] == "deferred"]
        until = deferred[0]["deferredUntil"] if deferred else None
        print(
            f"  tick {number}: collected {len(collected):>2} ({', '.join(collected)}); deferred {len(deferred)}"
            + (f" ({', '.join(s['account'] for s in deferred)}) until {until}" if deferred else ""),
            file=out,
        )
    refused = [r for r in exchange.requests() if r.status in (418, 429)]
    print(
        f"  exchange emulator: limit {exchange.ip_weight_limit_1m} IP weight a minute, "
        f"{len(refused)} request(s) refused with 429/418",
        file=out,
    )


if __name__ == "__main__":
    sys.exit(main())
