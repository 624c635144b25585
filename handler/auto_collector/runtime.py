"""The composition root: builds the AWS clients, the exchange client and the collector once per
configuration and keeps them for warm invocations (connections, secret cache, window state, clock offset).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import boto3
import requests
from aws_lambda_powertools.utilities.parameters import GetParameterError, SecretsProvider

from .admission import IpWeightGate
from .aws_config import BOUNDED_CLIENT_CONFIG
from .collection import Collector
from .config import Settings
from .credentials import ApiCredentials, parse_secret
from .errors import SecretError
from .exchange import BinanceClient
from .identity import IdentityBook, IdentityRegistry
from .ip_store import IpWeightStore
from .ip_window import IpWeightPolicy
from .store import CollectorTable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient


@dataclass
class CredentialsSource:
    """Reads the secret through Powertools' cache and parses it only when its value changes."""

    provider: SecretsProvider
    secret_id: str
    max_age_s: int
    _parsed_for: str | None = field(default=None, repr=False)
    _parsed: ApiCredentials | None = field(default=None, repr=False)

    def load(self, force_fetch: bool = False) -> ApiCredentials:
        try:
            value = self.provider.get(self.secret_id, max_age=self.max_age_s, force_fetch=force_fetch)
        except GetParameterError as error:
            raise SecretError(f"could not read secret {self.secret_id!r}: {error}") from None
        if not isinstance(value, str):
            return parse_secret(None, self.secret_id)
        if self._parsed is None or value != self._parsed_for:
            self._parsed = parse_secret(value, self.secret_id)
            self._parsed_for = value
        return self._parsed


@dataclass
class Runtime:
    settings: Settings
    store: CollectorTable
    collectors: dict[str, Collector]  # by account label, in configuration order
    gate: IpWeightGate
    #: Which exchange account's window each label spends; refuses two labels on one account.
    identities: IdentityBook
    _queue_client: SQSClient | None = field(default=None, repr=False)

    def queue_client(self) -> SQSClient:
        """The SQS client (fan-out mode), built on first use: the single-function mode never pays for it."""
        if self._queue_client is None:
            self._queue_client = boto3.client("sqs", config=BOUNDED_CLIENT_CONFIG)
        return self._queue_client


_runtimes: dict[Settings, Runtime] = {}


def runtime_for(settings: Settings) -> Runtime:
    """The warm objects for this configuration (tests change the environment between invocations)."""
    runtime = _runtimes.get(settings)
    if runtime is None:
        runtime = _runtimes[settings] = _build(settings)
    return runtime


def reset() -> None:
    """Forget warm state (a fresh container, for tests and local runs)."""
    _runtimes.clear()


def _build(settings: Settings) -> Runtime:
    # Both clients from boto3's one default session: a SecretsProvider left to itself would build a second
    # session and load the endpoint rules and service data again (a tenth of a cold start).
    dynamodb: DynamoDBClient = boto3.client("dynamodb", config=BOUNDED_CLIENT_CONFIG)
    secrets = SecretsProvider(boto3_client=boto3.client("secretsmanager", config=BOUNDED_CLIENT_CONFIG))
    store = CollectorTable(dynamodb, settings.table_name)
    gate = IpWeightGate(
        IpWeightStore(dynamodb, settings.table_name),
        IpWeightPolicy(settings.ip_weight_per_minute, settings.recv_window_ms),
        max_wait_ms=settings.ip_weight_max_wait_s * 1000,
    )
    identities = IdentityBook(settings.labels, IdentityRegistry(dynamodb, settings.table_name))
    collectors: dict[str, Collector] = {}
    for account in settings.accounts:
        # One HTTP session per account: accounts are collected on parallel threads.
        exchange = BinanceClient(settings.base_url, requests.Session())
        credentials = CredentialsSource(secrets, account.secret_id, settings.secret_max_age_s)
        collectors[account.label] = Collector(
            settings, account.label, store, exchange, credentials, gate=gate, identities=identities
        )
    return Runtime(settings, store, collectors, gate, identities)
