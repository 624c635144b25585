"""Every exchange fault crossed with every trigger, through the real handler (moto server + exchange emulator),
and what the NEXT invocation does after each; then key rotation, duplicate deliveries, a process killed
mid-invocation, DynamoDB failures, and a scan of everything logged or raised for key material.

Per case: the returned status or the raised exception (type, HTTP status, exchange code); the outcome record
(status, reservations, attempt verdicts); how many requests the emulator saw on the collection path (and how
many it executed); how often the secret was read; then one more invocation of the same trigger kind.
"""

from __future__ import annotations

import calendar
import contextlib
import io
import json
import logging
import multiprocessing
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import pytest

from auto_collector import runtime
from auto_collector.errors import (
    CollectorError,
    ExchangeError,
    ExchangeRateLimitedError,
    ExchangeRejectedError,
    ExchangeUnavailableError,
    RecordNotStoredError,
    WindowStoreError,
)
from auto_collector.handler import lambda_handler
from auto_collector.handler import logger as service_logger
from auto_collector.store import CollectorTable
from auto_collector.window import Grant, WindowPolicy
from localdev.exchange_emulator import AUTO_COLLECTION_PATH, ApiCredential, ExchangeEmulator, Fault
from localdev.keys import new_ed25519_pem
from tests.support.cold_start import cold_start
from tests.support.deployment import Deployment
from tests.support.dynamodb_local import free_port
from tests.support.fault_proxy import SECRETS_MANAGER_TARGET, FaultProxy
from tests.support.lambda_context import FakeLambdaContext
from tests.support.workers import invoke_repeatedly, worker_environment

SERVER_TIME = "/api/v3/time"
RESTRICTIONS = "/sapi/v1/account/apiRestrictions"
BALANCE = "/sapi/v1/portfolio/balance"
GET_SECRET = SECRETS_MANAGER_TARGET + "GetSecretValue"


# --- triggers ------------------------------------------------------------------------------------------


def scheduled_event() -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime()),
        "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/fund-auto-collector"],
        "detail": {},
    }


def console_event() -> dict[str, Any]:
    return {}


def sqs_event(message_id: str | None = None) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventSource": "aws:sqs",
                "messageId": message_id or str(uuid.uuid4()),
                "body": json.dumps({"account": "default"}),
            }
        ]
    }


#: Each call makes a new event of that kind (a new schedule tick, a new console test, a new SQS message).
TRIGGERS: dict[str, Callable[[], dict[str, Any]]] = {
    "schedule": scheduled_event,
    "console": console_event,
    "sqs": sqs_event,
}


# --- the rig: a deployment whose logs, exceptions and key material are collected ------------------------


@dataclass
class Rig:
    deployment: Deployment
    secrets_proxy: FaultProxy
    errors: list[BaseException] = field(default_factory=list)
    #: The collector's own log lines (Powertools' JSON, what Lambda would ship to CloudWatch).
    logs: io.StringIO = field(default_factory=io.StringIO)
    cleanup: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    #: Every value that must never be logged or raised: API keys, HMAC secrets, PEM bodies.
    key_material: set[str] = field(default_factory=set)

    @property
    def exchange(self) -> ExchangeEmulator:
        return self.deployment.exchange

    def run(self, event: Any, context: FakeLambdaContext | None = None) -> Any:
        """The handler's return value, or the CollectorError it raised."""
        try:
            if context is None:
                return self.deployment.invoke(event)
            self.deployment.contexts.append(context)
            return lambda_handler(event, context)
        except CollectorError as error:
            self.errors.append(error)
            return error
        except Exception as error:  # escaped the collector: scanned too, then fails the test
            self.errors.append(error)
            raise

    def exchange_proxy(self) -> FaultProxy:
        """Route the collector's exchange traffic through a FaultProxy (for faults the emulator cannot make)."""
        proxy = self.cleanup.enter_context(FaultProxy(self.exchange.base_url))
        self.deployment.set_env(BINANCE_BASE_URL=proxy.endpoint)
        return proxy

    def collections(self) -> list[Any]:
        return self.exchange.requests(AUTO_COLLECTION_PATH)

    def secret_reads(self) -> int:
        return self.secrets_proxy.count(GET_SECRET)

    def record(self, index: int = -1) -> dict[str, Any]:
        """The outcome record of the `index`-th invocation of this test."""
        wanted = self.deployment.contexts[index].aws_request_id
        (record,) = [r for r in self.deployment.outcomes() if r["invocationId"] == wanted]
        return record

    def hmac_credential(self, secret_value: str) -> str:
        api_key = f"hmac-{uuid.uuid4().hex}"
        self.exchange.add_credential(ApiCredential(api_key=api_key, hmac_secret=secret_value))
        self.key_material |= {api_key, secret_value}
        return api_key

    def put_secret(self, document: dict[str, str]) -> None:
        """Replace the secret's value and start from a cold container."""
        self.key_material |= set(document.values())
        self.deployment.put_secret(json.dumps(document))


