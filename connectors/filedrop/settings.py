"""Settings of one SFTP file drop and of the CSV dialect its files are written in.

Both are frozen dataclasses checked when they are built, so a bad template fails at load time with a
:class:`hub.errors.ConfigError` naming the connection and the field, never half-way through a pull.

Secrets (``password``, ``private_key_passphrase``) arrive already resolved from environment references
(``${SFTP_PASSWORD}``; see :meth:`SftpSettings.from_mapping`). They are registered with
:func:`hub.secrets.register_secret` so that every error and log line masks them, and kept out of ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from connectors.filedrop.paths import check_pattern, normalize_root
from connectors.retry import RetryPolicy
from hub.errors import ConfigError, PermanentError
from hub.secrets import is_reference, register_secret, resolve_reference

Completeness = Literal["done_file", "manifest", "stable_size"]
ColumnType = Literal["string", "integer", "number", "decimal", "date", "datetime"]

COMPLETENESS_POLICIES: tuple[str, ...] = get_args(Completeness)
COLUMN_TYPES: tuple[str, ...] = get_args(ColumnType)

# A disconnect is retried from scratch a few times, quickly: the sensor polls again anyway.
DEFAULT_SFTP_RETRY = RetryPolicy(max_attempts=4, initial_wait=0.5, max_wait=10.0, max_elapsed=300.0)


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}", context={"where": where})


def parse_fingerprint(value: str, *, where: str) -> str:
    """Return an OpenSSH ``SHA256:<base64, no padding>`` fingerprint in canonical form.

    Accepts what ``ssh-keygen -lf`` prints (``256 SHA256:abc... comment (ED25519)``) or the bare
    ``SHA256:abc...`` token. MD5 fingerprints are refused: they are too weak to pin a host key.
    """
    token = next((part for part in value.split() if part.upper().startswith("SHA256:")), None)
    if token is None:
        raise _fail(
            where,
            f"host_key_fingerprint {value!r} is not an OpenSSH SHA256 fingerprint. Run "
            "`ssh-keygen -lf <host key .pub>` on the server (or `ssh-keyscan host | ssh-keygen -lf -`) "
            "and paste the `SHA256:...` value.",
        )
    digest_b64 = token.split(":", 1)[1].rstrip("=")
    try:
        raw = base64.b64decode(digest_b64 + "=" * (-len(digest_b64) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != hashlib.sha256().digest_size:
        raise _fail(where, f"host_key_fingerprint {token!r} does not decode to a 32-byte SHA256 digest.")
    return "SHA256:" + base64.b64encode(raw).decode("ascii").rstrip("=")


def key_fingerprint(key_blob: bytes) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a public key blob (``PKey.asbytes()``)."""
    digest = hashlib.sha256(key_blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True, kw_only=True)
