"""Building blocks every template uses: strict base model, retry policy, schedule, stream references."""

from __future__ import annotations

import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.config.columns import CANONICAL_COLUMNS, unknown_column_message
from hub.config.types import Cron, Identifier, NonEmpty, TimeZoneName

SHANGHAI = "Asia/Shanghai"


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=False)


class RetryPolicyConfig(Strict):
    """How the connector retries transient failures (mirrors ``connectors.retry.RetryPolicy``)."""

    max_attempts: int = Field(6, ge=1, le=50, description="Total attempts including the first.")
    initial_wait: float = Field(0.5, gt=0, le=600, description="Seconds before the first retry.")
    max_wait: float = Field(30.0, gt=0, le=3600, description="Cap on one wait, Retry-After included.")
    multiplier: float = Field(2.0, ge=1, le=10, description="Growth factor between waits.")
    max_elapsed: float = Field(300.0, gt=0, le=86_400, description="Give up after this many seconds.")
    retry_unknown_outcome: bool = Field(
        False,
        description="Retry writes whose reply was lost. Only safe when the document is looked up first.",
    )

    @model_validator(mode="after")
    def _waits_ordered(self) -> RetryPolicyConfig:
        if self.max_wait < self.initial_wait:
            raise ValueError("max_wait must be at least initial_wait")
        return self


class Schedule(Strict):
    """When a connection or stream runs (a Dagster schedule)."""

    cron: Cron
    timezone: TimeZoneName = SHANGHAI
    enabled: bool = True


class MappingRef(Strict):
    """Which declarative mapping (``mappings/``) a stream uses, pinned to a version."""

    name: Identifier
    version: int = Field(
        ge=1, description="Mapping version; records remember the version they were mapped with."
    )


class ValidationRef(Strict):
    """The validation suite run on records before they leave (or after they arrive)."""

    suite: NonEmpty = Field(description="Name of the validation suite (Great Expectations).")
    blocking_threshold: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Share of bad records that stops the whole batch (bad records are always held back).",
    )


class Cursor(Strict):
    """Incremental position of a stream. Times always carry an explicit zone."""

    field: Identifier = Field(description="Canonical column the cursor follows, e.g. updated_at.")
    timezone: TimeZoneName = Field(description="Time zone of the cursor values (required: never guessed).")
    lookback_minutes: int = Field(
        10, ge=0, le=10_080, description="Re-read this window to catch late writes."
    )


class FieldProblem(ValueError):
    """A ``ValueError`` that knows which sub-key it is about, so the error can point at that line.

    Pydantic keeps the original exception in the error's ``ctx``; :mod:`hub.config.diagnostics` appends
    ``path`` to the location of a model-level validator.
    """

    def __init__(self, message: str, path: tuple[str, ...]) -> None:
        super().__init__(message)
        self.path = path


def check_columns(entity: str, columns: dict[str, str] | list[str] | tuple[str, ...], what: str) -> None:
    """Raise :class:`FieldProblem` at the first column not allowed for ``entity``.

    ``columns`` is either a header -> column mapping (the error points at the header's line) or a list.
    """
    allowed = CANONICAL_COLUMNS[entity]
    items = columns.items() if isinstance(columns, dict) else [(None, c) for c in columns]
    base = tuple(what.split("."))
    for key, column in items:
        if column not in allowed:
            raise FieldProblem(
                unknown_column_message(entity, column), (*base, key) if key is not None else base
            )


def template_fields(pattern: str) -> list[str]:
    """The ``{placeholders}`` in a format pattern such as ``HUB-{invoice_number}``."""
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise ValueError(
            f"pattern {pattern!r} is malformed ({exc}); write placeholders as {{column}}"
        ) from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or spec or conversion:
            raise ValueError(f"pattern {pattern!r}: write placeholders plainly as {{column}}")
        names.append(name)
    return names


class TemplateBase(Strict):
    """Fields every template has, whatever its kind."""

    template: Identifier = Field(description="Name of the preset this was made from (e.g. kingdee_kis).")
    title: str = Field("", description="Human-readable name.")
    description: str = ""
    version: int = Field(1, ge=1, description="Version of the template itself.")
    retry: RetryPolicyConfig = Field(default_factory=lambda: RetryPolicyConfig.model_validate({}))
    schedule: Schedule | None = None


Direction = Literal["push", "pull"]
