"""One collector deployed on local services (the conftest fixtures `deployment` and `local_deployment` build
it): its table and secret, its account on the exchange emulator, its environment, and ways to invoke it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from auto_collector.identity import account_window_key
from localdev.exchange_emulator import ApiCredential, ExchangeEmulator
from localdev.exchange_emulator.balances import account_uid
from localdev.keys import new_ed25519_pem
from tests.support.cold_start import cold_start
from tests.support.lambda_context import FakeLambdaContext
from tests.support.table import create_table


def window_key(account: str = "default") -> str:
    """The key of the rolling window the function spends for the emulator's `account` (its uid's)."""
    return account_window_key(account_uid(account))


@dataclass
class Deployment:
    """One deployed collector: its secret, table, account on the emulator and environment."""

    exchange: ExchangeEmulator
    dynamodb: Any
    secrets: Any
    table: str
    secret_id: str
    api_key: str
    private_pem: str
    monkeypatch: pytest.MonkeyPatch
    contexts: list[FakeLambdaContext] = field(default_factory=list)

    #: The window of the emulator account the deployment's key belongs to.
    window_key: str = field(default_factory=window_key)

    def invoke(self, event: Any, timeout_ms: int = 60_000) -> dict[str, Any]:
        from auto_collector.handler import lambda_handler

        context = FakeLambdaContext(timeout_ms=timeout_ms)
        self.contexts.append(context)
        return lambda_handler(event, context)  # type: ignore[no-any-return]

    def set_env(self, **values: str) -> None:
        for name, value in values.items():
            self.monkeypatch.setenv(name, value)

    def put_secret(self, value: str) -> None:
        self.secrets.put_secret_value(SecretId=self.secret_id, SecretString=value)
        cold_start()

    def outcomes(self) -> list[dict[str, Any]]:
        from auto_collector.records import plain_record

        response = self.dynamodb.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :outcome)",
            ExpressionAttributeValues={":pk": {"S": "ACCOUNT#default"}, ":outcome": {"S": "OUTCOME#"}},
            ConsistentRead=True,
        )
        return [plain_record(item) for item in response["Items"]]


def deploy(
    monkeypatch: pytest.MonkeyPatch,
    exchange: ExchangeEmulator,
    dynamodb_endpoint: str,
    secrets_endpoint: str,
) -> Deployment:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", secrets_endpoint)
    dynamodb = boto3.client("dynamodb")
    secrets = boto3.client("secretsmanager")
    table = f"collector-{uuid.uuid4().hex[:10]}"
    create_table(dynamodb, table)
    private_pem, public_pem = new_ed25519_pem()
    api_key = uuid.uuid4().hex + uuid.uuid4().hex
    exchange.add_credential(ApiCredential(api_key=api_key, public_key_pem=public_pem))
    secret_id = f"collector/{uuid.uuid4().hex[:8]}"
    secrets.create_secret(Name=secret_id, SecretString=json.dumps({"apiKey": api_key, "privateKey": private_pem}))
    monkeypatch.setenv("SECRET_ID", secret_id)
    monkeypatch.setenv("TABLE_NAME", table)
    monkeypatch.setenv("BINANCE_BASE_URL", exchange.base_url)
    return Deployment(exchange, dynamodb, secrets, table, secret_id, api_key, private_pem, monkeypatch)
