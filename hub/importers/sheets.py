"""Reading customer sheets (xlsx or csv) into rows keyed by canonical column, with their row numbers.

Headers are matched as configured in the ``excel_customers`` template (Chinese or English spellings);
matching ignores case, surrounding spaces and full-width/half-width differences.
"""

from __future__ import annotations

import csv
import datetime as dt
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.config.models.files import CustomerSheet
from hub.errors import ConfigError


@dataclass(frozen=True)
class SheetRow:
    """One data row: its 1-based line in the sheet and its values by canonical column."""

    number: int
    values: dict[str, str]


@dataclass
class SheetLayout:
    """Which sheet column feeds which canonical column, and which headers were ignored."""

    columns: dict[int, str]
    ignored: list[str] = field(default_factory=list)


def _key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().casefold()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores codes typed as numbers as floats
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value).strip()


def resolve_headers(path: Path, headers: list[str], sheet: CustomerSheet) -> SheetLayout:
    """Map the header row onto canonical columns; ``ConfigError`` when no column gives the name."""
    wanted = {_key(h): column for h, column in sheet.columns.items()}
    layout = SheetLayout(columns={})
    taken: set[str] = set()
    for index, header in enumerate(headers):
        column = wanted.get(_key(header)) if header else None
        if column is None or column in taken:
            if header:
                layout.ignored.append(header)
            continue
        layout.columns[index] = column
        taken.add(column)
    if "name" not in taken:
        expected = ", ".join(h for h, c in sheet.columns.items() if c == "name")
        raise ConfigError(
            f"{path}: row {sheet.header_row}: no column holds the customer name; expected a header such as "
            f"{expected}, found: {', '.join(h for h in headers if h) or '(an empty row)'}. Rename the header "
            "or add its spelling to the template's columns.",
            context={"file": str(path), "line": sheet.header_row, "field": "name"},
        )
    return layout


def _rows_from(
    path: Path, cells: Iterable[list[Any]], sheet: CustomerSheet
) -> tuple[SheetLayout, list[SheetRow]]:
    iterator = iter(cells)
    headers: list[str] = []
    for number, row in enumerate(iterator, start=1):
        if number == sheet.header_row:
            headers = [_cell(v) for v in row]
            break
    layout = resolve_headers(path, headers, sheet)
    rows: list[SheetRow] = []
    for number, row in enumerate(iterator, start=sheet.header_row + 1):
        values = {column: _cell(row[i]) if i < len(row) else "" for i, column in layout.columns.items()}
        if any(values.values()):
            rows.append(SheetRow(number=number, values=values))
    return layout, rows


def read_csv(path: Path, sheet: CustomerSheet) -> tuple[SheetLayout, list[SheetRow]]:
    """Rows of a csv file in the template's encoding and delimiter."""
    try:
        with path.open(encoding=sheet.csv_encoding, newline="") as handle:
            return _rows_from(path, csv.reader(handle, delimiter=sheet.csv_delimiter), sheet)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: is not {sheet.csv_encoding} text (byte {exc.start}); set csv_encoding in the template "
            "(older Chinese exports are gb18030) or save the file as 'CSV UTF-8'.",
            context={"file": str(path)},
        ) from None


def read_xlsx(path: Path, sheet: CustomerSheet) -> tuple[SheetLayout, list[SheetRow]]:
    """Rows of an xlsx workbook (the configured worksheet, else the first)."""
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged or non-xlsx file
        raise ConfigError(
            f"{path}: cannot be opened as an xlsx workbook ({type(exc).__name__}: {exc})."
        ) from None
    try:
        if sheet.sheet:
            if sheet.sheet not in workbook.sheetnames:
                raise ConfigError(
                    f"{path}: has no worksheet {sheet.sheet!r}; it has {', '.join(workbook.sheetnames)}.",
                    context={"file": str(path), "field": "sheet"},
                )
            worksheet = workbook[sheet.sheet]
        else:
            worksheet = workbook.worksheets[0]
        return _rows_from(path, (list(r) for r in worksheet.iter_rows(values_only=True)), sheet)
    finally:
        workbook.close()


def read_sheet(path: Path, sheet: CustomerSheet) -> tuple[SheetLayout, list[SheetRow]]:
    """Rows of ``path`` by its suffix (.xlsx/.xlsm or .csv/.txt)."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found.", context={"file": str(path)})
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return read_xlsx(path, sheet)
    if suffix in (".csv", ".txt"):
        return read_csv(path, sheet)
    raise ConfigError(
        f"{path}: unsupported file type {suffix!r}; save the sheet as .xlsx or .csv (old .xls is not read).",
        context={"file": str(path)},
    )


def iter_values(rows: list[SheetRow], column: str) -> Iterator[str]:
    """The non-empty values of one canonical column."""
    return (r.values[column] for r in rows if r.values.get(column))
