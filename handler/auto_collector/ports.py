"""What the collector needs from the outside world, as small Protocols: the account windows (store.py's
CollectorTable), the IP-weight window's storage (ip_store.py), the exchange (exchange.py) and the credentials
(runtime.py's CredentialsSource). The collection policy (collection.py, key_check.py, admission.py) is written
against these, so the unit tests drive it with in-memory fakes (tests/support/fakes.py) and the functional and
integration tests with the real adapters against the HTTP emulator, moto and DynamoDB Local.

Types only: nothing here is imported at run time, so the operator's command (boto3 alone) can import the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .credentials import ApiCredentials
    from .exchange import AttemptResult, FuturesBalance
    from .ip_window import IpWeightPolicy, IpWeightState, WeightDecision
    from .key_policy import KeyRestrictions
    from .store import JointReservation
    from .window import WindowPolicy, WindowState


class CredentialsLoader(Protocol):
    def load(self, force_fetch: bool = False) -> ApiCredentials:
        """The account's credentials; `force_fetch` bypasses any cache (after the exchange refused the key)."""
        ...


class Exchange(Protocol):
    """The exchange's signed endpoints the collector calls, and its clock as learned from it."""

    #: The exchange's clock minus ours (learned by `sync_clock`).
    clock_offset_ms: int

    def server_now_ms(self) -> int: ...

    def auto_collect(
        self, credentials: ApiCredentials, timestamp_ms: int, recv_window_ms: int, timeout_s: float
    ) -> AttemptResult: ...

    def balances(
        self, credentials: ApiCredentials, recv_window_ms: int, timeout_s: float, timestamp_ms: int | None = None
    ) -> tuple[AttemptResult, dict[str, FuturesBalance]]: ...

    def api_restrictions(
        self, credentials: ApiCredentials, recv_window_ms: int, timeout_s: float, timestamp_ms: int
    ) -> tuple[AttemptResult, KeyRestrictions | None]: ...

    def account_uid(
        self, credentials: ApiCredentials, recv_window_ms: int, timeout_s: float, timestamp_ms: int
    ) -> tuple[AttemptResult, int | None]: ...

    def sync_clock(self, timeout_s: float) -> int: ...


class IpWeightLedger(Protocol):
    """The deployment's stored IP-weight window (one item for every account and invocation)."""

    @property
    def known(self) -> IpWeightState: ...

    def reserve(
        self, policy: IpWeightPolicy, weight: int, now_ms: Callable[[], int], remaining_ms: Callable[[], int]
    ) -> tuple[WeightDecision, IpWeightState]: ...

    def observe(self, policy: IpWeightPolicy, reported_used: int, now_ms: Callable[[], int]) -> int: ...

    def block(self, until_ms: int, reason: str) -> None: ...

    def remember(self, state: IpWeightState) -> None: ...

    def read(self) -> IpWeightState:
        """The stored state, read consistently (and remembered)."""
        ...


class AccountWindows(Protocol):
    """The accounts' stored rolling windows."""

    def known(self, account: str) -> WindowState: ...

    def read(self, account: str) -> WindowState: ...

    def block(self, accounts: list[str], until_ms: int, reason: str) -> None: ...

    def reserve_with_weight(  # noqa: PLR0917 - the account window's inputs and the IP weight's
        self,
        account: str,
        policy: WindowPolicy,
        now_ms: Callable[[], int],
        remaining_ms: Callable[[], int],
        event_id: str | None,
        invocation_id: str,
        ip: IpWeightLedger,
        ip_policy: IpWeightPolicy,
        weight: int,
    ) -> JointReservation: ...
