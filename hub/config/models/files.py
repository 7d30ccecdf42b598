"""File-based templates: ERP CSV drops on SFTP, and the Excel/CSV customer sheets teams keep today."""

from __future__ import annotations

import codecs
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from hub.config.models.base import SHANGHAI, Schedule, Strict, TemplateBase, ValidationRef, check_columns
from hub.config.types import NonEmpty, RelativeRemotePath, RemoteRoot, SecretRef, TimeZoneName

# Columns a stream cannot work without.
REQUIRED_COLUMNS = {
    "inventory": ("material_code", "warehouse_code", "on_hand_qty"),
    "incoming_supply": ("source_doc_no", "supply_kind", "material_code", "qty", "expected_date"),
    "customer": ("name",),
}


def _check_encoding(value: str) -> str:
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(
            f"{value!r} is not a known text encoding; Chinese ERP exports are usually gb18030 (GBK), "
            "otherwise utf-8-sig"
        ) from None
    return value


Encoding = Annotated[str, AfterValidator(_check_encoding)]


class TextFormat(Strict):
    """How a delimited text file is written."""

    encoding: Encoding = Field("gb18030", description="Text encoding (gb18030 reads GBK/GB2312 files too).")
    delimiter: str = Field(",", min_length=1, max_length=1)
    quotechar: str = Field('"', min_length=1, max_length=1)
    header_row: int = Field(1, ge=1, description="1-based line holding the column headers.")
    decimal_separator: Literal[".", ","] = "."
    thousands_separator: Literal["", ",", ".", " "] = ","
    date_format: str = Field("%Y-%m-%d", description="strptime format of date columns.")
    datetime_format: str = Field("%Y-%m-%d %H:%M:%S", description="strptime format of date-time columns.")
    null_values: list[str] = Field(default_factory=lambda: ["", "NULL", "-"])

    @model_validator(mode="after")
    def _separators_differ(self) -> TextFormat:
        if self.thousands_separator and self.thousands_separator == self.decimal_separator:
            raise ValueError("thousands_separator and decimal_separator must differ")
        if self.delimiter == self.decimal_separator:
            raise ValueError(
                "delimiter and decimal_separator must differ (use ; as delimiter for 1,5 numbers)"
            )
        return self


class CompleteWhen(Strict):
    """How a complete file is recognised, so that a file still being written is never read."""

    mode: Literal["done_file", "manifest", "trailer", "stable_size"] = Field(
        description=(
            "done_file: a marker file <name><suffix> appears when the data file is complete; "
            "manifest: a manifest lists name, size and row count; "
            "trailer: the last line states the row count; "
            "stable_size: the size did not change for stable_seconds."
        )
    )
    suffix: str = Field(".done", description="Marker suffix (done_file) or manifest suffix (manifest).")
    trailer_prefix: str = Field("EOF", description="Trailer line starts with this, then the row count.")
    stable_seconds: int = Field(60, ge=5, le=3600)


class CsvDropStream(Strict):
    """One kind of CSV file the ERP drops under the connection's root."""

    direction: Literal["pull"] = "pull"
    enabled: bool = True
    path: RelativeRemotePath = Field(description="Glob below the root, e.g. inventory/INV_*.csv")
    writes: Literal["inventory", "incoming_supply"]
    format: TextFormat = Field(default_factory=lambda: TextFormat.model_validate({}))
    columns: dict[NonEmpty, str] = Field(description="File header -> canonical column.")
    complete_when: CompleteWhen
    source_timezone: TimeZoneName = Field(SHANGHAI, description="Zone of naive times in the file.")
    validation: ValidationRef
    reject_threshold: float = Field(
        0.01, ge=0, le=1, description="Share of malformed rows above which the whole snapshot is rejected."
    )
    max_shrink: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Refuse a snapshot (inventory) or a supply file (incoming_supply) whose row count "
        "fell by more than this share against the one in force.",
    )
    schedule: Schedule | None = None

    @model_validator(mode="after")
    def _known_columns(self) -> CsvDropStream:
        check_columns(self.writes, self.columns, "columns")
        missing = [c for c in REQUIRED_COLUMNS[self.writes] if c not in self.columns.values()]
        if missing:
            raise ValueError(f"columns must map a file header to {', '.join(missing)}")
        return self


