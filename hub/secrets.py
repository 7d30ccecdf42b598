"""Secrets travel by environment reference and never appear in logs, metadata or errors.

Templates and configs hold references such as ``${KIS_APP_SECRET}``; :func:`resolve_reference`
reads the variable when a connection is built and registers the value, so that :func:`redact`
(used by :class:`hub.errors.HubError`, the logging filter and the dead-letter writer) can mask it
wherever it would otherwise leak.
"""

from __future__ import annotations

import logging
import os
import re
import threading

from hub.errors import ConfigError

ENV_REFERENCE = re.compile(r"^\$\{(?:ENV:)?([A-Za-z_][A-Za-z0-9_]*)\}$")
MASK = "***"
# Values shorter than this are too likely to occur in ordinary text to be masked by value.
_MIN_MASKED_LENGTH = 4
# Key names whose values are secrets wherever they appear (Airflow's list, B.3 of PERF-RELIABILITY).
SECRET_KEY_WORDS = (
    "access_token",
    "api_key",
    "apikey",
    "authorization",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "secret",
    "token",
    "auth_data",
    "session_id",
    "signature",
    "sessionid",
)

_lock = threading.Lock()
_known: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that :func:`redact` masks it from now on."""
    global _pattern
    if not value or len(value) < _MIN_MASKED_LENGTH:
        return
    with _lock:
        if value in _known:
            return
        _known.add(value)
        # Longest first so that a secret containing another is masked whole.
        ordered = sorted(_known, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in ordered))


def redact(text: str) -> str:
    """Return ``text`` with every registered secret value replaced by ``***``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def is_reference(value: str) -> bool:
    """True when ``value`` is an environment reference like ``${NAME}`` or ``${ENV:NAME}``."""
    return bool(ENV_REFERENCE.match(value.strip()))


def resolve_reference(value: str, *, where: str) -> str:
    """Resolve ``${NAME}`` from the environment and register the result as a secret.

    ``where`` names the file and field for the error message, e.g. ``hub.yaml: connections.erp.app_secret``.
    """
    match = ENV_REFERENCE.match(value.strip())
    if not match:
        raise ConfigError(
            f"{where}: secrets must be given as an environment reference such as ${{MY_SECRET}}, "
            "not literally. Put the value in an environment variable and reference it."
        )
    name = match.group(1)
    resolved = os.environ.get(name)
    if resolved is None or resolved == "":
        raise ConfigError(
            f"{where}: environment variable {name} is not set. Export it (or add it to the service's "
            "environment) before running."
        )
    register_secret(resolved)
    return resolved


def is_secret_key(key: str) -> bool:
    """True when a mapping key names a secret (``app_secret``, ``Authorization``, ``access_token`` ...)."""
    lowered = key.lower().replace("-", "_")
    return any(word in lowered for word in SECRET_KEY_WORDS)


def redact_mapping(data: object) -> object:
    """Deep copy of ``data`` with secret-named keys masked and registered values redacted."""
    if isinstance(data, dict):
        return {
            k: (MASK if isinstance(k, str) and is_secret_key(k) else redact_mapping(v))
            for k, v in data.items()
        }
    if isinstance(data, list | tuple):
        return [redact_mapping(v) for v in data]
    if isinstance(data, str):
        return redact(data)
    return data


class RedactingFilter(logging.Filter):
    """Logging filter that masks registered secrets in the rendered message and its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        rendered = record.getMessage()
        cleaned = redact(rendered)
        if cleaned != rendered:
            record.msg = cleaned
            record.args = None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach :class:`RedactingFilter` to every handler of ``logger`` (root by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())


# HTTP libraries log each request line, query string included, at DEBUG; some vendor APIs (KIS koas auth,
# robot webhooks) carry secrets in the query. Records logged straight to these loggers pass their own
# filters, so the mask holds whatever handlers the application configures.
for _library_logger in ("urllib3.connectionpool",):
    install_log_redaction(logging.getLogger(_library_logger))
