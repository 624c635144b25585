"""Configuration: every environment variable the function reads, validated once into `Settings`."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from .errors import ConfigurationError, echo
from .ip_window import COLLECTION_WEIGHT, EXCHANGE_IP_WEIGHT_PER_MINUTE

#: The exchange's own ceiling for Fund Auto-collection calls per account per rolling hour.
EXCHANGE_HOURLY_LIMIT = 500
#: Binance refuses recvWindow values above this (-1131).
MAX_RECV_WINDOW_MS = 60_000

#: Matched against the whole label (fullmatch): `$` alone would let a trailing newline through.
_ACCOUNT_LABEL = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# The host `sam local invoke` containers use to reach services on the developer's machine.
_DOCKER_HOST_ALIAS = "host.docker.internal"


#: The balance pre-check (GET /sapi/v1/portfolio/balance, weight 20) before a collection (weight 1500).
BalanceCheck = Literal["off", "skip-when-empty", "record-only"]
BALANCE_CHECK_MODES: tuple[BalanceCheck, ...] = ("off", "skip-when-empty", "record-only")

#: The template's EgressMode: how the function reaches the exchange (key_policy.py warns on an unrestricted key
#: when the address is fixed).
EGRESS_MODES = ("Shared", "StaticIp", "ExistingVpc")

#: Accounts one invocation collects for; more belong in a fan-out (see the README).
MAX_ACCOUNTS = 100


@dataclass(frozen=True)
class AccountConfig:
    """One exchange account: a label (its key in the table) and the secret holding its API key."""

    label: str
    secret_id: str


@dataclass(frozen=True)
class Settings:
    table_name: str
    accounts: tuple[AccountConfig, ...]
    base_url: str = "https://api.binance.com"
    max_calls_per_hour: int = EXCHANGE_HOURLY_LIMIT
    # Every request holds its IP weight for recvWindow + 61 s (ip_window.py): 2000 gains a little IP throughput
    # for many accounts, but a slow DynamoDB write (throttling retries) can then outlast it and waste an attempt.
    recv_window_ms: int = 5_000
    outcome_retention_days: int = 90
    max_attempts: int = 3
    #: Whole seconds, as every other duration here (HTTP_TIMEOUT_SECONDS, 1..60); the bound applied to an attempt
    #: is finer anyway: the smaller of this and the invocation's remaining time.
    http_timeout_s: int = 10
    # An hour: a rotated key is picked up at once anyway (the secret is re-read on -2015/-1022).
    secret_max_age_s: int = 3600
    balance_check: BalanceCheck = "off"
    #: This deployment's share of the exchange's 12,000 IP weight a minute (leave room for other programs).
    ip_weight_per_minute: int = EXCHANGE_IP_WEIGHT_PER_MINUTE
    #: How long an account may wait for IP weight that frees soon before it is deferred to the next tick.
    ip_weight_max_wait_s: int = 10
    egress_mode: str = "Shared"

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Settings:
        """Read and validate the environment; the first problem found is raised, naming its variable."""
        return cls(
            table_name=_required(env, "TABLE_NAME"),
            accounts=_accounts(env),
            base_url=_base_url(env.get("BINANCE_BASE_URL", cls.base_url)),
            max_calls_per_hour=_integer(env, "MAX_CALLS_PER_HOUR", cls.max_calls_per_hour, 1, EXCHANGE_HOURLY_LIMIT),
            recv_window_ms=_integer(env, "RECV_WINDOW_MS", cls.recv_window_ms, 1, MAX_RECV_WINDOW_MS),
            outcome_retention_days=_integer(env, "OUTCOME_RETENTION_DAYS", cls.outcome_retention_days, 1, 3650),
            max_attempts=_integer(env, "MAX_ATTEMPTS", cls.max_attempts, 1, 10),
            http_timeout_s=_integer(env, "HTTP_TIMEOUT_SECONDS", cls.http_timeout_s, 1, 60),
            secret_max_age_s=_integer(env, "SECRET_MAX_AGE_SECONDS", cls.secret_max_age_s, 0, 86_400),
            balance_check=_balance_check(env.get("BALANCE_CHECK", "")),
            ip_weight_per_minute=_ip_weight_per_minute(env),
            ip_weight_max_wait_s=_integer(env, "IP_WEIGHT_MAX_WAIT_SECONDS", cls.ip_weight_max_wait_s, 0, 30),
            egress_mode=_egress_mode(env.get("EGRESS_MODE", "")),
        )

    @property
    def labels(self) -> list[str]:
        return [account.label for account in self.accounts]


def account_label_from(env: Mapping[str, str]) -> str:
    """The single account's label (ACCOUNT_LABEL, default "default")."""
    return _label(env.get("ACCOUNT_LABEL", "").strip() or "default", "ACCOUNT_LABEL")


