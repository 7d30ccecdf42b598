"""Fault injection (ERP-APIS §5.1 items 11-12): scripted faults, seeded random faults, a token bucket.

Scripted faults make tests deterministic: ``{"service": "BatchSave", "fault": "session_lost", "skip": 1,
"count": 1}`` lets one matching call through, then hits the next one. Random faults draw from an RNG
seeded by the sandbox seed, so a run with the same seed and call sequence sees the same faults.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from .config import FAULT_KINDS


def _matches(entry: dict[str, Any], service: str) -> bool:
    wanted = str(entry.get("service") or "*").lower()
    return wanted in ("*", service.lower(), service.split(".")[-1].lower())


class FaultInjector:
    """Decides, per call, which fault (if any) to inject."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def reseed(self, seed: int) -> None:
        """Restart the random stream."""
        with self._lock:
            self._rng = random.Random(seed)

    def decide(
        self,
        service: str,
        current: Callable[[], dict[str, Any]],
        save_script: Callable[[list[dict[str, Any]]], None],
    ) -> str | None:
        """The fault for this call: the first matching script entry, else a random draw, else None.

        ``current`` gives the settings as they are now: read under the lock, so concurrent calls never
        take the same scripted entry from one stale copy (a ``count: 2`` entry firing three times).
        """
        with self._lock:
            settings = current()
            script = [dict(e) for e in settings.get("script") or []]
            for entry in script:
                if not _matches(entry, service):
                    continue
                if int(entry.get("skip", 0)) > 0:
                    entry["skip"] = int(entry["skip"]) - 1
                    save_script(script)
                    return None
                entry["count"] = int(entry.get("count", 1)) - 1
                save_script([e for e in script if int(e.get("count", 1)) > 0])
                return str(entry["fault"])
            probabilities = settings.get("faults") or {}
            roll = self._rng.random()
            acc = 0.0
            for kind in FAULT_KINDS:
                p = float(probabilities.get(kind, 0.0) or 0.0)
                if p <= 0:
                    continue
                acc += p
                if roll < acc:
                    return kind
            return None


class TokenBucket:
    """Per-caller token buckets (monotonic clock). ``rate`` 0 means the bucket never refills."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, rate: float, burst: float) -> bool:
        """Take a token for ``key``; False when the bucket is empty."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * float(rate))
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1.0, now)
            return True

    def clear(self) -> None:
        """Refill every bucket (on reset or a throttle settings change)."""
        with self._lock:
            self._buckets.clear()
