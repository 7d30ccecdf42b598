"""Annotated field types shared by the template models: secret references, cron, time zones, paths.

Each validator raises ``ValueError`` with a message written for the person editing the YAML file; the
loader adds the file, line and field in front of it. Messages never repeat the offending value when the
field may hold a secret.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, StringConstraints

from hub.config.cron import cron_problem
from hub.secrets import ENV_REFERENCE, is_reference

ENV_REFERENCE_PATTERN = ENV_REFERENCE.pattern
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _secret_reference(value: str) -> str:
    if not is_reference(value):
        # Deliberately does not echo the value: it may be the real secret typed in by mistake.
        raise ValueError(
            "a secret was given literally; write an environment reference such as ${KIS_APP_SECRET} "
            "instead and put the value in that environment variable"
        )
    return value.strip()


def _cron(value: str) -> str:
    problem = cron_problem(value)
    if problem:
        raise ValueError(problem)
    return value.strip()


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not a known IANA time zone; Chinese ERPs use 'Asia/Shanghai'"
        ) from None
    return value


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"{value!r} is not an http(s) URL; write it like https://api.kingdee.com")
    return value.rstrip("/")


def _remote_root(value: str) -> str:
    if "\x00" in value or "\\" in value:
        raise ValueError("a remote root may not contain NUL or backslash characters")
    if not value.startswith("/"):
        raise ValueError(f"remote root {value!r} must be an absolute POSIX path such as /outbound/erp")
    if ".." in value.split("/"):
        raise ValueError(f"remote root {value!r} may not contain '..'")
    return posixpath.normpath(value)


def _relative_remote_path(value: str) -> str:
    """A path (or glob) below the connection's root; it may never climb out of it."""
    if "\x00" in value or "\\" in value:
        raise ValueError("a remote path may not contain NUL or backslash characters")
    if value.startswith("/"):
        raise ValueError(
            f"remote path {value!r} is absolute; give it relative to the connection's root "
            "(e.g. inventory/*.csv)"
        )
    normalised = posixpath.normpath(value)
    if normalised == ".." or normalised.startswith("../") or ".." in value.split("/"):
        raise ValueError(
            f"remote path {value!r} escapes the connection's root; "
            "remove the '..' and keep files below the root"
        )
    return normalised


def _identifier(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(
            f"{value!r} is not a valid identifier; use lower-case letters, digits and underscores, "
            "starting with a letter"
        )
    return value


SecretRef = Annotated[
    str,
    AfterValidator(_secret_reference),
    Field(
        description="An environment reference such as ${KIS_APP_SECRET}; never the secret itself.",
        json_schema_extra={"pattern": ENV_REFERENCE_PATTERN, "format": "env-reference"},
    ),
]
Cron = Annotated[
    str,
    AfterValidator(_cron),
    Field(description='Five-field cron expression, e.g. "0 2 * * *" (02:00 daily).', examples=["0 2 * * *"]),
]
TimeZoneName = Annotated[
    str, AfterValidator(_time_zone), Field(description="IANA time zone name.", examples=["Asia/Shanghai"])
]
HttpUrl = Annotated[str, AfterValidator(_http_url), Field(description="Base URL (http or https).")]
RemoteRoot = Annotated[
    str, AfterValidator(_remote_root), Field(description="Absolute directory on the server.")
]
RelativeRemotePath = Annotated[
    str,
    AfterValidator(_relative_remote_path),
    Field(description="Path or glob relative to the connection's root; may not contain '..'."),
]
Identifier = Annotated[str, AfterValidator(_identifier)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