class SftpSettings:
    """One SFTP server directory that an ERP drops CSV files into.

    Attributes:
        name: connection name used in every error and log line (``kis_stock_drop``).
        host, port, username: where and as whom to log in.
        password: resolved password, or None for key auth.
        private_key_path: client private key file (OpenSSH or PEM format).
        private_key_passphrase: resolved passphrase of an encrypted private key.
        known_hosts_line: one known_hosts line pinning the server key, e.g.
            ``[sftp.example.cn]:2222 ssh-ed25519 AAAA...``. Hashed host names work too.
        host_key_fingerprint: ``SHA256:...`` fingerprint of the server key (ssh-keygen -lf).
            At least one of the two pins is required; unknown keys are always refused.
        root: server directory the files live under; nothing outside it is read, written or moved.
        pattern: glob relative to ``root``; every segment may hold wildcards (``*/stock_*.csv``).
        completeness: when a file counts as fully written: ``done_file`` (``x.csv.done`` exists),
            ``manifest`` (``x.csv.manifest.json`` with ``size`` and ``rows``), or ``stable_size``
            (size and mtime unchanged across two listings ``stable_polls_interval`` seconds apart).
        connect_timeout: seconds for TCP connect, SSH banner and authentication each.
        stall_timeout: a download (or any SFTP request) that makes no progress for this long is
            aborted and retried from scratch.
        archive_dir, failed_dir: directories under ``root`` that processed files are moved into.
        local_dir: local download directory; files land there under their path relative to root.
        retry: how disconnects and timeouts are retried (reconnect, then start over).
    """

    name: str
    host: str
    port: int = 22
    username: str
    password: str | None = field(default=None, repr=False)
    private_key_path: str | None = None
    private_key_passphrase: str | None = field(default=None, repr=False)
    known_hosts_line: str | None = None
    host_key_fingerprint: str | None = None
    root: str
    pattern: str
    completeness: Completeness = "done_file"
    stable_polls_interval: float = 5.0
    connect_timeout: float = 10.0
    stall_timeout: float = 60.0
    archive_dir: str = "archive"
    failed_dir: str = "failed"
    local_dir: Path
    done_suffix: str = ".done"
    manifest_suffix: str = ".manifest.json"
    retry: RetryPolicy = DEFAULT_SFTP_RETRY

    def __post_init__(self) -> None:
        where = f"sftp connection {self.name!r}"
        # Register first so that no later error message can leak a secret.
        register_secret(self.password)
        register_secret(self.private_key_passphrase)
        if not self.host or not self.username:
            raise _fail(where, "host and username are required.")
        if not 0 < int(self.port) < 65536:
            raise _fail(where, f"port {self.port} is not a TCP port.")
        if self.password is None and self.private_key_path is None:
            raise _fail(where, "give password or private_key_path (as an environment reference for secrets).")
        if not self.known_hosts_line and not self.host_key_fingerprint:
            raise _fail(
                where,
                "the server's host key must be pinned: set known_hosts_line (a line from "
                "`ssh-keyscan -p PORT HOST`) or host_key_fingerprint (SHA256:...). Unknown keys are refused.",
            )
        if self.host_key_fingerprint:
            object.__setattr__(
                self, "host_key_fingerprint", parse_fingerprint(self.host_key_fingerprint, where=where)
            )
        if self.known_hosts_line and (
            "\n" in self.known_hosts_line.strip() or not self.known_hosts_line.strip()
        ):
            raise _fail(where, "known_hosts_line must be exactly one known_hosts line.")
        if self.completeness not in COMPLETENESS_POLICIES:
            raise _fail(
                where, f"completeness {self.completeness!r} is not one of {', '.join(COMPLETENESS_POLICIES)}."
            )
        for name in ("stable_polls_interval", "connect_timeout", "stall_timeout"):
            if not float(getattr(self, name)) > 0:
                raise _fail(where, f"{name} must be a positive number of seconds.")
        try:
            object.__setattr__(self, "root", normalize_root(self.root))
            object.__setattr__(self, "pattern", check_pattern(self.pattern))
            for name in ("archive_dir", "failed_dir"):
                object.__setattr__(self, name, check_pattern(getattr(self, name)))
        except PermanentError as exc:
            raise _fail(where, exc.message) from exc
        for name in ("archive_dir", "failed_dir"):
            if any(ch in getattr(self, name) for ch in "*?["):
                raise _fail(where, f"{name} must be a plain directory name, not a glob.")
        if self.archive_dir == self.failed_dir:
            raise _fail(where, "archive_dir and failed_dir must differ.")
        for name in ("done_suffix", "manifest_suffix"):
            suffix = getattr(self, name)
            if not suffix.startswith(".") or "/" in suffix:
                raise _fail(where, f"{name} must start with '.' and contain no '/'.")
        object.__setattr__(self, "local_dir", Path(self.local_dir))

    @property
    def where(self) -> str:
        """How errors name this connection: ``sftp://user@host:port/root (name)``."""
        return f"sftp://{self.username}@{self.host}:{self.port}{posixpath.join('/', self.root)} ({self.name})"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str) -> SftpSettings:
        """Build settings from a template block, resolving ``${NAME}`` references for the secrets.

        ``password`` and ``private_key_passphrase`` must be environment references; literal secrets in
        a template are refused (:func:`hub.secrets.resolve_reference`). ``retry`` may be a mapping of
        :class:`connectors.retry.RetryPolicy` fields.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown sftp setting(s) {unknown}; allowed: {sorted(known)}.")
        values = dict(data)
        for secret in ("password", "private_key_passphrase"):
            raw = values.get(secret)
            if raw is not None:
                if not isinstance(raw, str) or not is_reference(raw):
                    raise ConfigError(
                        f"{where}.{secret}: give an environment reference such as ${{SFTP_PASSWORD}}, "
                        "never the secret itself."
                    )
                values[secret] = resolve_reference(raw, where=f"{where}.{secret}")
        if isinstance(values.get("retry"), Mapping):
            values["retry"] = RetryPolicy(**values["retry"])
        try:
            return cls(**values)
        except TypeError as exc:  # a missing required field
            raise ConfigError(f"{where}: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class CsvDialect:
    """How one ERP writes its CSV files, taken from the template.

    Attributes:
        encoding: file encoding; Chinese ERPs mostly write ``gbk``/``gb18030``, newer ones ``utf-8-sig``.
        delimiter: one character.
        header_map: source header -> canonical column. Every mapped header must be present (a
            missing or renamed header is schema drift).
        decimal, thousands: number format, e.g. ``"."`` and ``","`` for ``1,234.50``.
        date_format: strptime format for ``date`` columns (``%Y-%m-%d``, ``%Y/%m/%d``).
        required_columns: canonical columns that must hold a value on every row.
        tolerate_added_columns: ignore headers not in ``header_map`` instead of refusing the file.
        column_types: canonical column -> one of ``string`` (default), ``integer``, ``number``
            (float64, for quantities), ``decimal`` (exact :class:`decimal.Decimal`, for money),
            ``date`` (calendar date, datetime64 at midnight) or ``datetime`` (naive ERP time read as
            ``timezone``, returned tz-aware).
        datetime_format: strptime format for ``datetime`` columns.
        timezone: zone of naive ERP timestamps.
        quotechar: CSV quote character.
        require_final_newline: a file whose last line has no newline is treated as truncated.
        trailer_regex: if set, the last line must match it (it is not a data row); a named group
            ``rows`` is checked against the number of data rows.
        read_columns: the canonical columns the caller uses (None: all). The others are still checked
            in the header, and a required one on every row, but not converted: at a million rows each
            text column costs about 0.05 s, and a bad value in a column nobody reads rejects no row.
    """

    encoding: str = "utf-8"
    delimiter: str = ","
    header_map: Mapping[str, str]
    decimal: str = "."
    thousands: str | None = None
    date_format: str = "%Y-%m-%d"
    required_columns: tuple[str, ...] = ()
    tolerate_added_columns: bool = False
    column_types: Mapping[str, ColumnType] = field(default_factory=dict)
    datetime_format: str = "%Y-%m-%d %H:%M:%S"
    timezone: str = "Asia/Shanghai"
    quotechar: str = '"'
    require_final_newline: bool = True
    trailer_regex: str | None = None
    read_columns: frozenset[str] | None = None

    def reads(self, canonical: str) -> bool:
        """Whether a reader converts the canonical column: the caller reads it, or it is required."""
        wanted = self.read_columns
        return wanted is None or canonical in wanted or canonical in self.required_columns

    def __post_init__(self) -> None:
        where = "csv dialect"
        import codecs  # local: only needed for this check

        try:
            codecs.lookup(self.encoding)
        except LookupError as exc:
            raise _fail(where, f"encoding {self.encoding!r} is unknown to Python.") from exc
        probe = self.delimiter + self.quotechar + "\n,;|0aZ"
        try:
            encoded = probe.encode(self.encoding).removeprefix(codecs.BOM_UTF8)  # utf-8-sig writes a BOM
            ascii_compatible = encoded == probe.encode("ascii")
        except UnicodeError:
            ascii_compatible = False
        if not ascii_compatible:
            raise _fail(
                where,
                f"encoding {self.encoding!r} with delimiter {self.delimiter!r} is not ASCII-compatible; use "
                "UTF-8, GBK, GB18030 or another encoding that writes ASCII as single bytes.",
            )
        for name in ("delimiter", "decimal", "quotechar"):
            if len(getattr(self, name)) != 1:
                raise _fail(where, f"{name} must be exactly one character, got {getattr(self, name)!r}.")
        if self.delimiter in ("\n", "\r") or self.delimiter == self.quotechar:
            raise _fail(where, "delimiter must not be a newline or the quote character.")
        if self.thousands is not None and (len(self.thousands) != 1 or self.thousands == self.decimal):
            raise _fail(where, "thousands must be one character different from decimal (or null).")
        if not self.header_map:
            raise _fail(where, "header_map must map at least one source header to a canonical column.")
        canonical = list(self.header_map.values())
        duplicated = sorted({c for c in canonical if canonical.count(c) > 1})
        if duplicated:
            raise _fail(where, f"header_map maps several headers onto {duplicated}.")
        object.__setattr__(self, "header_map", {k.strip(): v for k, v in self.header_map.items()})
        object.__setattr__(self, "required_columns", tuple(self.required_columns))
        unknown = sorted((set(self.required_columns) | set(self.column_types)) - set(canonical))
        if unknown:
            raise _fail(
                where, f"required_columns/column_types name {unknown}, which header_map never produces."
            )
        bad_types = {c: t for c, t in self.column_types.items() if t not in COLUMN_TYPES}
        if bad_types:
            raise _fail(where, f"column_types {bad_types} not in {', '.join(COLUMN_TYPES)}.")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.timezone)
        except Exception as exc:  # ZoneInfoNotFoundError or ValueError for malformed keys
            raise _fail(where, f"timezone {self.timezone!r} is not an IANA zone name.") from exc
