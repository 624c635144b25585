"""Configuration: every environment variable the function reads, validated once into `Settings`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigurationError

#: The exchange's own ceiling for Fund Auto-collection calls per account per rolling hour.
EXCHANGE_HOURLY_LIMIT = 500
#: Binance refuses recvWindow values above this (-1131).
MAX_RECV_WINDOW_MS = 60_000

_ACCOUNT_LABEL = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
# The host `sam local invoke` containers use to reach services on the developer's machine.
_DOCKER_HOST_ALIAS = "host.docker.internal"


@dataclass(frozen=True)
class Settings:
    secret_id: str
    table_name: str
    base_url: str = "https://api.binance.com"
    max_calls_per_hour: int = EXCHANGE_HOURLY_LIMIT
    recv_window_ms: int = 5_000
    account_label: str = "default"
    outcome_retention_days: int = 90
    max_attempts: int = 3
    http_timeout_s: float = 10.0
    secret_max_age_s: int = 300

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Settings:
        """Read and validate the environment; the first problem found is raised, naming its variable."""
        return cls(
            secret_id=_required(env, "SECRET_ID"),
            table_name=_required(env, "TABLE_NAME"),
            base_url=_base_url(env.get("BINANCE_BASE_URL", cls.base_url)),
            max_calls_per_hour=_integer(
                env, "MAX_CALLS_PER_HOUR", cls.max_calls_per_hour, 1, EXCHANGE_HOURLY_LIMIT
            ),
            recv_window_ms=_integer(env, "RECV_WINDOW_MS", cls.recv_window_ms, 1, MAX_RECV_WINDOW_MS),
            account_label=account_label_from(env),
            outcome_retention_days=_integer(
                env, "OUTCOME_RETENTION_DAYS", cls.outcome_retention_days, 1, 3650
            ),
            max_attempts=_integer(env, "MAX_ATTEMPTS", cls.max_attempts, 1, 10),
            http_timeout_s=float(_integer(env, "HTTP_TIMEOUT_SECONDS", int(cls.http_timeout_s), 1, 60)),
            secret_max_age_s=_integer(env, "SECRET_MAX_AGE_SECONDS", cls.secret_max_age_s, 0, 86_400),
        )


def account_label_from(env: Mapping[str, str]) -> str:
    label = env.get("ACCOUNT_LABEL", "").strip() or "default"
    if not _ACCOUNT_LABEL.match(label):
        raise ConfigurationError(
            "ACCOUNT_LABEL must be 1-64 characters of letters, digits, '_', '.' or '-'"
        )
    return label


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
