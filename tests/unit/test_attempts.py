"""What the collector does after one attempt: every verdict against every combination of what was tried."""

from __future__ import annotations

import itertools

import pytest

from auto_collector.attempts import KEY_REFUSED_CODES, NextStep, Tried, after_attempt
from auto_collector.exchange import AttemptResult, Verdict

VERDICTS: tuple[Verdict, ...] = ("success", "retryable", "clock_skew", "rate_limited", "rejected")
#: A sample of what comes with each verdict: no code, the key-refused codes, the timestamp and weight codes.
CODES = (None, -2015, -1022, -1021, -1003, -1102)
STATUS = {"success": 200, "retryable": 503, "clock_skew": 400, "rate_limited": 429, "rejected": 400}


def result(verdict: Verdict, code: int | None = None) -> AttemptResult:
    return AttemptResult(verdict, STATUS[verdict], code, "message", latency_ms=5)


FRESH = Tried()
RESYNCED = Tried(clock_resynced=True)
REREAD = Tried(key_reread=True)
BOTH = Tried(clock_resynced=True, key_reread=True)

# (verdict, code, tried before, max attempts) -> (next step, tried after)
TABLE: list[tuple[Verdict, int | None, Tried, int, NextStep, Tried]] = [
    # success ends it, whatever came before
    ("success", None, FRESH, 3, "done", FRESH),
    ("success", None, Tried(2, True, True), 3, "done", Tried(2, True, True)),
    # -1021: one resync per invocation, then it is a failure
    ("clock_skew", -1021, FRESH, 3, "resync_clock", RESYNCED),
    ("clock_skew", -1021, REREAD, 3, "resync_clock", BOTH),
    ("clock_skew", -1021, Tried(2, False, False), 3, "resync_clock", Tried(2, True, False)),
    ("clock_skew", -1021, RESYNCED, 3, "fail", RESYNCED),
    ("clock_skew", -1021, BOTH, 3, "fail", BOTH),
    # 429/418: never retried, whatever is left
    ("rate_limited", -1003, FRESH, 3, "back_off", FRESH),
    ("rate_limited", None, BOTH, 10, "back_off", BOTH),
    # a refused key: the secret is read again once (it may just have been rotated)
    ("rejected", -2015, FRESH, 3, "reread_key", REREAD),
    ("rejected", -1022, RESYNCED, 3, "reread_key", BOTH),
    ("rejected", -2015, REREAD, 3, "fail", REREAD),
    ("rejected", -1022, BOTH, 3, "fail", BOTH),
    # any other rejection is final
    ("rejected", -1102, FRESH, 3, "fail", FRESH),
    ("rejected", None, FRESH, 3, "fail", FRESH),
    ("rejected", -1021, FRESH, 3, "fail", FRESH),
    # 5XX / timeouts: retried until max_attempts failures
    ("retryable", None, FRESH, 3, "retry", Tried(1)),
    ("retryable", -1000, Tried(1), 3, "retry", Tried(2)),
    ("retryable", None, Tried(2), 3, "fail", Tried(3)),
    ("retryable", None, FRESH, 1, "fail", Tried(1)),
    ("retryable", None, Tried(1, True, True), 2, "fail", Tried(2, True, True)),
    ("retryable", -2015, FRESH, 3, "retry", Tried(1)),  # a code with a 5XX does not make it a key refusal
]


@pytest.mark.parametrize(("verdict", "code", "before", "max_attempts", "step", "after"), TABLE)
def test_next_step_after_an_attempt(
    verdict: Verdict, code: int | None, before: Tried, max_attempts: int, step: NextStep, after: Tried
) -> None:
    assert after_attempt(result(verdict, code), before, max_attempts) == (step, after)


def every_combination() -> list[tuple[Verdict, int | None, Tried, int]]:
    return [
        (verdict, code, Tried(failures, resynced, reread), max_attempts)
        for verdict, code, failures, resynced, reread, max_attempts in itertools.product(
            VERDICTS, CODES, range(3), (False, True), (False, True), (1, 3)
        )
        if failures < max_attempts  # an invocation stops at max_attempts failures
    ]


def expected(verdict: Verdict, code: int | None, before: Tried, max_attempts: int) -> NextStep:
    """The rule as the module docstring states it, one verdict at a time."""
    if verdict == "success":
        return "done"
    if verdict == "rate_limited":
        return "back_off"  # never through a 429/418
    if verdict == "clock_skew":
        return "fail" if before.clock_resynced else "resync_clock"
    if verdict == "rejected":
        return "reread_key" if code in KEY_REFUSED_CODES and not before.key_reread else "fail"
    return "retry" if before.retryable_failures + 1 < max_attempts else "fail"


@pytest.mark.parametrize(("verdict", "code", "before", "max_attempts"), every_combination())
def test_every_verdict_and_flag_combination(
    verdict: Verdict, code: int | None, before: Tried, max_attempts: int
) -> None:
    step, after = after_attempt(result(verdict, code), before, max_attempts)
    assert step == expected(verdict, code, before, max_attempts)
    # what has been tried only ever grows, and only by what this step does
    assert after.clock_resynced == (before.clock_resynced or step == "resync_clock")
    assert after.key_reread == (before.key_reread or step == "reread_key")
    counted = verdict == "retryable"
    assert after.retryable_failures == before.retryable_failures + counted
    assert after.retryable_failures <= max_attempts


def test_retries_never_exceed_max_attempts_in_a_row() -> None:
    for max_attempts in range(1, 11):
        tried, attempts, step = Tried(), 0, "retry"
        while step == "retry":
            attempts += 1
            step, tried = after_attempt(result("retryable"), tried, max_attempts)
        assert (attempts, step, tried.retryable_failures) == (max_attempts, "fail", max_attempts)


def test_one_resync_and_one_reread_in_the_same_invocation() -> None:
    step, tried = after_attempt(result("clock_skew", -1021), Tried(), 3)
    assert step == "resync_clock"
    step, tried = after_attempt(result("rejected", -2015), tried, 3)
    assert step == "reread_key"
    assert after_attempt(result("clock_skew", -1021), tried, 3)[0] == "fail"
    assert after_attempt(result("rejected", -1022), tried, 3)[0] == "fail"
