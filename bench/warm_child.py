"""Warm invocations in one process, run by the benchmark: `python -m bench.warm_child CONFIG.json`.

The config names variants, each the handler or the raw baseline with its own environment (account label,
ACCOUNTS, ...). Every variant is invoked `warmup` times first (its cold start is not measured here), then
`n` rounds run every variant once, the order rotating each round so that no variant always goes first.
Each invocation's wall time is recorded. Then `count` more invocations of each variant run with the AWS
requests (read from the counting proxy) and exchange requests (read from the emulator) recorded around
each one. The results are written as JSON to the config's `out` path.

Time: the process reads the benchmark's shared simulated clock (bench/simclock.py) as `time.time_ns`, and
`gap_ms` of it passes before every invocation (untimed), so each one finds the exchange's rolling minute and
the collector's IP-weight window free of the previous ones, as with invocations a minute apart. Sleeps are
real: an invocation that waited for weight would show in its time.

A variant's `expect` (default "collected") is the status every invocation must end with; for several accounts
it is the count of each status, like "collected:8,deferred:42". Anything else is counted as a failure.

The function's logs and metrics go to stdout, which the parent points at /dev/null.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.simclock import SharedClock


class _Context:
    function_name = "FundAutoCollector-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-1:000000000000:function:FundAutoCollector-bench"
    log_group_name = "/aws/lambda/FundAutoCollector-bench"
    log_stream_name = "bench"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + 60

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


class Variant:
    def __init__(self, spec: dict[str, Any], all_keys: set[str]) -> None:
        self.name: str = spec["name"]
        self.kind: str = spec["kind"]
        self.env: dict[str, str] = spec["env"]
        self.event: Any = spec.get("event", {})
        self.expect: str = spec.get("expect", "collected")
        # What another variant set and this one does not: back to the process's own value (e.g. TABLE_NAME), or gone.
        self._restore = {key: os.environ.get(key) for key in all_keys - set(self.env)}
        self._raw: Any = None
        self.failures: list[str] = []

    def _apply_env(self) -> None:
        for key, value in self._restore.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.environ.update(self.env)

    def invoke(self, clock: SharedClock, gap_ms: int) -> float:
        """One invocation; returns its wall time in ms (the environment switch and the time passing are not timed)."""
        clock.advance_ns(gap_ms * 1_000_000)
        self._apply_env()
        call: Callable[[], str]
        if self.kind == "handler":
            from auto_collector.handler import lambda_handler

            def call() -> str:
                return _statuses(lambda_handler(self.event, _Context()))
        else:
            if self._raw is None:
                from bench.raw import RawCollector

                self._raw = RawCollector()
            call = self._raw.invoke
        started = time.perf_counter()
        try:
            status = call()
        except Exception as error:  # recorded; the parent reports failed invocations
            status = f"{type(error).__name__}: {error}"
        elapsed = (time.perf_counter() - started) * 1000
        if status != self.expect:
            self.failures.append(status)
        return elapsed


def _statuses(result: dict[str, Any]) -> str:
    """One account's status, or for several the count of each ("collected:8,deferred:42")."""
    if "accounts" not in result:
        return str(result.get("status"))
    counts = Counter(str(account["status"]) for account in result["accounts"])
    return ",".join(f"{status}:{count}" for status, count in sorted(counts.items()))


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    clock = SharedClock(Path(config["clock"]))
    clock.install(sleep=False)
    gap_ms = int(config["gap_ms"])
    all_keys = {key for spec in config["variants"] for key in spec["env"]}
    variants = [Variant(spec, all_keys) for spec in config["variants"]]
    results: dict[str, Any] = {v.name: {"times_ms": [], "counts": [], "exchange": []} for v in variants}

    for variant in variants:
        for _ in range(config["warmup"]):
            variant.invoke(clock, gap_ms)
    for round_ in range(config["n"]):
        shift = round_ % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            results[variant.name]["times_ms"].append(variant.invoke(clock, gap_ms))

    proxy, exchange = config["proxy"], config["exchange"]
    for variant in variants:
        for _ in range(config["count"]):
            before, before_x = _get_json(f"{proxy}/_bench/counts"), _get_json(f"{exchange}/_emulator/stats")
            variant.invoke(clock, gap_ms)
            after, after_x = _get_json(f"{proxy}/_bench/counts"), _get_json(f"{exchange}/_emulator/stats")
            results[variant.name]["counts"].append(
                {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
            )
            results[variant.name]["exchange"].append(after_x["requests"] - before_x["requests"])
    for variant in variants:
        results[variant.name]["failures"] = variant.failures[:20]
        results[variant.name]["failed"] = len(variant.failures)
    Path(config["out"]).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