class SftpConnection(Strict):
    """An SFTP server; the host key is always pinned (no trust-on-first-use)."""

    host: NonEmpty
    port: int = Field(22, ge=1, le=65_535)
    username: NonEmpty
    password: SecretRef | None = None
    private_key_path: str | None = None
    private_key_passphrase: SecretRef | None = None
    known_hosts: str | None = Field(None, description="known_hosts file holding the server's key.")
    host_key_fingerprint: str | None = Field(
        None,
        pattern=r"^SHA256:[A-Za-z0-9+/]{43}=?$",
        description="Pinned key, as `ssh-keygen -lf` prints it.",
    )
    root: RemoteRoot = Field(description="Directory the hub may read; every stream path stays below it.")
    connect_timeout: float = Field(10.0, gt=0, le=120)
    read_timeout: float = Field(60.0, gt=0, le=600)

    @model_validator(mode="after")
    def _auth_and_host_key(self) -> SftpConnection:
        if self.password is None and self.private_key_path is None:
            raise ValueError("give password (an environment reference) or private_key_path")
        if self.known_hosts is None and self.host_key_fingerprint is None:
            raise ValueError(
                "pin the server's host key with known_hosts or host_key_fingerprint; unknown keys are refused"
            )
        return self


class SftpCsvStreams(Strict):
    """The CSV drops: stock on hand and incoming supply (open purchase and production orders)."""

    inventory: CsvDropStream | None = None
    incoming_supply: CsvDropStream | None = None

    @model_validator(mode="after")
    def _writes_match(self) -> SftpCsvStreams:
        for name in ("inventory", "incoming_supply"):
            stream = getattr(self, name)
            if stream is not None and stream.writes != name:
                raise ValueError(f"stream {name} must write {name}, not {stream.writes}")
        return self


class ErpSftpCsvTemplate(TemplateBase):
    """An ERP that exports CSV files to an SFTP server."""

    kind: Literal["erp_sftp_csv"]
    connection: SftpConnection
    streams: SftpCsvStreams = Field(default_factory=lambda: SftpCsvStreams())


class CustomerSheet(Strict):
    """Layout of the customer sheets (xlsx or csv) to import."""

    direction: Literal["pull"] = "pull"
    writes: Literal["customer"] = "customer"
    sheet: str | None = Field(None, description="Worksheet name; the first sheet when empty.")
    header_row: int = Field(1, ge=1)
    csv_encoding: Encoding = Field(
        "utf-8-sig", description="Encoding of csv files (Excel's 'CSV UTF-8' is utf-8-sig)."
    )
    csv_delimiter: str = Field(",", min_length=1, max_length=1)
    columns: dict[NonEmpty, str] = Field(
        description="Header -> canonical customer column; list Chinese and English spellings as needed."
    )
    source: NonEmpty = Field("excel_import", description="Recorded as the customers' source.")
    batch_size: int = Field(1000, ge=1, le=50_000, description="Rows per database transaction.")
    source_timezone: TimeZoneName = SHANGHAI

    @model_validator(mode="after")
    def _known_columns(self) -> CustomerSheet:
        check_columns("customer", self.columns, "columns")
        if "name" not in self.columns.values():
            raise ValueError("columns must map a header to name (the customer's name)")
        return self


class ExcelCustomersStreams(Strict):
    """The one stream of this template."""

    customers: CustomerSheet


class ExcelCustomersTemplate(TemplateBase):
    """Import customer archives (客户档案) from Excel or CSV sheets."""

    kind: Literal["excel_customers"]
    streams: ExcelCustomersStreams
