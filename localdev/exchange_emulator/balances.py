"""The portfolio: balances per account and asset, what a collection moves, and the balance/account replies."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from .protocol import BALANCE_FIELDS, DERIVED_FIELDS, NEVER_COLLECTED

#: asset -> field -> decimal string, every field of BALANCE_FIELDS present.
BalanceTable = dict[str, dict[str, str]]


def balance_table(balances: Mapping[str, Mapping[str, object]]) -> BalanceTable:
    """Validate balances given as {asset: {field: decimal}}; derived fields are recomputed, absent ones are 0."""
    table: BalanceTable = {}
    for asset, fields in balances.items():
        row: dict[str, str] = {}
        for name, value in fields.items():
            if name not in BALANCE_FIELDS and name != "updateTime":
                raise ValueError(f"{asset}: unknown balance field {name!r}")
            if name in DERIVED_FIELDS or name == "updateTime":
                continue  # derived / stamped by the emulator
            row[name] = _fmt_decimal(_parse_decimal(value, f"{asset}.{name}"))
        table[str(asset)] = _complete_row(row)
    return table


def collect(table: BalanceTable) -> None:
    """Move positive UM and CM wallet balances of every asset except BNB into crossMarginFree."""
    for asset, row in table.items():
        if asset in NEVER_COLLECTED:
            continue
        moved = Decimal(0)
        for name in ("umWalletBalance", "cmWalletBalance"):
            value = Decimal(row[name])
            if value > 0:
                moved += value
                row[name] = "0"
        if moved:
            row["crossMarginFree"] = _fmt_decimal(Decimal(row["crossMarginFree"]) + moved)
            table[asset] = _complete_row(row)


def balance_reply(table: BalanceTable, asset: str | None, server_now: int) -> list[dict[str, Any]]:
    """GET /sapi/v1/portfolio/balance: every asset, or the one asked for."""
    assets = [asset] if asset is not None else sorted(table)
    out: list[dict[str, Any]] = []
    for name in assets:
        row = table.get(name)
        if row is None:
            continue
        item: dict[str, Any] = {"asset": name}
        item.update({f: row[f] for f in BALANCE_FIELDS})
        item["updateTime"] = server_now
        out.append(item)
    return out


def account_reply(table: BalanceTable, overrides: Mapping[str, str]) -> dict[str, str]:
    """GET /sapi/v1/portfolio/account: a healthy account holding the table's balances, unless overridden."""
    equity = sum((Decimal(row["totalWalletBalance"]) for row in table.values()), Decimal(0))
    info = {
        "uniMMR": "5.00000000",
        "accountEquity": _fmt_decimal(equity),
        "actualEquity": _fmt_decimal(equity),
        "accountMaintMargin": "0",
        "accountStatus": "NORMAL",
        "accountType": "PM_1",
    }
    info.update(overrides)
    return info


def _complete_row(row: dict[str, str]) -> dict[str, str]:
    full = {name: row.get(name, "0") for name in BALANCE_FIELDS}
    free = Decimal(full["crossMarginFree"])
    locked = Decimal(full["crossMarginLocked"])
    um = Decimal(full["umWalletBalance"])
    cm = Decimal(full["cmWalletBalance"])
    full["crossMarginAsset"] = _fmt_decimal(free + locked)
    full["totalWalletBalance"] = _fmt_decimal(free + locked + um + cm)
    return full


def _fmt_decimal(value: Decimal) -> str:
    if value == 0:
        return "0"
    return format(value, "f")


def _parse_decimal(value: object, what: str) -> Decimal:
    try:
        dec = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"{what}: not a decimal: {value!r}") from exc
    if not dec.is_finite():
        raise ValueError(f"{what}: not a finite decimal: {value!r}")
    return dec


def account_uid(account: str) -> int:
    """The emulated exchange account's uid: stable, and the same for every key of the account."""
    return 100_000_000 + int.from_bytes(hashlib.sha256(account.encode()).digest()[:4], "big") % 900_000_000


def spot_account_reply(account: str, server_now: int) -> dict[str, Any]:
    """GET /api/v3/account (omitZeroBalances): the fields a caller reads, with the account's uid."""
    return {
        "makerCommission": 10,
        "takerCommission": 10,
        "canTrade": True,
        "canWithdraw": False,
        "canDeposit": True,
        "updateTime": server_now,
        "accountType": "SPOT",
        "balances": [],
        "permissions": ["SPOT"],
        "uid": account_uid(account),
    }
