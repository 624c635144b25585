"""The baseline: the same AWS and exchange requests as one collection, made directly, with no framework.

boto3 clients (the collector's retry/timeout config), a requests Session, the API key read once from Secrets
Manager and kept while warm, the Ed25519 key loaded with cryptography, then per invocation:
- one DynamoDB TransactWriteItems, as the collector's reservation (store.reserve_with_weight), of two updates:
  the account window's, with the same attributes set and the same back-off condition, and the IP-weight
  window's (ip_store.py; an item of its own, so it never conflicts with the collector's) - except that both
  sequence numbers are incremented with ADD instead of checked, as a floor that keeps no view of the windows can;
- one signed POST to the exchange;
- one PutItem of an outcome record with the same attributes as the collector's.
No Powertools, no validation, no retries, no logging, no metrics: the floor the collector is compared with.
Same request shapes, so that the emulator's own per-request cost (moto parses every expression) is the
same on both sides and the ratio shows the collector's overhead.

Reads its settings from the same environment variables as the function (TABLE_NAME, SECRET_ID,
BINANCE_BASE_URL) plus BENCH_RAW_LABEL, the account label whose window item and records it writes.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any
from urllib.parse import urlencode

import boto3
import requests
from botocore.config import Config

_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=5)
_RING = 500
_RECV_WINDOW_MS = 5000
_IP_WEIGHT_HELD_MS = 500 + _RECV_WINDOW_MS + 1000 + 60_000


class RawCollector:
    def __init__(self) -> None:
        self.table = os.environ["TABLE_NAME"]
        self.secret_id = os.environ["SECRET_ID"]
        self.base_url = os.environ["BINANCE_BASE_URL"]
        self.label = os.environ.get("BENCH_RAW_LABEL", "raw")
        self.dynamodb = boto3.client("dynamodb", config=_CONFIG)
        self.secrets = boto3.client("secretsmanager", config=_CONFIG)
        self.http = requests.Session()
        self.api_key = ""
        self.key: Any = None
        self.sequence = 0
        self.invocations = 0

    def invoke(self) -> str:
        started_ms = time.time_ns() // 1_000_000
        if self.key is None:
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            secret = json.loads(self.secrets.get_secret_value(SecretId=self.secret_id)["SecretString"])
            self.api_key = secret["apiKey"]
            self.key = load_pem_private_key(secret["privateKey"].encode(), password=None)
        now_ms = time.time_ns() // 1_000_000
        expiry = now_ms + _RECV_WINDOW_MS + 1000 + 3_600_000
        slot = self.sequence % _RING
        # One transaction, as the collector's reservation: the account slot and the IP weight together.
        self.dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": {"pk": {"S": f"ACCOUNT#{self.label}"}, "sk": {"S": "WINDOW"}},
                        "UpdateExpression": "SET lastTimestampMs = :ts, lastExpiryMs = :expiry, #slot = :expiry, "
                        "windowLimit = :limit, updatedAtMs = :now ADD #seq :one",
                        "ConditionExpression": "attribute_not_exists(blockedUntilMs) OR blockedUntilMs <= :now",
                        "ExpressionAttributeNames": {"#seq": "seq", "#slot": f"e{slot:03d}"},
                        "ExpressionAttributeValues": {
                            ":one": {"N": "1"},
                            ":ts": {"N": str(now_ms)},
                            ":expiry": {"N": str(expiry)},
                            ":limit": {"N": "500"},
                            ":now": {"N": str(now_ms)},
                        },
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": {"pk": {"S": f"IPWEIGHT#{self.label}"}, "sk": {"S": "WINDOW"}},
                        "UpdateExpression": "SET entries = :entries, weightLimit = :limit ADD #seq :one",
                        "ConditionExpression": "attribute_not_exists(blockedUntilMs) OR blockedUntilMs <= :now",
                        "ExpressionAttributeNames": {"#seq": "seq"},
                        "ExpressionAttributeValues": {
                            ":one": {"N": "1"},
                            ":entries": {"L": [{"L": [{"N": str(now_ms + _IP_WEIGHT_HELD_MS)}, {"N": "1500"}]}]},
                            ":limit": {"N": "12000"},
                            ":now": {"N": str(now_ms)},
                        },
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
            ]
        )
        self.sequence += 1  # a transaction returns no values: the floor counts its own reservations
        payload = urlencode({"recvWindow": _RECV_WINDOW_MS, "timestamp": now_ms})
        signature = base64.b64encode(self.key.sign(payload.encode())).decode()
        sent = time.perf_counter()
        reply = self.http.post(
            self.base_url + "/sapi/v1/portfolio/auto-collection",
            data=f"{payload}&{urlencode({'signature': signature})}",
            headers={"X-MBX-APIKEY": self.api_key, "Content-Type": "application/x-www-form-urlencoded"},
            timeout=(3, 10),
        )
        latency_ms = int((time.perf_counter() - sent) * 1000)
        status = "collected" if reply.status_code == 200 else f"http-{reply.status_code}"
        weight = reply.headers.get("X-SAPI-USED-IP-WEIGHT-1M", "0")
        self.invocations += 1
        finished_ms = time.time_ns() // 1_000_000
        started = _iso(started_ms)
        null = {"NULL": True}
        self.dynamodb.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": f"ACCOUNT#{self.label}"},
                "sk": {"S": f"OUTCOME#{started}#{os.getpid()}-{self.invocations}"},
                "expiresAt": {"N": str(finished_ms // 1000 + 90 * 86_400)},
                "status": {"S": status},
                "account": {"S": self.label},
                "trigger": {"S": "console"},
                "dryRun": {"BOOL": False},
                "attempts": {"N": "1"},
                "windowUsed": {"N": str(min(self.sequence, 500))},
                "windowLimit": {"N": "500"},
                "nextSlotAt": null,
                "httpStatus": {"N": str(reply.status_code)},
                "exchangeCode": null,
                "usedWeight1m": {"N": weight},
                "blockedUntil": null,
                "note": null,
                "error": null,
                "invocationId": {"S": f"{os.getpid()}-{self.invocations}"},
                "eventId": null,
                "scheduledTime": null,
                "startedAt": {"S": started},
                "finishedAt": {"S": _iso(finished_ms)},
                "durationMs": {"N": str(finished_ms - started_ms)},
                "attemptLog": {
                    "L": [
                        {
                            "M": {
                                "reservation": {"N": str(self.sequence - 1)},
                                "timestampMs": {"N": str(now_ms)},
                                "verdict": {"S": "success" if reply.status_code == 200 else "rejected"},
                                "httpStatus": {"N": str(reply.status_code)},
                                "code": null,
                                "message": {"S": ""},
                                "latencyMs": {"N": str(latency_ms)},
                                "usedWeight1m": {"N": weight},
                                "retryAfterSeconds": null,
                            }
                        }
                    ]
                },
                "reservations": {"L": [{"N": str(self.sequence - 1)}]},
                "clockOffsetMs": {"N": "0"},
                "keyType": {"S": "ed25519"},
                "balancesBefore": null,
                "balancesAfter": null,
                "moved": null,
            },
        )
        return status


def _iso(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
