"""Simulated time shared by the benchmark's processes: the real clock plus a shift kept in an 8-byte file.

The exchange emulator (in the benchmark's own process) reads it as its `clock_ms`; a child process that runs the
collector installs it as `time.time_ns` (the only wall clock the collector reads) and, where a sleep must not
really wait, as `time.sleep`. Moving the shift on is time passing for every reader at once: the emulator's
rolling minute and hour, the collector's windows, the timestamps it signs. Time never goes back.

Only the standard library: the warm child imports this before the code it measures.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from pathlib import Path

_FORMAT = "<q"  # the shift in ns, little-endian int64 at offset 0
_REAL_TIME_NS = time.time_ns


class SharedClock:
    """`now_ns()` = the real clock + a shift that any process holding the same file can move forward."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        if create:
            path.write_bytes(struct.pack(_FORMAT, 0))
        descriptor = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(descriptor, struct.calcsize(_FORMAT))
        finally:
            os.close(descriptor)
        self.path = path
        self._lock = threading.Lock()  # threads of one process advancing at once (different processes never do)

    def shift_ns(self) -> int:
        return int(struct.unpack_from(_FORMAT, self._map, 0)[0])

    def shift_ms(self) -> int:
        return self.shift_ns() // 1_000_000

    def now_ns(self) -> int:
        return _REAL_TIME_NS() + self.shift_ns()

    def now_ms(self) -> int:
        return self.now_ns() // 1_000_000

    def advance_ns(self, ns: int) -> None:
        if ns <= 0:
            return
        with self._lock:
            struct.pack_into(_FORMAT, self._map, 0, self.shift_ns() + ns)

    def advance_to_ns(self, target_ns: int) -> None:
        """Let time pass until `target_ns` (nothing if it is already later)."""
        self.advance_ns(target_ns - self.now_ns())

    def install(self, *, sleep: bool) -> None:
        """Make this process's `time.time_ns` read the shared clock; with `sleep`, `time.sleep(s)` moves it on by
        `s` instead of waiting (every sleeper's time passes for everyone: right while sleeps do not overlap)."""
        time.time_ns = self.now_ns
        if sleep:

            def sleep_simulated(seconds: float) -> None:
                self.advance_ns(round(seconds * 1e9))

            time.sleep = sleep_simulated  # type: ignore[assignment]