def pem_body(pem: str) -> str:
    return "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))


def signatures(exchange: ExchangeEmulator) -> set[str]:
    found = {r.signature for r in exchange.requests() if r.signature}
    return found | {quote(signature, safe="") for signature in found}


def leaks(texts: list[str], material: set[str]) -> list[str]:
    """The values of `material` found in `texts`, shown by their first characters only."""
    return sorted(f"{value[:6]}... ({len(value)} chars)" for value in material if any(value in t for t in texts))


@dataclass
class LeakScan:
    texts: list[str] = field(default_factory=list)
    material: set[str] = field(default_factory=set)


#: Everything this module's tests logged and raised, and all the key material they used.
SCAN = LeakScan()


@pytest.fixture(scope="module", autouse=True)
def no_key_material_across_tests() -> Iterator[None]:
    """After whichever of this module's tests ran, in any order: no test's key material in any test's texts
    (each test's own texts are checked against its own material when its rig is torn down)."""
    yield
    assert leaks(SCAN.texts, SCAN.material) == [], "key material of one test in another test's texts"


@pytest.fixture
def rig(deployment: Deployment, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[Rig]:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="aws_lambda_powertools")
    with FaultProxy(deployment.secrets.meta.endpoint_url) as secrets_proxy:
        deployment.set_env(AWS_ENDPOINT_URL_SECRETS_MANAGER=secrets_proxy.endpoint)
        the_rig = Rig(deployment, secrets_proxy)
        the_rig.key_material |= {deployment.api_key, deployment.private_pem, pem_body(deployment.private_pem)}
        handler = service_logger.logger_handler
        assert isinstance(handler, logging.StreamHandler)
        previous_stream = handler.setStream(the_rig.logs)
        previous_level = service_logger.log_level
        service_logger.setLevel(logging.DEBUG)
        try:
            yield the_rig
        finally:
            handler.setStream(previous_stream)
            service_logger.setLevel(previous_level)
            the_rig.cleanup.close()
    out, err = capsys.readouterr()  # the EMF metric lines, and anything else printed
    texts = [the_rig.logs.getvalue(), out, err, caplog.text, *(record.getMessage() for record in caplog.records)]
    for error in the_rig.errors:
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    texts += [json.dumps(record, default=str) for record in deployment.outcomes()]
    material = the_rig.key_material | signatures(deployment.exchange)
    SCAN.texts += texts
    SCAN.material |= material
    assert leaks(texts, material) == [], "key material in a log line, exception or outcome record"


# --- the matrix ----------------------------------------------------------------------------------------

Next = Literal["collects", "backs_off", "fails_again"]


@dataclass(frozen=True)
class Case:
    id: str
    arrange: Callable[[Rig], None]
    verdicts: tuple[str, ...]  # attemptLog verdicts; one reservation and one request each
    executed: int  # collections the emulator executed
    next: Next
    error: type[ExchangeError] | None = None
    http_status: int | None = None
    code: int | None = None
    secret_reads: int = 1  # a cold start reads the secret once
    #: The key was refused at its first request, the restrictions read: no collection, no window touched.
    refused_by_key_check: bool = False
    block_s: int | None = None  # the back-off stored after a 429/418
    retry_after: int | None = None  # the Retry-After header that came with it
    check: Callable[[Rig, dict[str, Any]], None] | None = None


