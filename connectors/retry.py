"""The one retry builder every connector uses (tenacity).

Only :class:`hub.errors.TransientError` is retried. Waits grow exponentially with full jitter up to a
cap, a ``retry_after`` carried by the error (HTTP ``Retry-After``) is honoured as a floor, attempts and
total time are capped, and the original error is re-raised when retries run out.

The policy is data (:class:`RetryPolicy`) so templates can carry it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay

from hub.errors import TransientError, UnknownOutcomeError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How a connector retries transient failures.

    Attributes:
        max_attempts: total attempts including the first.
        initial_wait: seconds before the first retry (before jitter).
        max_wait: cap on a single wait, ``Retry-After`` included.
        multiplier: growth factor between waits.
        max_elapsed: give up once this many seconds have passed since the first attempt.
        retry_unknown_outcome: retry :class:`UnknownOutcomeError` too. Leave False for writes unless
            the caller looks the document up before re-sending (see ``hub.errors``).
    """

    max_attempts: int = 6
    initial_wait: float = 0.5
    max_wait: float = 30.0
    multiplier: float = 2.0
    max_elapsed: float = 300.0
    retry_unknown_outcome: bool = False


def _should_retry(policy: RetryPolicy) -> Callable[[BaseException], bool]:
    def predicate(exc: BaseException) -> bool:
        if isinstance(exc, UnknownOutcomeError):
            return policy.retry_unknown_outcome
        return isinstance(exc, TransientError)

    return predicate


def compute_wait(policy: RetryPolicy, attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Full jitter (AWS "Exponential Backoff and Jitter") so clients do not retry in lockstep, but never
    less than the peer's ``Retry-After``.
    """
    ceiling = min(policy.max_wait, policy.initial_wait * policy.multiplier ** (attempt - 1))
    wait = rng.uniform(policy.initial_wait / 2, max(ceiling, policy.initial_wait / 2))
    if retry_after is not None:
        wait = max(wait, min(retry_after, policy.max_wait))
    return wait


def build_retrying(
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] | None = None,
    seed: int | None = None,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> Retrying:
    """A tenacity ``Retrying`` for ``policy``; call it as ``retrying(fn, *args)``."""
    rng = random.Random(seed)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return compute_wait(policy, state.attempt_number, retry_after, rng)

    kwargs: dict[str, Any] = {
        "retry": retry_if_exception(_should_retry(policy)),
        "stop": stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.max_elapsed),
        "wait": wait,
        "reraise": True,
    }
    if sleep is not None:
        kwargs["sleep"] = sleep
    if before_sleep is not None:
        kwargs["before_sleep"] = before_sleep
    return Retrying(**kwargs)


def call_with_retry(policy: RetryPolicy, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` under ``policy``."""
    return build_retrying(policy)(fn, *args, **kwargs)
