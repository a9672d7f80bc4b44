"""A monotonic clock a test moves by hand (`ticks.now += 1.0`), for budgets that read time.monotonic."""

from __future__ import annotations


class Ticks:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now
