"""Progress reporting for long commands: a tqdm bar on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressReporter:
    """A `evaluate.runner.Progress`: a tqdm bar with ETA when `stream` is a terminal; otherwise one line
    ``desc: done/total (pct) rate samples/s, ETA h:mm:ss`` at most every `interval` seconds and at the end
    (logs of batch jobs and CI keep a record without carriage-return noise). `enabled=False` prints nothing."""

    def __init__(self, desc: str = "scoring", *, stream: TextIO | None = None, interval: float = 5.0,
                 enabled: bool = True, unit: str = "sample") -> None:
        self.desc, self.stream, self.interval, self.enabled, self.unit = desc, stream or sys.stderr, interval, enabled, unit
        self._bar = None
        self.total = self.done = self.skipped = 0

    def start(self, total: int, skipped: int) -> None:
        self.total, self.skipped, self.done = total, skipped, 0
        self._t0 = self._last = time.monotonic()
        if not self.enabled:
            return
        if skipped:
            print(f"{self.desc}: {skipped} sample(s) already stored, skipped (resume)", file=self.stream)
        isatty = getattr(self.stream, "isatty", lambda: False)()
        if isatty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=self.stream)
        else:
            print(f"{self.desc}: {total} {self.unit}(s) to score", file=self.stream, flush=True)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta_text = _hms(eta) if eta == eta else "?"
        return (f"{self.desc}: {self.done}/{self.total} ({pct:.0f}%) {rate:.2f} {self.unit}s/s, "
                f"elapsed {_hms(elapsed)}, ETA {eta_text}")

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.total:
            print(self.line(), file=self.stream, flush=True)
