"""The API key's own restrictions (GET /sapi/v1/account/apiRestrictions) and the rules a collector key must meet.

The rules, and why:
- **Withdrawals: refused, always.** A collector never withdraws; a leaked key that can withdraw empties the
  account. No setting turns this off: such a key is never used for a collection, and its dry run fails.
- **IP restriction: allowed, but flagged.** Binance (since 2021-07-09) unchecks "Enable Spot & Margin Trading"
  30 days after activation on a key without whitelisted IPs and reports the instant as
  `tradingAuthorityExpirationTime`; after it the collection fails with -2015. The days left are shown everywhere
  (dry run, outcome, logs, operator view, the `TradingPermissionDaysLeft` metric). A whitelisted key does not
  expire; a fixed egress IP to whitelist is what the template's EgressMode StaticIp (or ExistingVpc) gives.
- **Portfolio Margin trading.** A key created before Portfolio Margin was activated
  (`enablePortfolioMarginTrading` false) does not serve the PM endpoints: the dry run refuses it.
Pure functions of the restrictions and the exchange's clock; nothing here talks to the network.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from .times import iso_seconds

DAY_MS = 86_400_000
#: The alarm's threshold (template.yaml TradingPermissionExpiringAlarm): fewer days left than this is a warning.
EXPIRY_WARNING_DAYS = 7
#: Egress modes of the template (EGRESS_MODE) whose function leaves AWS from addresses the customer owns.
FIXED_IP_MODES = frozenset({"StaticIp", "ExistingVpc"})

#: The permission flags of the answer, as Binance spells them, in the order they are reported.
PERMISSION_FIELDS = (
    "enableReading",
    "enableSpotAndMarginTrading",
    "enablePortfolioMarginTrading",
    "enableMargin",
    "enableFutures",
    "enableVanillaOptions",
    "enableInternalTransfer",
    "permitsUniversalTransfer",
    "enableWithdrawals",
)

WHAT_FIXES_EXPIRY = (
    "whitelist the deployment's egress IP on the key (EgressMode StaticIp outputs it; ExistingVpc uses your NAT's "
    "Elastic IP; see the README), which stops the expiry, and re-enable 'Enable Spot & Margin Trading' in "
    "Binance's API management"
)


@dataclass(frozen=True)
class KeyRestrictions:
    """What the exchange says the key may do, read at `read_at_ms` (the exchange's clock)."""

    ip_restricted: bool
    enable_withdrawals: bool
    #: The enabled flags among PERMISSION_FIELDS.
    permissions: tuple[str, ...]
    #: None when the answer does not say (treated as enabled: the exchange then decides).
    enable_pm_trading: bool | None
    enable_spot_and_margin_trading: bool | None
    trading_expires_ms: int | None
    created_ms: int | None
    read_at_ms: int

    def days_left(self, now_ms: int) -> int | None:
        """Whole days until the trading permission ends, rounded up (0 or less once it ended); None: no expiry."""
        expiry = self.trading_expires_ms
        return None if expiry is None else math.ceil((expiry - now_ms) / DAY_MS)

    def trading_permission(self, now_ms: int) -> str | None:
        """'trading permission expires on DATE (N days)' or '... expired on DATE (N days ago)'; None: no expiry."""
        return None if self.trading_expires_ms is None else trading_permission_text(self.trading_expires_ms, now_ms)

    def trading_lapsed(self, now_ms: int) -> bool:
        """Whether these restrictions explain a -2015: the dated permission ended, or an unrestricted key lost it."""
        expiry = self.trading_expires_ms
        if expiry is not None and expiry <= now_ms:
            return True
        return not self.ip_restricted and self.enable_spot_and_margin_trading is False


def trading_permission_text(expires_ms: int, now_ms: int) -> str:
    """'trading permission expires on 2026-12-06 14:03 UTC (5 days)', or '... expired on ... (2 days ago)'."""
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires_ms // 1000))
    if expires_ms > now_ms:
        left = math.ceil((expires_ms - now_ms) / DAY_MS)
        return f"trading permission expires on {date} ({left} day{'' if left == 1 else 's'})"
    ago = (now_ms - expires_ms) // DAY_MS
    return f"trading permission expired on {date} ({ago} day{'' if ago == 1 else 's'} ago)"


def parse_restrictions(body: object, read_at_ms: int) -> KeyRestrictions:
    """The answer of GET /sapi/v1/account/apiRestrictions; ValueError when it is not one.

    `ipRestrict` and `enableWithdrawals` must be present and boolean: the policy is never decided on a guess.
    """
    if not isinstance(body, dict):
        raise ValueError("the key restrictions answer is not a JSON object")
    for name in ("ipRestrict", "enableWithdrawals"):
        if not isinstance(body.get(name), bool):
            raise ValueError(f"the key restrictions answer has no boolean {name!r}")
    return KeyRestrictions(
        ip_restricted=body["ipRestrict"],
        enable_withdrawals=body["enableWithdrawals"],
        permissions=tuple(name for name in PERMISSION_FIELDS if body.get(name) is True),
        enable_pm_trading=_flag(body, "enablePortfolioMarginTrading"),
        enable_spot_and_margin_trading=_flag(body, "enableSpotAndMarginTrading"),
        trading_expires_ms=_millis(body, "tradingAuthorityExpirationTime"),
        created_ms=_millis(body, "createTime"),
        read_at_ms=read_at_ms,
    )


def refusal(restrictions: KeyRestrictions, now_ms: int, dry_run: bool) -> str | None:
    """Why the key must not be used (None: it may). A real run refuses only a key that can withdraw: whether the
    collection needs the dated permission or PM trading is the exchange's to say (it answers -2015)."""
    if restrictions.enable_withdrawals:
        return (
            "the API key has withdrawals enabled (enableWithdrawals is true): a collector key never needs "
            "withdrawals and a leaked one could empty the account, so it is never used. Create a key without "
            "'Enable Withdrawals' (or untick it), put it in the secret, and run the dry run again. Nothing was sent"
        )
    if not dry_run:
        return None
    if restrictions.enable_pm_trading is False:
        return (
            "the API key has no Portfolio Margin trading permission (enablePortfolioMarginTrading is false): a key "
            "created before Portfolio Margin was activated does not serve the PM endpoints. Create a new API key "
            "now that the account is Portfolio Margin, and put it in the secret"
        )
    if restrictions.trading_lapsed(now_ms):
        state = restrictions.trading_permission(now_ms) or "the trading permission is off"
        return f"the API key's {state}: collections will be refused (-2015). To fix it, {WHAT_FIXES_EXPIRY}"
    return None


def warnings(restrictions: KeyRestrictions, now_ms: int, egress_mode: str) -> list[str]:
    """What is allowed but must be seen: an unrestricted key, a permission ending soon or gone."""
    found = []
    if not restrictions.ip_restricted:
        found.append(
            "the API key is not IP-restricted: Binance ends its trading permission 30 days after activation "
            "(then every collection fails with -2015); whitelist a fixed egress IP on it (EgressMode StaticIp)"
        )
        if egress_mode in FIXED_IP_MODES:
            found.append(
                f"EgressMode is {egress_mode} but the API key is still unrestricted: add the deployment's egress IP "
                "(the stack's EgressIp output, or your NAT's Elastic IP) to the key's IP access restriction"
            )
    days = restrictions.days_left(now_ms)
    if days is not None and days <= EXPIRY_WARNING_DAYS:
        found.append(f"{restrictions.trading_permission(now_ms)}: {WHAT_FIXES_EXPIRY}")
    elif restrictions.enable_spot_and_margin_trading is False:
        found.append("'Enable Spot & Margin Trading' is off on the API key: collections may be refused (-2015)")
    if restrictions.enable_pm_trading is False:
        found.append("the API key has no Portfolio Margin trading permission (enablePortfolioMarginTrading false)")
    return found


def expired_explanation(restrictions: KeyRestrictions, now_ms: int) -> str:
    """Why the exchange refuses the key when its restrictions show a lapsed trading permission, and the fix."""
    state = restrictions.trading_permission(now_ms) or "trading permission was unchecked by Binance"
    return (
        f"the API key's {state}; Binance ends 'Enable Spot & Margin Trading' 30 days after activation on a key "
        f"without whitelisted IPs. To fix it, {WHAT_FIXES_EXPIRY}"
    )


def key_record(restrictions: KeyRestrictions, now_ms: int, found: list[str]) -> dict[str, Any]:
    """The key's part of the outcome record (no key material: flags and dates only)."""
    expiry = restrictions.trading_expires_ms
    return {
        "ipRestricted": restrictions.ip_restricted,
        "permissions": list(restrictions.permissions),
        "tradingPermission": restrictions.trading_permission(now_ms),
        "tradingPermissionExpiresAt": iso_seconds(expiry) if expiry is not None else None,
        "tradingPermissionDaysLeft": restrictions.days_left(now_ms),
        "warnings": found,
        "checkedAt": iso_seconds(restrictions.read_at_ms),
    }


def _flag(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    return value if isinstance(value, bool) else None


def _millis(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    # Epoch milliseconds before the year 10000; anything else is garbage (and would break every date shown).
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 253_402_300_800_000:
        return None
    return value