def inject(*faults: Fault) -> Callable[[Rig], None]:
    return lambda rig: rig.exchange.inject(*faults)


def timeout(rig: Rig) -> None:
    rig.deployment.set_env(HTTP_TIMEOUT_SECONDS="1")
    rig.exchange.inject(Fault(delay_s=1.5))


def response_cut_off(rig: Rig) -> None:
    rig.exchange_proxy().truncate_next(1, AUTO_COLLECTION_PATH)  # executed, but half the answer is lost on the way back


def clock_drift(rig: Rig) -> None:
    rig.exchange.server_time_offset_ms = -20_000  # our clock is 20 s ahead of the exchange's


def wrong_hmac_secret(rig: Rig) -> None:
    api_key = rig.hmac_credential("the-real-hmac-secret-" + uuid.uuid4().hex)
    rig.put_secret({"apiKey": api_key, "apiSecret": "a-stale-hmac-secret-" + uuid.uuid4().hex})


def unknown_api_key(rig: Rig) -> None:
    rig.put_secret({"apiKey": "unregistered-" + uuid.uuid4().hex, "privateKey": rig.deployment.private_pem})


def check_timeout(rig: Rig, record: dict[str, Any]) -> None:
    assert record["attemptLog"][0]["message"] == "timed out waiting for the exchange"
    assert record["attemptLog"][0]["httpStatus"] == 0


def check_cut_off(rig: Rig, record: dict[str, Any]) -> None:
    first = record["attemptLog"][0]
    assert first["httpStatus"] == 0 and "ChunkedEncodingError" in first["message"]


def check_drift(rig: Rig, record: dict[str, Any]) -> None:
    # The cold start's first signed request, the key's restrictions, meets the drift; the collection does not.
    assert [r.code for r in rig.exchange.requests(RESTRICTIONS)] == [-1021, None]
    assert [r.code for r in rig.collections()] == [None]
    assert len(rig.exchange.requests(SERVER_TIME)) == 1  # one resync
    assert record["clockOffsetMs"] == pytest.approx(-20_000, abs=500)


def check_persistent_skew(rig: Rig, record: dict[str, Any]) -> None:
    assert len(rig.exchange.requests(SERVER_TIME)) == 1  # resynced once, then gave up
    assert record["error"]["code"] == -1021


def check_key_refused(rig: Rig, record: dict[str, Any]) -> None:
    assert "the secret was re-read and has not changed" in record["error"]["message"]


CASES = [
    Case("500", inject(Fault(status=500)), ("retryable", "success"), executed=1, next="collects"),
    Case("503-executed", inject(Fault(status=503, execute=True)), ("retryable", "success"), 2, "collects"),
    Case("timeout", timeout, ("retryable", "success"), executed=2, next="collects", check=check_timeout),
    Case("dropped-connection", inject(Fault(drop=True)), ("retryable", "success"), executed=1, next="collects"),
    Case("response-cut-off", response_cut_off, ("retryable", "success"), 2, "collects", check=check_cut_off),
    Case(
        "429-retry-after",
        inject(Fault(status=429, retry_after=30)),
        ("rate_limited",),
        0,
        "backs_off",
        ExchangeRateLimitedError,
        429,
        -1003,
        block_s=30,
        retry_after=30,
    ),
    Case(
        "418-retry-after",
        inject(Fault(status=418, retry_after=7200)),
        ("rate_limited",),
        0,
        "backs_off",
        ExchangeRateLimitedError,
        418,
        -1003,
        block_s=7200,
        retry_after=7200,
    ),
    Case(
        "1003-without-retry-after",
        inject(Fault(status=429, code=-1003)),
        ("rate_limited",),
        0,
        "backs_off",
        ExchangeRateLimitedError,
        429,
        -1003,
        block_s=60,
    ),  # DEFAULT_RATE_LIMIT_S
    Case("1021-clock-drift", clock_drift, ("success",), executed=1, next="collects", check=check_drift),
    Case(
        "1021-persistent",
        inject(Fault(status=400, code=-1021, count=2)),
        ("clock_skew", "clock_skew"),
        0,
        "collects",
        ExchangeRejectedError,
        400,
        -1021,
        check=check_persistent_skew,
    ),
    Case(
        "1022-wrong-secret",
        wrong_hmac_secret,
        (),
        0,
        "fails_again",
        ExchangeRejectedError,
        400,
        -1022,
        secret_reads=2,
        refused_by_key_check=True,
        check=check_key_refused,
    ),
    Case(
        "2015-unknown-key",
        unknown_api_key,
        (),
        0,
        "fails_again",
        ExchangeRejectedError,
        401,
        -2015,
        secret_reads=2,
        refused_by_key_check=True,
        check=check_key_refused,
    ),
    Case(
        "21001-not-portfolio-margin",
        inject(Fault(status=400, code=-21001)),
        ("rejected",),
        0,
        "collects",
        ExchangeRejectedError,
        400,
        -21001,
    ),
    Case(
        "451-restricted-location",
        inject(Fault(status=451)),
        ("rejected",),
        0,
        "collects",
        ExchangeRejectedError,
        451,
        0,
    ),
]


