"""The emulated world every measurement runs against, all on 127.0.0.1.

moto's server (DynamoDB, Secrets Manager) behind the counting proxy, and the exchange emulator with the
exchange's real limits: 500 collections an hour per account, 12,000 IP weight a minute (8 collections). The
table is created from template.yaml's definition, each account gets its own Ed25519 key (registered with the
emulator under the account's label) and its own secret.

Samples that would exceed the real limits let simulated time pass between them instead (bench/simclock.py):
the emulator's clock is the real one plus a shift that moves on SAMPLE_GAP_MS before every sample, so its
rolling minute holds no earlier sample's weight. A warm child reads the same shifted clock, so the collector's
own IP-weight window (held 66 s a request, ip_window.py) has expired too. A cold child is a fresh interpreter
on the real clock: for it the emulator's server time is set back by the shift (its timestamps stay valid) and
the IP-window item's entries and the latest expiry it pruned are removed, as the minute would have expired them
(its sequence number stays, so a new container's first reservation still fails its condition and tries again,
as in production).
Each batch still uses a fresh account label, and no account comes near 500 collections in an hour of the
emulator's clock.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.proxy import CountingProxy
from bench.simclock import SharedClock
from localdev.exchange_emulator import ApiCredential, ExchangeEmulator, Fault
from localdev.template import REPO, create_table_from_template

REGION = "eu-west-1"
TABLE = "fund-auto-collector-bench"
COLD_CHILD = Path(__file__).resolve().parent / "cold_child.py"
#: Simulated time between two samples: more than the 66 s a request holds its IP weight in the collector's
#: window at the default recvWindow (5 s + 1 s + 60 s: ip_window.IpWeightPolicy.occupancy_ms) and the exchange's
#: 60 s, so no sample waits for, or is refused, weight another sample used.
SAMPLE_GAP_MS = 67_000
#: The deployment's IP-weight window item (handler/auto_collector/ip_store.py).
IP_WINDOW_KEY = {"pk": {"S": "IPWEIGHT"}, "sk": {"S": "WINDOW"}}
#: The variables the function reads, besides the account ones, as the template sets them.
FUNCTION_ENV = {
    "TABLE_NAME": TABLE,
    "MAX_CALLS_PER_HOUR": "500",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "fund-auto-collector-bench",
    "POWERTOOLS_METRICS_NAMESPACE": "FundAutoCollector",
}


@dataclass
class ColdSample:
    wall_ms: float  # spawn to "done" (interpreter start, imports, one invocation; not the shutdown)
    process_ms: float  # spawn to exit: the whole process as a person sees it, interpreter shutdown included
    process_cpu_ms: float  # the child's CPU time (user + system) over its whole life, shutdown included
    import_ms: float  # measured inside the child: interpreter start of the script to imports done
    invoke_ms: float  # the invocation
    maxrss_kb: int  # peak resident set of the child's image (VmHWM), see cold_child.py
    status: str
    aws: dict[str, int]
    cpu_ms: float  # the child's CPU time (user + system, all threads) until "done": less sensitive to a busy machine
    log_bytes: int  # what the invocation wrote to stdout (its JSON logs and EMF metrics: CloudWatch Logs volume)


class Harness:
    def __init__(self, work: Path) -> None:
        from moto.server import ThreadedMotoServer

        self.work = work
        self.work.mkdir(parents=True, exist_ok=True)
        self.home = Path(tempfile.mkdtemp(prefix="home-", dir=self.work))  # no ~/.aws of the user
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.moto_endpoint = f"http://{host}:{port}"
        self.proxy = CountingProxy(self.moto_endpoint).start()
        self.clock = SharedClock(self.work / "clock", create=True)
        # The exchange's real limits (the emulator's defaults): time passes between samples instead.
        self.exchange = ExchangeEmulator(clock_ms=self.clock.now_ms).start()
        self.direct = {
            "endpoint_url": self.moto_endpoint,
            "region_name": REGION,
            "aws_access_key_id": "bench",
            "aws_secret_access_key": "bench",
        }
        direct = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name=REGION)
        self.dynamodb = direct.client("dynamodb", endpoint_url=self.moto_endpoint)
        self.secrets = direct.client("secretsmanager", endpoint_url=self.moto_endpoint)
        create_table_from_template(self.dynamodb, TABLE)
        self._tables = {TABLE}
        self._secret_ids: dict[str, str] = {}

    def close(self) -> None:
        self.exchange.stop()
        self.proxy.stop()
        self._moto.stop()

    # ------------------------------------------------------------------ provisioning

    def table(self, name: str) -> str:
        """A table of its own (created once), named after `name`.

        Variants interleaved in one warm process are separate deployments: each needs its own table, since the
        table holds the deployment's IP-weight window. Sharing one, every invocation would find the item changed
        by the other variant and reserve twice (a failed conditional write, then the winning one), which a warm
        container of a real deployment does not.
        """
        table = f"{TABLE}-{name}"
        if table not in self._tables:
            create_table_from_template(self.dynamodb, table)
            self._tables.add(table)
        return table

    def add_account(self, label: str) -> str:
        """A fresh Ed25519 key for `label`: registered with the exchange, stored in its own secret."""
        if label in self._secret_ids:
            return self._secret_ids[label]
        key = Ed25519PrivateKey.generate()
        private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        api_key = uuid.uuid4().hex + uuid.uuid4().hex
        self.exchange.add_credential(ApiCredential(api_key=api_key, public_key_pem=public_pem, account=label))
        secret_id = f"bench/{label}"
        self.secrets.create_secret(
            Name=secret_id, SecretString=json.dumps({"apiKey": api_key, "privateKey": private_pem})
        )
        self._secret_ids[label] = secret_id
        return secret_id

    def preload_outcomes(self, label: str, count: int, table: str = TABLE) -> float:
        """`count` outcome records for `label`, written straight into moto with BatchWriteItem; returns seconds.

        The requests are JSON posted on one keep-alive connection, without boto3: its request validation and
        serialisation would take longer than moto's own work. The garbage collector is paused meanwhile (each
        record is dozens of objects; collections over a growing table would make the load quadratic) and the
        table's objects are then frozen out of later collections.
        """
        started = time.perf_counter()
        base_ms = int(time.time() * 1000) - 90 * 86_400_000
        parts = urlsplit(self.moto_endpoint)
        connection = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=60)
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem",
            # moto reads the region and service from the credential scope; signatures are not checked.
            "Authorization": f"AWS4-HMAC-SHA256 Credential=bench/20250101/{REGION}/dynamodb/aws4_request, "
            "SignedHeaders=host, Signature=0",
        }
        gc.disable()
        try:
            for first in range(0, count, 25):
                requests = []
                for n in range(first, min(first + 25, count)):
                    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((base_ms + n * 300_000) / 1000))
                    item = _outcome_item(label, f"{at}.000Z", f"preloaded-{n:06d}", n)
                    requests.append({"PutRequest": {"Item": item}})
                pending: Any = {table: requests}
                while pending:
                    connection.request("POST", "/", json.dumps({"RequestItems": pending}), headers)
                    response = connection.getresponse()
                    body = json.loads(response.read())
                    if response.status != 200:
                        raise RuntimeError(f"BatchWriteItem failed: {response.status} {body}")
                    pending = body.get("UnprocessedItems") or None
        finally:
            connection.close()
            gc.enable()
            gc.freeze()
        return time.perf_counter() - started

    def count_items(self, label: str, table: str = TABLE) -> int:
        paginator = self.dynamodb.get_paginator("query")
        total = 0
        for page in paginator.paginate(
            TableName=table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"ACCOUNT#{label}"}},
            Select="COUNT",
        ):
            total += page["Count"]
        return total

    def item(self, label: str, sort_key: str, table: str = TABLE) -> dict[str, Any]:
        key = {"pk": {"S": f"ACCOUNT#{label}"}, "sk": {"S": sort_key}}
        return self.dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item", {})

    def window_item(self, label: str, table: str = TABLE) -> dict[str, Any]:
        """The window the function spends for `label`: its exchange account's, which the registry names."""
        key = {"pk": {"S": "REGISTRY"}, "sk": {"S": f"ACCOUNT#{label}"}}
        registry = self.dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item", {})
        return self.item(registry.get("windowKey", {}).get("S", label), "WINDOW", table)

    def latest_outcome(self, label: str, table: str = TABLE) -> dict[str, Any]:
        response = self.dynamodb.query(
            TableName=table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :o)",
            ExpressionAttributeValues={":pk": {"S": f"ACCOUNT#{label}"}, ":o": {"S": "OUTCOME#2"}},
            ScanIndexForward=False,
            Limit=1,
        )
        return response["Items"][0] if response["Items"] else {}

    @contextlib.contextmanager
    def exchange_latency(self, delay_s: float) -> Iterator[None]:
        """Every auto-collection request answered `delay_s` late (an injected pure-delay fault)."""
        self.exchange.inject(Fault(delay_s=delay_s, count=10**9))
        try:
            yield
        finally:
            self.exchange.clear_faults()  # not reset(): that would also forget the hourly counts

    # ------------------------------------------------------------------ simulated time

    def pass_time_for_cold_sample(self) -> None:
        """A sample's worth of time passes for a fresh interpreter that reads the real clock (see the module doc)."""
        self.clock.advance_ns(SAMPLE_GAP_MS * 1_000_000)
        self.exchange.server_time_offset_ms = -self.clock.shift_ms()  # its server time stays the real time
        with contextlib.suppress(self.dynamodb.exceptions.ConditionalCheckFailedException):  # none made yet
            self.dynamodb.update_item(
                TableName=TABLE,
                Key=IP_WINDOW_KEY,
                # prunedUntilMs too: a warm child on the shifted clock records expiries in the shifted future,
                # which a cold child on the real clock would take for weight still counting.
                UpdateExpression="SET entries = :none, prunedUntilMs = :zero",
                ConditionExpression="attribute_exists(seq)",
                ExpressionAttributeValues={":none": {"L": []}, ":zero": {"N": "0"}},
            )

    def children_follow_clock(self) -> None:
        """For children that install the shared clock (warm_child, ip_weight): the server time is that clock."""
        self.exchange.server_time_offset_ms = 0

    # ------------------------------------------------------------------ environments

    def env(self, **function_env: str) -> dict[str, str]:
        """A child's whole environment: AWS through the proxy, the function's variables, nothing of ours."""
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": self.proxy.endpoint,
            "BINANCE_BASE_URL": self.exchange.base_url,
            **FUNCTION_ENV,
            **function_env,
        }

    def account_env(self, label: str, **extra: str) -> dict[str, str]:
        return {"ACCOUNT_LABEL": label, "SECRET_ID": self.add_account(label), **extra}

    # ------------------------------------------------------------------ running children

    def cold(self, command: list[str], mode: str, paths: list[str], env: dict[str, str]) -> ColdSample:
        """One fresh interpreter: `command` + cold_child.py MODE FD PATHS; timed by this process."""
        self.pass_time_for_cold_sample()
        read_fd, write_fd = os.pipe()
        before = self.proxy.counts()
        with tempfile.TemporaryFile(dir=self.work) as stderr, tempfile.TemporaryFile(dir=self.work) as stdout:
            started = time.perf_counter()
            process = subprocess.Popen(
                [*command, str(COLD_CHILD), mode, str(write_fd), os.pathsep.join(paths)],
                env=env,
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=self.work,
            )
            os.close(write_fd)
            with os.fdopen(read_fd, "rb") as done:
                line = done.readline().decode()
                wall_ms = (time.perf_counter() - started) * 1000
            _, status, usage = os.wait4(process.pid, 0)  # wait() and its CPU time (rusage) in one
            process_ms = (time.perf_counter() - started) * 1000
            process.returncode = os.waitstatus_to_exitcode(status)
            stderr.seek(0)
            errors = stderr.read().decode(errors="replace")
            log_bytes = stdout.seek(0, os.SEEK_END)
        after = self.proxy.counts()
        fields = line.split()
        if not fields or fields[0] != "ok":
            raise RuntimeError(f"cold {mode} run failed: {line.strip() or 'no result'}\n{errors[-3000:]}")
        return ColdSample(
            wall_ms=wall_ms,
            process_ms=process_ms,
            process_cpu_ms=(usage.ru_utime + usage.ru_stime) * 1000,
            import_ms=float(fields[2]),
            invoke_ms=float(fields[3]),
            maxrss_kb=int(fields[4]),
            status=fields[1],
            aws=_diff(before, after),
            cpu_ms=float(fields[5]),
            log_bytes=log_bytes,
        )

    def warm(self, variants: list[dict[str, Any]], n: int, warmup: int, count: int, paths: list[str]) -> dict[str, Any]:
        """Run bench.warm_child with these variants in one process; returns its results."""
        config_path = self.work / f"warm-{uuid.uuid4().hex[:8]}.json"
        out = config_path.with_suffix(".out.json")
        config = {
            "variants": variants,
            "n": n,
            "warmup": warmup,
            "count": count,
            "proxy": self.proxy.endpoint,
            "exchange": self.exchange.base_url,
            "out": str(out),
            "clock": str(self.clock.path),
            "gap_ms": SAMPLE_GAP_MS,
        }
        self.children_follow_clock()
        config_path.write_text(json.dumps(config))
        env = self.env()
        env["PYTHONPATH"] = os.pathsep.join(paths)
        connections = (self.proxy.connections, self.exchange.connections_opened)
        with tempfile.TemporaryFile(dir=self.work) as stderr:
            result = subprocess.run(
                [sys.executable, "-m", "bench.warm_child", str(config_path)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=self.work,
                check=False,
            )
            stderr.seek(0)
            errors = stderr.read().decode(errors="replace")
        if result.returncode != 0 or not out.exists():
            raise RuntimeError(f"warm run failed ({result.returncode}):\n{errors[-3000:]}")
        results: dict[str, Any] = json.loads(out.read_text())
        invocations = sum(len(data["times_ms"]) + len(data["counts"]) + warmup for data in results.values())
        admin = 2 * count * len(variants)  # the child's own reads of the counters, one connection each
        results["_connections"] = {
            "aws": self.proxy.connections - connections[0] - admin,
            "exchange": self.exchange.connections_opened - connections[1] - admin,
            "invocations": invocations,
        }
        config_path.unlink()
        out.unlink()
        for name, data in results.items():
            if not name.startswith("_") and data["failed"]:
                raise RuntimeError(f"warm {name}: {data['failed']} invocations not as expected: {data['failures']}")
        return results


def _diff(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def _outcome_item(label: str, started_iso: str, invocation_id: str, n: int) -> dict[str, Any]:
    """A compact outcome record (its keys as the collector writes them, a few of its fields): the scale test
    is about how many records the account's partition holds, and moto's cost per stored attribute grows with
    the number of attributes, so full-size records would only make the load slow."""
    return {
        "pk": {"S": f"ACCOUNT#{label}"},
        "sk": {"S": f"OUTCOME#{started_iso}#{invocation_id}"},
        "status": {"S": "collected"},
        "startedAt": {"S": started_iso},
        "attemptLog": {"L": [{"M": {"reservation": {"N": str(n)}, "httpStatus": {"N": "200"}}}]},
        "expiresAt": {"N": str(int(time.time()) + 86_400)},
    }


def item_size_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (numbers ~1 byte per 2 digits + 1), as billed."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        digits = raw.lstrip("-").replace(".", "").lstrip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "BOOL" or kind == "NULL":
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in raw.items())
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in raw)
    return len(str(raw))


__all__ = ["REPO", "SAMPLE_GAP_MS", "ColdSample", "Harness", "item_size_bytes"]
