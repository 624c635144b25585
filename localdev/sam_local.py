"""The local services for `make sam-local` (scripts/sam-local.sh): what `sam local invoke` runs against.

Starts moto's server (Secrets Manager, DynamoDB) and the exchange emulator on one address - the docker0
gateway, so that only this machine's containers reach them, never 0.0.0.0 - creates the table from
template.yaml's own definition and a secret holding a fresh Ed25519 key registered with the emulator, and
writes the `--env-vars` file that points the function at them through `host.docker.internal`. Then it serves
until SIGTERM/SIGINT, and on the way out prints (and writes as JSON to --summary) what the exchange emulator
received and the outcome records in the table.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from localdev.exchange_emulator import AUTO_COLLECTION_PATH, ExchangeEmulator
from localdev.run import local_aws, outcome_records, provision
from localdev.template import REPO

FUNCTION = "CollectorFunction"
# The name `sam local invoke --add-host host.docker.internal:host-gateway` gives the docker0 gateway inside
# the container; the function's configuration accepts plain http for it (and for loopback) only.
CONTAINER_HOST = "host.docker.internal"


@contextlib.contextmanager
def moto_server(host: str) -> Iterator[int]:
    """make run's moto server, on `host` (the docker0 gateway); yields its port."""
    with local_aws(host) as endpoint:
        yield int(endpoint.rsplit(":", 1)[1])


def function_environment(provisioned: dict[str, str], exchange_port: int, moto_port: int) -> dict[str, str]:
    """The repository's env.json (the same tuning as a by-hand run), pointed at the services started here."""
    environment: dict[str, str] = json.loads((REPO / "env.json").read_text())[FUNCTION]
    environment.update(
        SECRET_ID=provisioned["SECRET_ID"],
        TABLE_NAME=provisioned["TABLE_NAME"],
        MAX_CALLS_PER_HOUR=provisioned["MAX_CALLS_PER_HOUR"],
        BINANCE_BASE_URL=f"http://{CONTAINER_HOST}:{exchange_port}",
        AWS_ENDPOINT_URL=f"http://{CONTAINER_HOST}:{moto_port}",
        POWERTOOLS_SERVICE_NAME=provisioned["POWERTOOLS_SERVICE_NAME"],
    )
    return environment


def summary(exchange: ExchangeEmulator, table: str) -> dict[str, Any]:
    return {
        "requests": [
            {"method": r.method, "path": r.path, "status": r.status, "account": r.account, "executed": r.executed}
            for r in exchange.requests()
        ],
        "violations": len(exchange.violations()),
        "outcomes": outcome_records(table),
    }


def print_summary(result: dict[str, Any], out: Any) -> None:
    collections = [r for r in result["requests"] if r["path"] == AUTO_COLLECTION_PATH]
    accepted = sum(1 for r in collections if r["status"] == 200)
    print(
        f"exchange emulator: {len(collections)} signed collection request(s), {accepted} accepted, "
        f"{result['violations']} rule violation(s)",
        file=out,
    )
    print("outcome records in the table:", file=out)
    for record in result["outcomes"]:
        sent = len(record.get("attemptLog") or [])
        print(
            f"  {record['startedAt']}  {record['trigger']:<8} {record['status']:<17} "
            f"window {record['windowUsed']}/{record['windowLimit']}  {sent} request(s) sent",
            file=out,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True, help="the docker0 gateway address (never 0.0.0.0)")
    parser.add_argument("--env-vars", required=True, type=Path, help="where to write sam's --env-vars file")
    parser.add_argument("--summary", type=Path, help="where to write what happened, as JSON, on the way out")
    args = parser.parse_args(argv)
    host = ipaddress.ip_address(args.host)
    if host.is_unspecified or host.is_loopback:
        parser.error(f"--host {host}: the containers reach the host at its docker0 gateway address")
    sys.path.insert(0, str(REPO / "handler"))  # auto_collector.store reads the outcome records

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    with moto_server(str(host)) as moto_port, ExchangeEmulator(host=str(host)) as exchange:
        provisioned = provision(exchange, budget=500)
        environment = function_environment(provisioned, exchange.port, moto_port)
        args.env_vars.parent.mkdir(parents=True, exist_ok=True)
        partial = args.env_vars.with_suffix(".partial")
        partial.write_text(json.dumps({FUNCTION: environment}, indent=2) + "\n")
        partial.replace(args.env_vars)  # its appearance tells scripts/sam-local.sh that everything is ready
        print(
            f"moto at {host}:{moto_port}, exchange emulator at {host}:{exchange.port}; table "
            f"{environment['TABLE_NAME']!r} from template.yaml, secret {environment['SECRET_ID']!r} "
            f"(fresh Ed25519 key); {args.env_vars.relative_to(REPO) if args.env_vars.is_absolute() else args.env_vars}",
            flush=True,
        )
        stop.wait()
        result = summary(exchange, environment["TABLE_NAME"])
    print_summary(result, sys.stdout)
    if args.summary:
        args.summary.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