def _label(label: str, where: str) -> str:
    if not _ACCOUNT_LABEL.fullmatch(label):
        raise ConfigurationError(
            f"{where} must be 1-64 characters of letters, digits, '_', '.' or '-', got {echo(label)}"
        )
    return label


def _accounts(env: Mapping[str, str]) -> tuple[AccountConfig, ...]:
    """SECRET_ID (+ ACCOUNT_LABEL) for one account, or ACCOUNTS (a JSON list) for several."""
    raw = env.get("ACCOUNTS", "").strip()
    if not raw:
        if not env.get("SECRET_ID", "").strip():
            raise ConfigurationError("SECRET_ID is required but not set (or ACCOUNTS, for several accounts)")
        return (AccountConfig(account_label_from(env), _required(env, "SECRET_ID")),)
    if env.get("SECRET_ID", "").strip():
        raise ConfigurationError("set either SECRET_ID (one account) or ACCOUNTS (several), not both")
    shape = 'ACCOUNTS must be a JSON list like [{"label": "fund-a", "secretId": "binance/fund-a"}]'
    try:
        entries = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, a number too long to read, nesting too deep
        raise ConfigurationError(f"{shape}; it is not valid JSON") from None
    if not isinstance(entries, list) or not entries:
        raise ConfigurationError(f"{shape}; got {type(entries).__name__}")
    if len(entries) > MAX_ACCOUNTS:
        raise ConfigurationError(f"ACCOUNTS lists {len(entries)} accounts; at most {MAX_ACCOUNTS} per function")
    accounts = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{shape}; entry {index} is a {type(entry).__name__}")
        if set(entry) != {"label", "secretId"}:
            raise ConfigurationError(f"{shape}; entry {index} has keys {sorted(entry)}")
        label, secret_id = entry["label"], entry["secretId"]
        if not isinstance(label, str) or not isinstance(secret_id, str) or not secret_id.strip():
            raise ConfigurationError(f"{shape}; entry {index} needs string 'label' and 'secretId'")
        accounts.append(AccountConfig(_label(label, f"ACCOUNTS[{index}].label"), secret_id.strip()))
    labels = [account.label for account in accounts]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ConfigurationError(f"ACCOUNTS has duplicate labels {duplicates}")
    _refuse_labels_differing_only_by_case(labels)
    return tuple(accounts)


def _ip_weight_per_minute(env: Mapping[str, str]) -> int:
    limit = _integer(env, "IP_WEIGHT_PER_MINUTE", EXCHANGE_IP_WEIGHT_PER_MINUTE, 1, EXCHANGE_IP_WEIGHT_PER_MINUTE)
    if limit < COLLECTION_WEIGHT:
        raise ConfigurationError(
            f"IP_WEIGHT_PER_MINUTE is {limit}, which leaves no room for one collection (weight {COLLECTION_WEIGHT}); "
            f"set it between {COLLECTION_WEIGHT} and {EXCHANGE_IP_WEIGHT_PER_MINUTE}"
        )
    return limit


def _refuse_labels_differing_only_by_case(labels: list[str]) -> None:
    # Readers (and case-insensitive tools) take "Fund-A" and "fund-a" for one account; the table would not.
    first_spelling: dict[str, str] = {}
    for label in labels:
        other = first_spelling.setdefault(label.casefold(), label)
        if other != label:
            raise ConfigurationError(
                f"ACCOUNTS labels {other!r} and {label!r} differ only by case; give each account a distinct label"
            )


def _balance_check(raw: str) -> BalanceCheck:
    value = raw.strip().lower() or "off"
    for mode in BALANCE_CHECK_MODES:
        if value == mode:
            return mode
    raise ConfigurationError(f"BALANCE_CHECK must be one of {', '.join(BALANCE_CHECK_MODES)}, got {raw!r}")


def _egress_mode(raw: str) -> str:
    value = raw.strip() or "Shared"
    if value not in EGRESS_MODES:
        raise ConfigurationError(f"EGRESS_MODE must be one of {', '.join(EGRESS_MODES)}, got {echo(raw)}")
    return value


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"{name} is required but not set")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _base_url(raw: str) -> str:
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"BINANCE_BASE_URL must be an http(s) URL, got {raw!r}")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(
            f"BINANCE_BASE_URL must be a scheme and host only (like https://api.binance.com), got {raw!r}"
        )
    if parts.scheme == "http" and not _is_local_host(parts.hostname):
        raise ConfigurationError(
            "BINANCE_BASE_URL may use plain http only for a loopback host (a local emulator); "
            f"use https for {parts.hostname!r}"
        )
    return url


def _is_local_host(host: str) -> bool:
    if host in ("localhost", _DOCKER_HOST_ALIAS):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
