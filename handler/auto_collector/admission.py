"""Admission to the exchange: IP weight for every signed request, waited for briefly or deferred, in a fair order.

Waiting versus deferring (what each costs). The function is billed for the time it runs, waiting included:
at the template's 256 MB, a second of waiting costs about $0.0000042 (x86) / $0.0000033 (arm64). Waiting a few
seconds for weight that frees soon therefore costs a fraction of a cent a month and keeps the address busy at
its limit, where deferring would leave the weight unused until the next tick. Waiting longer than that buys
nothing: the weight of a full minute frees a full minute later, and the next tick comes sooner. So an account
waits at most `max_wait_ms` (IP_WEIGHT_MAX_WAIT_SECONDS) and within the invocation's deadline; otherwise it is
*deferred*: an outcome record says when weight frees, nothing is spent, and the next tick tries it first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from .errors import WindowStoreError
from .ip_window import IpWeightPolicy, IpWeightState, WeightGrant, WeightRefusal
from .observability import SERVICE
from .window import BackingOff, WindowPolicy

if TYPE_CHECKING:
    from .ports import AccountWindows, IpWeightLedger
    from .store import JointReservation

logger = Logger(service=SERVICE, child=True)

#: Time an attempt needs after waiting: reserve the account slot, send, and record the outcome.
_TIME_NEEDED_AFTER_WAIT_MS = 4_000


@dataclass(frozen=True)
class Deferred:
    """No weight within the wait allowed; weight frees at `next_free_ms` (the exchange's clock)."""

    next_free_ms: int


Admission = WeightGrant | Deferred | BackingOff


class IpWeightGate:
    """Reserves IP weight in the shared window; waits up to `max_wait_ms` for it, else defers."""

    def __init__(
        self,
        store: IpWeightLedger,
        policy: IpWeightPolicy,
        max_wait_ms: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.policy = policy
        self._max_wait_ms = max_wait_ms
        self._sleep = sleep

    def acquire(self, weight: int, now_ms: Callable[[], int], remaining_ms: Callable[[], int]) -> Admission:
        waited_ms = 0
        while True:
            decision, _ = self.store.reserve(self.policy, weight, now_ms, remaining_ms)
            if not isinstance(decision, WeightRefusal):
                return decision
            wait_ms = max(0, decision.next_free_ms - now_ms())
            if waited_ms + wait_ms > self._max_wait_ms or remaining_ms() - wait_ms < _TIME_NEEDED_AFTER_WAIT_MS:
                return Deferred(decision.next_free_ms)
            # A few ms past the instant it frees, so the retry is not refused by rounding.
            self._sleep((wait_ms + 5) / 1000)
            waited_ms += wait_ms + 5

    def admit_with_slot(
        self,
        window: AccountWindows,
        account: str,
        *,
        policy: WindowPolicy,
        event_id: str | None,
        invocation_id: str,
        weight: int,
        now_ms: Callable[[], int],
        remaining_ms: Callable[[], int],
    ) -> tuple[JointReservation, Deferred | None]:
        """The account's slot and `weight` in one transaction (store.py), waiting briefly for weight that frees soon.

        Returns the reservation, and Deferred when the weight does not free within the wait allowed.
        """
        waited_ms = 0
        while True:
            joint = window.reserve_with_weight(
                account, policy, now_ms, remaining_ms, event_id, invocation_id, self.store, self.policy, weight
            )
            if not isinstance(joint.weight, WeightRefusal):
                return joint, None
            wait_ms = max(0, joint.weight.next_free_ms - now_ms())
            if waited_ms + wait_ms > self._max_wait_ms or remaining_ms() - wait_ms < _TIME_NEEDED_AFTER_WAIT_MS:
                return joint, Deferred(joint.weight.next_free_ms)
            self._sleep((wait_ms + 5) / 1000)
            waited_ms += wait_ms + 5

    def observe(self, reported_used: int | None, now_ms: Callable[[], int]) -> None:
        """Count weight the exchange reports beyond ours (other programs on the address). Never fails a collection."""
        if reported_used is None:
            return
        try:
            added = self.store.observe(self.policy, reported_used, now_ms)
        except WindowStoreError as error:
            logger.warning("IP weight reported by the exchange not recorded", extra={"error": str(error)})
            return
        if added:
            logger.warning(
                "the exchange reports more IP weight than this deployment reserved: slowing down",
                extra={"reportedUsedWeight1m": reported_used, "unknownWeight": added},
            )

    def block(self, until_ms: int, reason: str) -> None:
        self.store.block(until_ms, reason)

    def known(self) -> IpWeightState:
        return self.store.known


class Turnstile:
    """Lets the accounts of one invocation take their first IP weight in a fixed order (the fairness order).

    Accounts run on parallel threads; without this, whichever thread is scheduled first would take the weight.
    Each account passes once: when the answer to its first signed request is in (so the next one reserves knowing
    the weight the exchange reported), or when it finishes without sending. The first requests of an invocation
    therefore go out one after another, a round trip each; everything after them runs in parallel.
    """

    def __init__(self, order: list[str]) -> None:
        self._order = {label: index for index, label in enumerate(order)}
        self._passed: set[int] = set()
        self._next = 0
        self._condition = threading.Condition()

    def turn(self, label: str) -> Turn:
        return Turn(self, self._order.get(label))

    def _wait_for(self, index: int) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._next >= index)

    def _pass(self, index: int) -> None:
        with self._condition:
            self._passed.add(index)
            while self._next in self._passed:
                self._next += 1
            self._condition.notify_all()


class Turn:
    """One account's place in a Turnstile; `with turn:` waits for it and passes it on. Idempotent."""

    def __init__(self, turnstile: Turnstile | None, index: int | None) -> None:
        self._turnstile = turnstile
        self._index = index
        self._passed = False

    def __enter__(self) -> Turn:
        self.wait()
        return self

    def wait(self) -> None:
        """Until every account before this one has passed."""
        if self._turnstile is not None and self._index is not None and not self._passed:
            self._turnstile._wait_for(self._index)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def release(self) -> None:
        if self._turnstile is not None and self._index is not None and not self._passed:
            self._passed = True
            self._turnstile._pass(self._index)


NO_TURN = Turn(None, None)