def iso_ms(text: str) -> int:
    """Epoch ms of the records' "2026-11-25T14:00:00.123Z" (exact: no float rounding)."""
    seconds = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return calendar.timegm(seconds.timetuple()) * 1000 + int(text[20:23])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def single(result: Any) -> Any:
    """The one account's answer: an SQS batch answers with a list of them (and never raises, see service.py)."""
    if isinstance(result, dict) and "batchItemFailures" in result:
        (summary,) = result["accounts"]
        return summary
    return result


def assert_failed_as(result: Any, case: Case) -> None:
    """Raised with the exchange's status and code, or, from SQS, recorded in the batch's answer (not raised: a raise
    would hand the whole batch back to the queue)."""
    assert case.error is not None
    if isinstance(result, dict) and "batchItemFailures" in result:
        assert result["batchItemFailures"] == []  # a failure is not retried through the queue
        summary = single(result)
        assert summary["status"] == "failed" and summary["error"]["type"] == case.error.kind, summary
        assert (summary["error"]["httpStatus"], summary["error"]["code"]) == (case.http_status, case.code)
        return
    assert type(result) is case.error, result
    assert (result.http_status, result.code) == (case.http_status, case.code)


@pytest.mark.parametrize("trigger", list(TRIGGERS))
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_fault_then_next_invocation(rig: Rig, case: Case, trigger: str) -> None:
    case.arrange(rig)
    started_ms = now_ms()
    result = rig.run(TRIGGERS[trigger]())

    # what the invocation returned or raised
    if case.error is None:
        summary = single(result)
        assert isinstance(summary, dict), result
        assert (summary["status"], summary["httpStatus"], summary["exchangeCode"]) == ("collected", 200, None)
        assert summary["attempts"] == len(case.verdicts)
    else:
        assert_failed_as(result, case)
    # what it recorded
    record = rig.record()
    assert record["status"] == ("collected" if case.error is None else "failed")
    assert record["trigger"] == trigger
    assert record["reservations"] == list(range(len(case.verdicts)))
    assert [attempt["verdict"] for attempt in record["attemptLog"]] == list(case.verdicts)
    assert record["windowUsed"] == (None if case.refused_by_key_check else len(case.verdicts))
    if case.error is not None:
        assert record["error"]["type"] == case.error.kind
        assert (record["error"]["httpStatus"], record["error"]["code"]) == (case.http_status, case.code)
        assert (record["httpStatus"], record["exchangeCode"]) == (case.http_status, case.code)
    # what the exchange saw, and how often the secret was read
    sent = rig.collections()
    assert len(sent) == len(case.verdicts)
    assert sum(request.executed for request in sent) == case.executed
    assert rig.secret_reads() == case.secret_reads
    if case.check is not None:
        case.check(rig, record)
    if case.block_s is not None:
        blocked_ms = iso_ms(record["blockedUntil"])
        assert started_ms + case.block_s * 1000 <= blocked_ms <= now_ms() + case.block_s * 1000
        assert record["attemptLog"][0]["retryAfterSeconds"] == case.retry_after

    # what the next invocation of the same kind does
    {"collects": next_collects, "backs_off": next_backs_off, "fails_again": next_fails_again}[case.next](
        rig, case, trigger
    )


