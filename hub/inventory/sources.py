"""From a validated template to the connector settings an inventory pull needs.

- :func:`csv_dialect`: a ``CsvDropStream`` (format + columns) -> :class:`connectors.filedrop.CsvDialect`.
- :func:`sftp_settings`: an ``erp_sftp_csv`` connection + stream -> :class:`connectors.filedrop.SftpSettings`
  (secrets resolved from their environment references, the host key pinned from the known_hosts file
  or the fingerprint, the completeness policy translated).
- :func:`inventory_sources`: the connections of a project that carry an enabled inventory stream.

Template completeness ``trailer`` is checked in two steps: the file is listed only once its size is
stable (so a file still being written is left alone instead of being failed), then the reader checks the
trailer line and its row count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from connectors.filedrop import CsvDialect, SftpSettings
from hub.config.models import ErpSftpCsvTemplate, KingdeeKisTemplate
from hub.config.models.files import CsvDropStream
from hub.config.project import Project
from hub.config.retry import retry_policy
from hub.errors import ConfigError
from hub.inventory.columns import TEMPLATE_TO_SNAPSHOT
from hub.secrets import resolve_reference

# Canonical template columns and how the reader should type them (everything else stays text).
COLUMN_TYPES = {
    "on_hand_qty": "number",
    "reserved_qty": "number",
    "available_qty": "number",
    "qty": "number",
    "snapshot_at": "datetime",
    "expected_date": "date",
}
REQUIRED = {
    "inventory": ("material_code", "warehouse_code", "on_hand_qty"),
    "incoming_supply": ("material_code", "qty", "expected_date"),
}
# The columns a stream's loader reads, where it does not read them all: an inventory snapshot keeps
# the position, its quantities (hub.inventory.columns) and the time it was taken, not names or units.
READ = {"inventory": frozenset(TEMPLATE_TO_SNAPSHOT) | {"snapshot_at"}}
DEFAULT_MANIFEST_SUFFIX = ".manifest.json"


@dataclass(frozen=True)
class InventorySource:
    """A configured connection with an enabled inventory stream."""

    name: str
    kind: str  # kingdee_kis | erp_sftp_csv
    template: KingdeeKisTemplate | ErpSftpCsvTemplate


def inventory_sources(project: Project, name: str | None = None) -> list[InventorySource]:
    """Connections with an enabled inventory stream (only ``name`` when given; ConfigError if it has none)."""
    found: list[InventorySource] = []
    for conn_name, template in project.connections.items():
        if name is not None and conn_name != name:
            continue
        if isinstance(template, KingdeeKisTemplate | ErpSftpCsvTemplate):
            stream = template.streams.inventory
            if stream is not None and stream.enabled:
                found.append(InventorySource(conn_name, template.kind, template))
    if name is not None and not found:
        project.connection(name)  # raises "no connection named ..." when it does not exist
        raise ConfigError(
            f"{project.path}: connection {name!r} has no enabled inventory stream (kingdee_kis or "
            "erp_sftp_csv with streams.inventory)."
        )
    return found


def csv_dialect(stream: CsvDropStream, *, where: str) -> CsvDialect:
    """The reader's dialect for one CSV drop stream."""
    fmt = stream.format
    if fmt.header_row != 1:
        raise ConfigError(f"{where}.format.header_row: only 1 is supported (the header is the first line).")
    canonical = set(stream.columns.values())
    trailer = None
    if stream.complete_when.mode == "trailer":
        prefix = re.escape(stream.complete_when.trailer_prefix)
        trailer = rf"{prefix}\D*(?P<rows>\d+)\s*"
    return CsvDialect(
        encoding=fmt.encoding,
        delimiter=fmt.delimiter,
        quotechar=fmt.quotechar,
        header_map=dict(stream.columns),
        decimal=fmt.decimal_separator,
        thousands=fmt.thousands_separator or None,
        date_format=fmt.date_format,
        datetime_format=fmt.datetime_format,
        required_columns=tuple(c for c in REQUIRED[stream.writes] if c in canonical),
        column_types={c: t for c, t in COLUMN_TYPES.items() if c in canonical},  # type: ignore[misc]
        timezone=stream.source_timezone,
        trailer_regex=trailer,
        read_columns=READ.get(stream.writes),
    )


def _known_hosts_line(path: str, host: str, port: int, where: str) -> str:
    """The known_hosts entry for host:port from a known_hosts file, as one line."""
    lookup = host if port == 22 else f"[{host}]:{port}"
    try:
        keys = paramiko.HostKeys(path)
    except (OSError, paramiko.SSHException) as exc:
        raise ConfigError(f"{where}.known_hosts: cannot read {path} ({exc}).") from exc
    entry = keys.lookup(lookup)
    if not entry:
        raise ConfigError(
            f"{where}.known_hosts: {path} has no key for {lookup}. Add the line that "
            f"`ssh-keyscan -p {port} {host}` prints (run it on a trusted network and compare the "
            "fingerprint with the server admin)."
        )
    key_type = next(
        (t for t in ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "ssh-rsa") if t in entry), None
    )
    key = entry[key_type] if key_type else next(iter(entry.values()))
    return f"{lookup} {key.get_name()} {key.get_base64()}"


def sftp_settings(
    name: str,
    template: ErpSftpCsvTemplate,
    stream: CsvDropStream,
    *,
    local_dir: Path,
    where: str = "hub.yaml",
) -> SftpSettings:
    """Connector settings for one stream of an ``erp_sftp_csv`` connection."""
    c = template.connection
    prefix = f"{where}: connections.{name}.connection"
    values: dict[str, Any] = {
        "name": name,
        "host": c.host,
        "port": c.port,
        "username": c.username,
        "private_key_path": c.private_key_path,
        "host_key_fingerprint": c.host_key_fingerprint,
        "root": c.root,
        "pattern": stream.path,
        "connect_timeout": c.connect_timeout,
        "stall_timeout": c.read_timeout,
        "local_dir": local_dir,
        "retry": retry_policy(template.retry),
    }
    if c.password:
        values["password"] = resolve_reference(c.password, where=f"{prefix}.password")
    if c.private_key_passphrase:
        values["private_key_passphrase"] = resolve_reference(
            c.private_key_passphrase, where=f"{prefix}.private_key_passphrase"
        )
    if c.known_hosts:
        values["known_hosts_line"] = _known_hosts_line(c.known_hosts, c.host, c.port, prefix)
    when = stream.complete_when
    if when.mode == "done_file":
        values.update(completeness="done_file", done_suffix=when.suffix)
    elif when.mode == "manifest":
        suffix = DEFAULT_MANIFEST_SUFFIX if when.suffix == ".done" else when.suffix
        values.update(completeness="manifest", manifest_suffix=suffix)
    else:  # stable_size, and trailer (listed once stable, then the reader checks the trailer)
        values.update(completeness="stable_size", stable_polls_interval=float(when.stable_seconds))
    return SftpSettings(**values)
