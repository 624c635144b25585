"""What Binance defines: the paths, limits, headers and texts the emulator answers with."""

from __future__ import annotations

TIME_PATH = "/api/v3/time"
AUTO_COLLECTION_PATH = "/sapi/v1/portfolio/auto-collection"
BALANCE_PATH = "/sapi/v1/portfolio/balance"
ACCOUNT_PATH = "/sapi/v1/portfolio/account"
API_RESTRICTIONS_PATH = "/sapi/v1/account/apiRestrictions"
#: The spot account (signed, weight 20 on the /api limits): its `uid` is the exchange account's identity.
SPOT_ACCOUNT_PATH = "/api/v3/account"
#: The exchange's request-weight limit per minute per IP on /api (separate from each /sapi endpoint's).
API_WEIGHT_LIMIT_1M = 6000

ADMIN_PREFIX = "/_emulator/"
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
MAX_RECV_WINDOW_MS = 60_000
DEFAULT_RECV_WINDOW_MS = 5_000
SAPI_WEIGHT_HEADER = "X-SAPI-USED-IP-WEIGHT-1M"
API_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"

# Binance's texts for the codes this emulator produces or that tests are likely to inject.
MESSAGES: dict[int, str] = {
    -1000: "An unknown error occurred while processing the request.",
    -1001: "Internal error; unable to process your request. Please try again.",
    -1002: "You are not authorized to execute this request.",
    -1003: (
        "Too much request weight used; current limit is 12000 request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API."
    ),
    -1006: "An unexpected response was received from the message bus. Execution status unknown.",
    -1007: "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
    -1008: "Server is currently overloaded with other requests. Please try again in a few minutes.",
    -1021: "Timestamp for this request is outside of the recvWindow.",
    -1022: "Signature for this request is not valid.",
    -1100: "Illegal characters found in a parameter.",
    -1101: "Duplicate values for a parameter detected.",
    -1102: "A mandatory parameter was not sent, was empty/null, or malformed.",
    -1104: "Not all sent parameters were read.",
    -1131: "recvWindow must be less than 60000",
    -2014: "API-key format invalid.",
    -2015: "Invalid API-key, IP, or permissions for action.",
    -21001: "Request ID is not a Portfolio Margin Account.",
    -21003: "Fail to retrieve margin assets.",
    -21007: "User failed to repay portfolio margin bankruptcy loan since liquidation was in process.",
}

HOURLY_LIMIT_MSG = (
    "Too many requests; current limit of auto-collection is {limit} requests per hour. "
    "Please use the websocket for live updates to avoid polling the API."
)
IP_BANNED_MSG = (
    "Way too much request weight used; IP banned until {until}. "
    "Please use WebSocket Streams for live updates to avoid bans."
)
RESTRICTED_LOCATION_MSG = (
    "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you "
    "received this message in error."
)
WAF_403_BODY = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">\n'
    "<HTML><HEAD><TITLE>ERROR: The request could not be satisfied</TITLE></HEAD>"
    "<BODY><H1>403 ERROR</H1><H2>The request could not be satisfied.</H2>"
    "Request blocked.</BODY></HTML>\n"
)

# Fields of one asset in GET /sapi/v1/portfolio/balance, in Binance's order.
BALANCE_FIELDS: tuple[str, ...] = (
    "totalWalletBalance",
    "crossMarginAsset",
    "crossMarginBorrowed",
    "crossMarginFree",
    "crossMarginInterest",
    "crossMarginLocked",
    "umWalletBalance",
    "umUnrealizedPNL",
    "cmWalletBalance",
    "cmUnrealizedPNL",
    "negativeBalance",
)
# Derived fields, always recomputed: totalWalletBalance = free + locked + um + cm,
# crossMarginAsset = free + locked.
DERIVED_FIELDS = frozenset({"totalWalletBalance", "crossMarginAsset"})
NEVER_COLLECTED = frozenset({"BNB"})