def next_collects(rig: Rig, case: Case, trigger: str) -> None:
    seen, reads = len(rig.exchange.requests()), rig.secret_reads()
    result = single(rig.run(TRIGGERS[trigger]()))
    assert isinstance(result, dict) and result["status"] == "collected", result
    assert result["attempts"] == 1
    new = rig.exchange.requests()[seen:]
    assert [(r.path, r.status) for r in new] == [(AUTO_COLLECTION_PATH, 200)]  # one request, no resync, no retry
    assert rig.secret_reads() == reads  # warm: the cached secret
    record = rig.record()
    assert record["reservations"] == [len(case.verdicts)]
    assert result["windowUsed"] == len(case.verdicts) + 1


def next_backs_off(rig: Rig, case: Case, trigger: str) -> None:
    seen = len(rig.exchange.requests())
    blocked_until = rig.record()["blockedUntil"]
    for cold in (False, True):  # this container, then another one that has never heard of the 429/418
        if cold:
            cold_start()
        result = single(rig.run(TRIGGERS[trigger]()))
        assert isinstance(result, dict) and result["status"] == "backing_off", result
        assert result["blockedUntil"] == blocked_until
        assert result["attempts"] == 0 and result["windowUsed"] == 1
        assert len(rig.exchange.requests()) == seen  # no request of any kind
        record = rig.record()
        assert (record["status"], record["reservations"], record["attemptLog"]) == ("backing_off", [], [])
        assert f"HTTP {case.http_status} code {case.code}" in record["note"]


def next_fails_again(rig: Rig, case: Case, trigger: str) -> None:
    sent, reads = len(rig.collections()), rig.secret_reads()
    result = rig.run(TRIGGERS[trigger]())
    assert_failed_as(result, case)
    assert len(rig.collections()) == sent + (0 if case.refused_by_key_check else 1)
    assert rig.secret_reads() == reads + 1  # the cached secret, then exactly one forced re-read
    assert rig.record()["reservations"] == ([] if case.refused_by_key_check else [1])


def test_balance_answer_cut_off_does_not_stop_the_collection(rig: Rig) -> None:
    rig.deployment.set_env(BALANCE_CHECK="skip-when-empty")
    rig.exchange.set_balances("default", {"USDT": {"umWalletBalance": "12.5"}})
    rig.exchange_proxy().truncate_next(1, BALANCE)

    result = rig.run({})

    assert isinstance(result, dict) and result["status"] == "collected", result
    assert "balance check failed" in result["note"] and "ChunkedEncodingError" in result["note"]
    assert len(rig.collections()) == 1
    assert rig.record()["reservations"] == [0]


# --- key rotation ----------------------------------------------------------------------------------------


def rotate_to_new_ed25519_key(rig: Rig) -> str:
    """Register a new key at the exchange and put it in the secret behind the warm container's cache."""
    private_pem, public_pem = new_ed25519_pem()
    new_key = "rotated-" + uuid.uuid4().hex
    rig.exchange.add_credential(ApiCredential(api_key=new_key, public_key_pem=public_pem))
    rig.key_material |= {new_key, private_pem, pem_body(private_pem)}
    rig.deployment.secrets.put_secret_value(
        SecretId=rig.deployment.secret_id, SecretString=json.dumps({"apiKey": new_key, "privateKey": private_pem})
    )
    return new_key


