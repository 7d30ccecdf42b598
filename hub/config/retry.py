"""A template's ``retry:`` block as the connectors' :class:`connectors.retry.RetryPolicy`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.config.models.base import RetryPolicyConfig

if TYPE_CHECKING:
    from connectors.retry import RetryPolicy


def retry_policy(config: RetryPolicyConfig) -> RetryPolicy:
    """The connector policy for ``config`` (imported lazily: loading configs never imports connectors)."""
    from connectors.retry import RetryPolicy

    return RetryPolicy(
        max_attempts=config.max_attempts,
        initial_wait=config.initial_wait,
        max_wait=config.max_wait,
        multiplier=config.multiplier,
        max_elapsed=config.max_elapsed,
        retry_unknown_outcome=config.retry_unknown_outcome,
    )
