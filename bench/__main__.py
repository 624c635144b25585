"""`make bench` (= `.venv/bin/python -m bench`): the collector's cost, as ratios against a raw baseline
measured in the same run, against moto's server and the exchange emulator on 127.0.0.1. No timed
assertions: it reports, and writes bench/RESULTS.md (full runs only, unless --results is given).

    python -m bench [--quick] [--skip-build] [--only cold,warm,scale,accounts,artifact,ip-weight,fan-out] [--code DIR]
                    [--results PATH]

The emulator keeps the exchange's real limits throughout; samples that would exceed them let simulated time
pass between them (bench/harness.py).
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import json
import shlex
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench import artifact, ip_weight, report
from bench.harness import REPO, ColdSample, Harness, item_size_bytes

WORK = REPO / ".cache" / "bench"
SCENARIOS = ("cold", "warm", "scale", "accounts", "artifact", "ip-weight", "fan-out")
#: The exchange's IP weight a minute and a collection's weight: at most 8 collections a minute per IP.
IP_WEIGHT_PER_MINUTE, COLLECTION_WEIGHT = 12_000, 1500


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="fewer runs, a 10,000-record scale test, 15 ip-weight minutes (~3 min)"
    )
    parser.add_argument("--skip-build", action="store_true", help="measure the artifact already in .aws-sam/build")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument(
        "--code",
        type=Path,
        default=REPO / "handler",
        help="directory holding the auto_collector package to measure (default: handler/; e.g. "
        "an older revision from `git worktree add`) - not used by the artifact scenario",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="write the Markdown report here (default: bench/RESULTS.md, full runs of every scenario only)",
    )
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    size = {
        "cold_runs": 5 if args.quick else 20,
        "warm_n": 50 if args.quick else 200,
        "scale_records": 10_000 if args.quick else 100_000,
        "scale_n": 30 if args.quick else 100,
        "accounts": 50,
        "accounts_n": 3 if args.quick else 10,
        "ip_weight_accounts": 100,
        "ip_weight_minutes": 15 if args.quick else 60,
    }
    command = "make bench" + (f" ARGS={shlex.quote(' '.join(sys.argv[1:]))}" if sys.argv[1:] else "")
    started = time.perf_counter()
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"size": size, "command": command, "machine": report.machine()}

    # The build first: it loads the machine, so nothing is timed while it runs.
    if "artifact" in only:
        if args.skip_build:
            results["build"] = {"ok": artifact.ARTIFACT.is_dir(), "line": "(--skip-build: existing artifact)"}
        else:
            _say("sam build (scripts/sam-build.sh) ...")
            ok, line = artifact.build(WORK / "sam-build.log")
            results["build"] = {"ok": ok, "line": line}
            if not ok:
                _say(f"  sam build failed: {line} (see {WORK / 'sam-build.log'}); the artifact rows are skipped")

    code_compiled, code_source = _code_copies(args.code)
    harness = Harness(WORK)
    try:
        if "cold" in only:
            results["cold"] = cold_venv(harness, size["cold_runs"], code_compiled, code_source)
        if "warm" in only:
            results["warm"] = warm(harness, size["warm_n"], code_compiled)
        if "scale" in only:
            results["scale"] = scale(harness, size["scale_records"], size["scale_n"], code_compiled)
        if "accounts" in only:
            results["accounts"] = accounts(harness, size["accounts"], size["accounts_n"], code_compiled)
        if "artifact" in only and results["build"]["ok"]:
            results["artifact"] = artifact_cold(harness, size["cold_runs"])
        if "ip-weight" in only or "fan-out" in only:
            results["ip_weight"] = ip_weight_hour(
                harness,
                size["ip_weight_accounts"],
                size["ip_weight_minutes"],
                code_compiled,
                single="ip-weight" in only,
                fan_out="fan-out" in only or "ip-weight" in only,
            )
    finally:
        harness.close()

    results["elapsed_s"] = time.perf_counter() - started
    results["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    (WORK / "results.json").write_text(json.dumps(results, indent=1, default=str))
    table = report.table(results)
    print()
    print(table)
    if results.get("ip_weight"):
        print()
        print(ip_weight.table(results["ip_weight"]))
    print(f"\n(total {results['elapsed_s']:.0f} s; raw figures in {(WORK / 'results.json').relative_to(REPO)})")
    target = args.results
    if target is None and not args.quick and only == set(SCENARIOS) and args.code == REPO / "handler":
        target = REPO / "bench" / "RESULTS.md"
    if target is not None:
        kept = report.kept_section(target.read_text()) if target.exists() else ""
        target.write_text(report.markdown(results, kept))
        print(f"wrote {target}")
    return 0


def _say(text: str) -> None:
    print(text, flush=True)


def _code_copies(code: Path) -> tuple[Path, Path]:
    """auto_collector as shipped (compiled, like the built artifact) and as source only (no bytecode at all)."""
    compiled, source = WORK / "code-compiled", WORK / "code-source"
    for target in (compiled, source):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            code / "auto_collector",
            target / "auto_collector",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    import py_compile

    compileall.compile_dir(compiled, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return compiled, source


# ---------------------------------------------------------------------------------------------- scenarios


def cold_venv(h: Harness, runs: int, code_compiled: Path, code_source: Path) -> dict[str, Any]:
    """Fresh interpreters, interleaved: the collector (compiled / source) and the raw baseline."""
    _say(f"cold starts: {runs} runs of each variant, interleaved ...")
    env = h.env(**h.account_env("cold"), BENCH_RAW_LABEL="cold-raw")
    python = [sys.executable, "-I", "-B"]
    variants = {
        "collector": ("handler", [str(code_compiled)]),
        "collector_source": ("handler", [str(code_source)]),
        "baseline": ("raw", [str(REPO)]),
    }
    samples: dict[str, list[ColdSample]] = {name: [] for name in variants}
    names = list(variants)
    for name in names:  # one unmeasured run each: file cache warm, window item and table partition exist
        mode, paths = variants[name]
        h.cold(python, mode, paths, env)
    for run in range(runs):
        shift = run % len(names)
        for name in names[shift:] + names[:shift]:
            mode, paths = variants[name]
            sample = h.cold(python, mode, paths, env)
            if sample.status != "collected":
                raise RuntimeError(f"cold {name}: {sample.status}")
            samples[name].append(sample)
    return {name: _cold_summary(values) for name, values in samples.items()}


def _cold_summary(samples: list[ColdSample]) -> dict[str, Any]:
    return {
        "runs": len(samples),
        "wall_ms": statistics.median(s.wall_ms for s in samples),
        "wall_ms_all": [round(s.wall_ms, 1) for s in samples],
        "process_ms": statistics.median(s.process_ms for s in samples),
        "process_ms_all": [round(s.process_ms, 1) for s in samples],
        "process_cpu_ms": statistics.median(s.process_cpu_ms for s in samples),
        "import_ms": statistics.median(s.import_ms for s in samples),
        "invoke_ms": statistics.median(s.invoke_ms for s in samples),
        "cpu_ms": statistics.median(s.cpu_ms for s in samples),
        "maxrss_mb": statistics.median(s.maxrss_kb for s in samples) / 1024,
        "maxrss_mb_max": max(s.maxrss_kb for s in samples) / 1024,
        "aws": _same_counts([s.aws for s in samples]),
        "log_bytes": statistics.median(s.log_bytes for s in samples),
    }


def _same_counts(counts: list[dict[str, int]]) -> dict[str, Any]:
    """The per-invocation request counts, if every invocation made the same requests; else the range."""
    keys = sorted({k for c in counts for k in c})
    return {k: _range([c.get(k, 0) for c in counts]) for k in keys}


def _range(values: list[int]) -> Any:
    low, high = min(values), max(values)
    return low if low == high else f"{low}-{high}"


def _warm_summary(data: dict[str, Any]) -> dict[str, Any]:
    times = sorted(data["times_ms"])
    return {
        "n": len(times),
        "median_ms": statistics.median(times),
        "p90_ms": times[int(len(times) * 0.9) - 1] if times else None,
        "aws": _same_counts(data["counts"]),
        "exchange": _range(data["exchange"]),
    }


def _warm_summaries(raw: dict[str, Any]) -> dict[str, Any]:
    summaries = {name: _warm_summary(data) for name, data in raw.items() if not name.startswith("_")}
    summaries["connections"] = raw["_connections"]
    return summaries


def warm(h: Harness, n: int, code: Path) -> dict[str, Any]:
    _say(f"warm invocations: {n} of each variant in one process, interleaved ...")
    batch = uuid.uuid4().hex[:6]
    label = f"warm-{batch}"
    variants = [
        {"name": "collector", "kind": "handler", "env": h.account_env(label)},
        {"name": "baseline", "kind": "raw", "env": {**h.account_env(label), "BENCH_RAW_LABEL": f"{label}-raw"}},
        {
            "name": "collector_secret_reread",
            "kind": "handler",
            "env": h.account_env(f"{label}-reread", SECRET_MAX_AGE_SECONDS="0", TABLE_NAME=h.table("reread")),
        },
    ]
    raw = h.warm(variants, n=n, warmup=5, count=10, paths=[str(code), str(REPO)])
    result = _warm_summaries(raw)
    window = h.window_item(label)
    slots = sum(1 for name in window if len(name) == 4 and name.startswith("e") and name[1:].isdigit())
    result["window_item"] = {
        "bytes": item_size_bytes(window),
        "slots": slots,
        # each further slot: a 4-byte name and a 13-digit number (8 bytes)
        "bytes_full_ring": item_size_bytes(window) + (500 - slots) * 12,
    }
    result["outcome_item_bytes"] = item_size_bytes(h.latest_outcome(label))
    return result


def scale(h: Harness, records: int, n: int, code: Path) -> dict[str, Any]:
    batch = uuid.uuid4().hex[:6]
    small, big = f"scale1-{batch}", f"scalebig-{batch}"
    _say(f"scale: loading {records:,} outcome records into moto ...")
    small_table, big_table = h.table("scale-one"), h.table("scale-many")  # one deployment each (see Harness.table)
    h.preload_outcomes(small, 1, small_table)
    load_s = h.preload_outcomes(big, records, big_table)
    preloaded = {"one_record": h.count_items(small, small_table), "many_records": h.count_items(big, big_table)}
    _say(f"  loaded in {load_s:.0f} s; {n} warm invocations of each account, interleaved ...")
    variants = [
        {"name": "one_record", "kind": "handler", "env": h.account_env(small, TABLE_NAME=small_table)},
        {"name": "many_records", "kind": "handler", "env": h.account_env(big, TABLE_NAME=big_table)},
    ]
    raw = h.warm(variants, n=n, warmup=3, count=10, paths=[str(code), str(REPO)])
    result = _warm_summaries(raw)
    result["records"] = preloaded
    result["load_s"] = load_s
    return result


def accounts(h: Harness, count: int, n: int, code: Path) -> dict[str, Any]:
    """ACCOUNTS with `count` accounts against one account: without added latency, with 100 ms on every
    exchange request, and with 100 ms on every exchange and AWS request. The latency each adds shows what
    overlaps: the requests made one after another would add their number x 100 ms.

    Under the exchange's IP limit an invocation collects at most 8 accounts (12,000 weight a minute, 1500 a
    collection); the others are deferred to the next tick. Each invocation comes after a simulated minute
    (warm_child), so it finds the IP's minute free: 8 collected and `count` - 8 deferred, every time."""
    batch = uuid.uuid4().hex[:6]
    labels = [f"fleet{batch}-{i:02d}" for i in range(count)]
    fleet = json.dumps([{"label": label, "secretId": h.add_account(label)} for label in labels])
    collected = min(count, IP_WEIGHT_PER_MINUTE // COLLECTION_WEIGHT)
    expect = f"collected:{collected}" + (f",deferred:{count - collected}" if count > collected else "")
    variants = [
        {"name": "many", "kind": "handler", "env": {"ACCOUNTS": fleet}, "expect": expect},
        {"name": "one", "kind": "handler", "env": h.account_env(f"solo-{batch}", TABLE_NAME=h.table("solo"))},
    ]
    paths = [str(code), str(REPO)]
    result: dict[str, Any] = {"accounts": count, "collected": collected, "statuses": expect}
    _say(f"accounts: {count} accounts vs 1, no added latency ...")
    result["no_latency"] = _warm_summaries(h.warm(variants, n=n, warmup=1, count=1, paths=paths))
    _say("  ... 100 ms on every exchange request ...")
    with h.exchange_latency(0.1):
        result["exchange_latency"] = _warm_summaries(h.warm(variants, n=n, warmup=1, count=1, paths=paths))
    _say("  ... 100 ms on every exchange and AWS request ...")
    h.proxy.delay_s = 0.1
    try:
        with h.exchange_latency(0.1):
            result["all_latency"] = _warm_summaries(h.warm(variants, n=max(2, n // 3), warmup=1, count=1, paths=paths))
    finally:
        h.proxy.delay_s = 0.0
    return result


def ip_weight_hour(
    h: Harness, accounts: int, minutes: int, code: Path, *, single: bool = True, fan_out: bool = True
) -> dict[str, Any]:
    """The default configuration, then the same hour with settings a customer can change (not code); then the
    fan-out mode (`--only fan-out`: that alone)."""
    runs: dict[str, Any] = {}
    for name, function_env in ip_weight.WHAT_IF.items() if single else []:
        _say(
            f"ip-weight ({name}): {accounts} accounts on one IP, one scheduled invocation a simulated minute "
            f"for {minutes} ..."
        )
        result = runs[name] = ip_weight.run(h, code, accounts=accounts, minutes=minutes, **function_env)
        _say_hour(result)
    for name, function_env in ip_weight.FAN_OUT.items() if fan_out else []:
        _say(f"ip-weight ({name}): {accounts} accounts on one IP, fan-out on a simulated queue, {minutes} minutes ...")
        result = runs[name] = ip_weight.run_fan_out(h, code, accounts=accounts, minutes=minutes, **function_env)
        _say_hour(result)
    return runs


def _say_hour(result: dict[str, Any]) -> None:
    _say(
        f"  {result['collections']} collections = {result['per_minute']:.2f} a minute (limit 8), "
        f"{result['refused_429_418']} refused 429/418, max weight in 60 s {result['max_weight_60s']}, "
        f"{result['real_s']:.0f} s"
    )


def artifact_cold(h: Harness, runs: int) -> dict[str, Any]:
    _say("built artifact: preparing the python3.12 runs (compiled and plain copies) ...")
    prepared = artifact.prepare(WORK)
    env = h.env(**h.account_env("artifact"))
    command = [prepared.python, "-I", "-B"]
    variants = {"plain": prepared.plain, "compiled": prepared.compiled}
    _say(f"  cold starts of the artifact: {runs} runs of each, interleaved ...")
    samples: dict[str, list[ColdSample]] = {name: [] for name in variants}
    names = list(variants)
    for name in names:
        h.cold(command, "handler", variants[name], env)
    for run in range(runs):
        shift = run % len(names)
        for name in names[shift:] + names[:shift]:
            sample = h.cold(command, "handler", variants[name], env)
            if sample.status != "collected":
                raise RuntimeError(f"artifact cold {name}: {sample.status}")
            samples[name].append(sample)
    result: dict[str, Any] = {name: _cold_summary(values) for name, values in samples.items()}
    result["python"] = prepared.python
    result["shipped_pyc"] = prepared.shipped_pyc
    result["runtime_only"] = prepared.runtime_only
    result["size"] = prepared.size
    return result


if __name__ == "__main__":
    sys.exit(main())