def test_rotated_key_is_reread_once_after_2015_and_collects(rig: Rig) -> None:
    assert rig.run({})["status"] == "collected"  # a warm container holding the old key
    new_key = rotate_to_new_ed25519_key(rig)
    rig.exchange.inject(Fault(status=401, code=-2015))  # the old key is revoked
    reads = rig.secret_reads()

    result = rig.run({})

    assert result["status"] == "collected"
    assert rig.secret_reads() == reads + 1  # exactly one forced re-read
    assert [r.api_key for r in rig.collections()] == [rig.deployment.api_key, rig.deployment.api_key, new_key]
    record = rig.record()
    assert [a["verdict"] for a in record["attemptLog"]] == ["rejected", "success"]
    assert record["attemptLog"][0]["code"] == -2015
    assert record["reservations"] == [1, 2]
    # the next invocation uses the new key from the cache
    assert rig.run({})["status"] == "collected"
    assert rig.collections()[-1].api_key == new_key
    assert rig.secret_reads() == reads + 1


def test_unchanged_secret_after_2015_fails_after_exactly_one_reread(rig: Rig) -> None:
    assert rig.run({})["status"] == "collected"
    rig.exchange.inject(Fault(status=401, code=-2015))
    reads, sent = rig.secret_reads(), len(rig.collections())

    result = rig.run({})

    assert type(result) is ExchangeRejectedError and (result.http_status, result.code) == (401, -2015)
    assert "has not changed" in str(result)
    assert rig.secret_reads() == reads + 1
    assert len(rig.collections()) == sent + 1  # never retried with the same key


# --- duplicate deliveries --------------------------------------------------------------------------------


def test_the_same_scheduled_event_delivered_twice_collects_once(rig: Rig) -> None:
    event = scheduled_event()
    assert rig.run(event)["status"] == "collected"
    second = rig.run(event)
    runtime.reset()  # a third delivery to another container, whose cache has never seen the event
    third = rig.run(event)

    assert second["status"] == third["status"] == "duplicate"
    assert len(rig.collections()) == 1
    first_invocation = rig.deployment.contexts[0].aws_request_id
    for index in (1, 2):
        record = rig.record(index)
        assert (record["status"], record["reservations"], record["eventId"]) == ("duplicate", [], event["id"])
        assert first_invocation in record["note"]


def test_lambda_retrying_a_failed_scheduled_event_with_the_same_request_id_may_collect(rig: Rig) -> None:
    """Lambda retries a failed asynchronous invocation with the same request id: not a duplicate."""
    rig.exchange.inject(Fault(status=500, count=3))
    event, request_id = scheduled_event(), str(uuid.uuid4())
    assert type(rig.run(event, FakeLambdaContext(aws_request_id=request_id))) is ExchangeUnavailableError
    retried = rig.run(event, FakeLambdaContext(aws_request_id=request_id))
    assert retried["status"] == "collected"
    assert [r.status for r in rig.collections()] == [500, 500, 500, 200]


def test_console_test_event_twice_collects_twice(rig: Rig) -> None:
    assert [rig.run({})["status"] for _ in range(2)] == ["collected", "collected"]
    assert len(rig.collections()) == 2


def test_the_same_sqs_message_delivered_twice_collects_once(rig: Rig) -> None:
    message_id = str(uuid.uuid4())
    assert rig.run(sqs_event(message_id))["status"] == "collected"
    assert rig.run(sqs_event(message_id))["status"] == "duplicate"
    assert rig.run(sqs_event())["status"] == "collected"  # another message
    assert len(rig.collections()) == 2


# --- crash safety ----------------------------------------------------------------------------------------


def test_a_process_killed_while_waiting_for_the_exchange_leaves_its_slot_spent(rig: Rig) -> None:
    rig.deployment.set_env(MAX_CALLS_PER_HOUR="2")
    rig.exchange.inject(Fault(delay_s=30))  # the answer never comes before the kill
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    process = context.Process(target=invoke_repeatedly, args=(worker_environment(), 1, start, results))
    process.start()
    start.set()
    deadline = time.monotonic() + 60
    while not rig.collections():
        assert time.monotonic() < deadline and process.is_alive(), "the collector never reached the exchange"
        time.sleep(0.02)
    process.kill()  # SIGKILL between the reservation and the outcome record
    process.join(timeout=10)

    assert rig.deployment.outcomes() == []  # it never got to write one
    store = CollectorTable(rig.deployment.dynamodb, rig.deployment.table)
    assert store.read(rig.deployment.window_key).sequence == 1  # but its reservation was stored before it sent
    second = rig.run({})
    assert (second["status"], second["windowUsed"]) == ("collected", 2)
    assert rig.record()["reservations"] == [1]
    third = rig.run({})
    assert (third["status"], third["windowUsed"]) == ("budget_exhausted", 2)
    assert len(rig.collections()) == 2


