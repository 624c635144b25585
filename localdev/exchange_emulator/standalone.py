"""``python -m localdev.exchange_emulator``: the emulator as a process of its own, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .emulator import ExchangeEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localdev.exchange_emulator",
        description="Local Binance PM Pro emulator. Register keys via POST /_emulator/credentials.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 = any free port; default 8765)")
    parser.add_argument("--hourly-limit", type=int, default=500)
    parser.add_argument("--ip-weight-limit-1m", type=int, default=12000)
    args = parser.parse_args(argv)

    emulator = ExchangeEmulator(
        hourly_limit=args.hourly_limit,
        ip_weight_limit_1m=args.ip_weight_limit_1m,
        host=args.host,
        port=args.port,
    ).start()
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    print(f"exchange emulator listening on {emulator.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    print("exchange emulator stopped", file=sys.stderr, flush=True)
    return 0
