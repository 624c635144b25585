"""What a key may do: GET /sapi/v1/account/apiRestrictions and the permission rules the exchange enforces.

- A key without whitelisted IPs keeps "Enable Spot & Margin Trading" only until `tradingAuthorityExpirationTime`
  (Binance: 30 days from activation); after it, signed trading calls (the collection) get 401 / -2015 while reads
  (balances, the restrictions themselves) still work, and the restrictions report the permission unchecked.
- A key created before Portfolio Margin was activated (`enablePortfolioMarginTrading` false) does not serve the
  PM endpoints: 401 / -2015 there.
- Withdrawals can only be enabled on an IP-restricted key (checked when the key is registered).
"""

from __future__ import annotations

from typing import Any

from .checks import LoadedCredential, Rejected
from .protocol import ACCOUNT_PATH, AUTO_COLLECTION_PATH, BALANCE_PATH, MESSAGES
from .records import ApiCredential

#: Signed calls that need the trading permission.
TRADING_PATHS = frozenset({AUTO_COLLECTION_PATH})
#: Portfolio Margin endpoints: a key without the PM permission is refused there.
PM_PATHS = frozenset({AUTO_COLLECTION_PATH, BALANCE_PATH, ACCOUNT_PATH})


def check_registration(cred: ApiCredential) -> None:
    if cred.enable_withdrawals and not cred.ip_restricted:
        raise ValueError("withdrawals can only be enabled on an IP-restricted key (Binance's rule)")


def trading_lapsed(cred: ApiCredential, server_now: int) -> bool:
    return cred.trading_expires_ms is not None and server_now >= cred.trading_expires_ms


def permission_refusal(loaded: LoadedCredential, path: str, server_now: int) -> Rejected | None:
    """The exchange's answer when the key lacks the permission `path` needs; None when it may be served."""
    cred = loaded.cred
    if path in PM_PATHS and not cred.enable_pm_trading:
        return Rejected(401, -2015, MESSAGES[-2015])
    if path in TRADING_PATHS and trading_lapsed(cred, server_now):
        return Rejected(401, -2015, MESSAGES[-2015])
    return None


def restrictions_reply(loaded: LoadedCredential, server_now: int) -> dict[str, Any]:
    """Binance's answer, field names and all (a collector key: reading, trading and PM trading)."""
    cred = loaded.cred
    body: dict[str, Any] = {
        "ipRestrict": cred.ip_restricted,
        "createTime": loaded.created_ms,
        "enableReading": True,
        "enableWithdrawals": cred.enable_withdrawals,
        "enableInternalTransfer": False,
        "enableMargin": False,
        "enableFutures": False,
        "permitsUniversalTransfer": False,
        "enableVanillaOptions": False,
        "enableFixApiTrade": False,
        "enableFixReadOnly": False,
        "enableSpotAndMarginTrading": not trading_lapsed(cred, server_now),
        "enablePortfolioMarginTrading": cred.enable_pm_trading,
    }
    if cred.trading_expires_ms is not None:
        body["tradingAuthorityExpirationTime"] = cred.trading_expires_ms
    return body