def test_a_reservation_whose_request_was_never_sent_still_counts(rig: Rig) -> None:
    rig.deployment.set_env(MAX_CALLS_PER_HOUR="1")
    store = CollectorTable(rig.deployment.dynamodb, rig.deployment.table)
    decision, _ = store.reserve(
        rig.deployment.window_key, WindowPolicy(1, 5_000), now_ms, lambda: 60_000
    )  # then "crashed"
    assert isinstance(decision, Grant)

    result = rig.run({})

    assert (result["status"], result["windowUsed"]) == ("budget_exhausted", 1)
    assert iso_ms(result["nextSlotAt"]) == decision.expiry_ms
    assert rig.collections() == []


# --- DynamoDB failures ------------------------------------------------------------------------------------


def test_dynamodb_unreachable_sends_nothing_and_logs_the_outcome(rig: Rig) -> None:
    rig.deployment.set_env(AWS_ENDPOINT_URL_DYNAMODB=f"http://127.0.0.1:{free_port()}")  # nothing listens there

    result = rig.run({})

    assert type(result) is WindowStoreError
    # the first write: the IP weight of the key's restrictions read
    assert f"could not reserve IP weight in table {rig.deployment.table!r}" in str(result)
    assert rig.exchange.requests() == []
    assert "outcome not stored; full record follows" in rig.logs.getvalue()


def test_missing_table_sends_nothing(rig: Rig) -> None:
    rig.deployment.set_env(TABLE_NAME="no-such-table")
    result = rig.run({})
    assert type(result) is WindowStoreError
    assert "could not reserve IP weight in table 'no-such-table'" in str(result)
    assert "ResourceNotFoundException" in str(result)
    assert rig.exchange.requests() == []


@pytest.fixture
def throttling_dynamodb(rig: Rig) -> Iterator[FaultProxy]:
    with FaultProxy(rig.deployment.dynamodb.meta.endpoint_url) as proxy:
        rig.deployment.set_env(AWS_ENDPOINT_URL_DYNAMODB=proxy.endpoint)
        yield proxy


def test_dynamodb_throttling_is_retried_and_the_invocation_still_collects(
    rig: Rig, throttling_dynamodb: FaultProxy
) -> None:
    throttling_dynamodb.fail_next(2)  # botocore's standard mode makes 3 attempts

    result = rig.run({})

    assert result["status"] == "collected"
    assert sum(throttling_dynamodb.failed.values()) == 2
    assert len(rig.collections()) == 1
    assert rig.record()["reservations"] == [0]


def test_a_reservation_whose_answer_was_lost_after_it_was_applied_takes_one_slot(
    rig: Rig, throttling_dynamodb: FaultProxy
) -> None:
    rig.run({})  # a warm container: its view of both windows is current
    throttling_dynamodb.lose_answer_next(1, "DynamoDB_20120810.TransactWriteItems")

    result = rig.run({})

    # botocore retried the transaction; it came back as a conflict with exactly what it had written: recognised as
    # its own, one slot and one request, not a second reservation (nor a false crash trace in the operator view).
    assert result["status"] == "collected"
    assert sum(throttling_dynamodb.failed.values()) == 1
    assert len(rig.collections()) == 2
    assert rig.record()["reservations"] == [1]
    assert result["windowUsed"] == 2


def test_a_collection_whose_record_cannot_be_written_is_reported_as_collected_and_the_lost_record_apart(
    rig: Rig, throttling_dynamodb: FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    rig.run({})  # the account is registered (a PutItem of its own) and its first record written
    throttling_dynamodb.fail_next(4, "DynamoDB_20120810.PutItem")  # the first attempt and botocore's 3 retries

    result = rig.run({})

    # The exchange executed the collection: that is what the error says, beside the lost record.
    assert type(result) is RecordNotStoredError
    assert result.statuses == {"default": "collected"}
    assert "the full record is in the log" in str(result)
    assert len(rig.collections()) == 2
    assert [record["status"] for record in rig.deployment.outcomes()] == ["collected"]  # only the first run's
    logs = rig.logs.getvalue()
    assert "outcome not stored; full record follows" in logs and '"status":"collected"' in logs
    out = capsys.readouterr().out
    print(out)  # back to the captured output, which the rig's leak scan reads when the test ends
    assert '"OutcomeNotRecorded":[1.0]' in out.replace(" ", "")


def test_a_reservation_slower_than_recv_window_allows_is_not_sent(rig: Rig, throttling_dynamodb: FaultProxy) -> None:
    rig.deployment.set_env(RECV_WINDOW_MS="2000")
    rig.run({})  # warm: the next reservation is one transaction
    throttling_dynamodb.delay_next(1, "DynamoDB_20120810.TransactWriteItems", 1.5)

    result = rig.run({})

    # Signed at the reservation's instant, it would arrive with a stale timestamp: refused by the exchange, yet
    # possibly counted against the IP weight after the window's entry expired. Not sent; the slot stays spent.
    assert type(result) is WindowStoreError and "too long for recvWindow 2000 ms; not sent" in str(result)
    assert len(rig.collections()) == 1
    assert rig.record()["unsentReservations"] == [1]


def test_a_back_off_that_cannot_be_stored_still_reports_the_exchange_s_refusal(
    rig: Rig, throttling_dynamodb: FaultProxy
) -> None:
    rig.exchange.inject(Fault(path=AUTO_COLLECTION_PATH, status=429, code=-1003, retry_after=30))
    rig.run({"dryRun": True})  # warm, so that the only UpdateItems of the next run are the back-off's writes
    throttling_dynamodb.fail_next(8, "DynamoDB_20120810.UpdateItem")

    result = rig.run({})

    assert type(result) is ExchangeRateLimitedError and result.http_status == 429
    assert "the back-off could not be stored" in rig.record()["note"]


def test_dynamodb_throttling_that_outlasts_the_retries_sends_nothing(rig: Rig, throttling_dynamodb: FaultProxy) -> None:
    throttling_dynamodb.fail_next(5)  # the reservation's 3 attempts, then 2 of the outcome write's

    result = rig.run({})

    assert type(result) is WindowStoreError
    assert "ProvisionedThroughputExceededException" in str(result)
    assert rig.collections() == []
    record = rig.record()  # the outcome write's third attempt got through
    assert (record["status"], record["error"]["type"], record["reservations"]) == ("failed", "window_store", [])


# --- no key material anywhere ----------------------------------------------------------------------------


def test_the_leak_scan_sees_signed_requests_and_error_logs_and_finds_a_planted_key(rig: Rig) -> None:
    """The scan every test's rig ends with is not vacuous: what it reads holds the collector's error log with
    the exchange's message and the signed requests' signatures are in its material, and it finds a key
    that does appear. (Self-contained: it used to be a summary over the whole matrix that skipped unless
    it ran last.)"""
    wrong_hmac_secret(rig)
    assert isinstance(rig.run(console_event()), ExchangeError)

    logs = rig.logs.getvalue()
    assert '"level":"ERROR"' in logs and "collection failed" in logs
    assert "Signature for this request is not valid." in logs
    sent = signatures(rig.exchange)
    assert sent and all(len(signature) == 64 for signature in sent if "%" not in signature)  # HMAC-SHA256, hex
    assert leaks([logs], rig.key_material | sent) == []
    planted = rig.exchange.requests(RESTRICTIONS)[0].signature  # the key is refused before any collection
    assert planted is not None
    assert leaks([logs, f"a careless log line with {planted}"], rig.key_material | sent) == [
        f"{planted[:6]}... (64 chars)"
    ]
