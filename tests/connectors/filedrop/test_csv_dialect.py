"""Reading ERP CSV files per a template dialect: encodings, formats, row problems, file refusals."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from connectors.filedrop import (
    SOURCE_LINE,
    CsvDialect,
    FileEncodingError,
    FileRejectedError,
    SchemaDriftError,
    TruncatedFileError,
    read_csv_bytes,
    read_csv_file,
)
from hub.errors import ConfigError, DataValidationError

KIS = CsvDialect(
    encoding="gbk",
    header_map={
        "物料编码": "material",
        "仓库": "warehouse",
        "批号": "lot",
        "数量": "qty",
        "入库日期": "received",
    },
    thousands=",",
    column_types={"qty": "number", "received": "date"},
    required_columns=("material", "warehouse", "qty"),
)
HEADER = "物料编码,仓库,批号,数量,入库日期\n"


def read(text: str, dialect: CsvDialect = KIS, **kwargs):
    return read_csv_bytes(text.encode(dialect.encoding), dialect, name="drop/inv.csv", **kwargs)


def test_gbk_file_is_read_with_canonical_columns(tmp_path: Path) -> None:
    path = tmp_path / "inv.csv"
    path.write_bytes(
        (HEADER + 'A001,成品仓,L1,"1,234.5",2024-01-05\nB002,原料仓,,7,2024-02-29\n').encode("gbk")
    )
    result = read_csv_file(path, KIS, display_name="sftp:/drop/inv.csv")
    assert result.problems == [] and result.rows_read == 2
    frame = result.frame
    assert list(frame.columns) == ["material", "warehouse", "lot", "qty", "received", SOURCE_LINE]
    assert frame["warehouse"].tolist() == ["成品仓", "原料仓"]
    assert frame["qty"].tolist() == [1234.5, 7.0]
    assert frame["received"].tolist() == [pd.Timestamp("2024-01-05"), pd.Timestamp("2024-02-29")]
    assert frame["lot"].isna().tolist() == [False, True]  # empty optional text is missing, not ""
    assert frame[SOURCE_LINE].tolist() == [2, 3]


def test_gbk_file_read_as_utf8_is_an_encoding_error_naming_the_line() -> None:
    data = HEADER.encode("utf-8") + b"A001,WH,L,1,2024-01-05\n" + "B002,仓,L,1,2024-01-05\n".encode("gbk")
    utf8 = replace(KIS, encoding="utf-8")
    with pytest.raises(FileEncodingError, match="line 3 .*not valid utf-8"):
        read_csv_bytes(data, utf8, name="inv.csv")


def test_malformed_rows_are_reported_with_line_numbers_and_the_rest_kept() -> None:
    text = (
        HEADER
        + "A001,WH1,L1,10,2024-01-05\n"  # 2 ok
        + "A002,WH1,L2,abc,2024-01-05\n"  # 3 text in a number
        + "A003,WH1,L3,5,2024-02-30\n"  # 4 impossible date
        + "\n"  # 5 blank: ignored
        + "A004,WH1,L4,5\n"  # 6 a field short
        + "A005,WH1,L5,5,2024-01-05,extra\n"  # 7 a field too many
        + ",WH1,L6,5,2024-01-05\n"  # 8 required value missing
        + "A007,WH1,L7,nan,2024-01-05\n"  # 9 not a number either
        + "A008,WH1,L8,3,2024-01-06\n"  # 10 ok
    )
    result = read(text)
    found = [(p.line, p.column, p.value) for p in result.problems]
    assert found == [
        (3, "qty", "abc"),
        (4, "received", "2024-02-30"),
        (6, None, None),
        (7, None, None),
        (8, "material", ""),
        (9, "qty", "nan"),
    ]
    assert all(p.file == "drop/inv.csv" and p.reason for p in result.problems)
    assert "found 4" in result.problems[2].reason and "found 6" in result.problems[3].reason
    assert result.frame["material"].tolist() == ["A001", "A008"]
    assert result.frame[SOURCE_LINE].tolist() == [2, 10]
    assert result.rows_read == 8 and result.blank_lines == 1
    assert result.rows_read == len(result.frame) + result.rows_rejected


def test_line_numbers_stay_right_with_quoted_newlines() -> None:
    text = HEADER + '"A001","WH1","multi\nline\nlot",1,2024-01-05\nA002,WH1,L2,x,2024-01-05\nA003,WH1,L3,2,\n'
    result = read(text)
    assert [(p.line, p.column) for p in result.problems] == [(5, "qty")]
    assert result.frame[SOURCE_LINE].tolist() == [2, 6]
    assert result.frame["lot"].tolist()[0] == "multi\nline\nlot"


def test_line_numbers_with_quoted_newlines_and_bad_widths() -> None:
    text = HEADER + '"A001",WH1,"a\nb",1,2024-01-05\nA002,WH1\nA003,WH1,L3,2,2024-01-05,x\nA004,WH1,L4,2,\n'
    result = read(text)
    assert [(p.line, p.column) for p in result.problems] == [(4, None), (5, None)]
    assert result.frame[SOURCE_LINE].tolist() == [2, 6]


def test_crlf_line_endings() -> None:
    result = read((HEADER + "A001,WH1,L1,1,2024-01-05\nA002,WH1,L2,?,2024-01-05\n").replace("\n", "\r\n"))
    assert [(p.line, p.value) for p in result.problems] == [(3, "?")]
    assert result.frame["lot"].tolist() == ["L1"]


def test_european_numbers_semicolons_and_exact_decimals() -> None:
    dialect = CsvDialect(
        encoding="utf-8-sig",
        delimiter=";",
        header_map={"Artikel": "material", "Menge": "qty", "Preis": "price", "Stück": "count"},
        decimal=",",
        thousands=".",
        column_types={"qty": "number", "price": "decimal", "count": "integer"},
    )
    data = "\ufeffArtikel;Menge;Preis;Stück\nA;1.234,5;0,10;3\nB;2;1.000,05;4,5\n".encode()
    result = read_csv_bytes(data, dialect, name="eu.csv")
    assert result.frame["qty"].tolist() == [1234.5]
    assert result.frame["price"].tolist() == [Decimal("0.10")]
    assert result.frame["count"].tolist() == [3]
    assert [(p.line, p.column, p.value) for p in result.problems] == [(3, "count", "4,5")]


def test_datetimes_are_erp_local_time_made_tz_aware() -> None:
    dialect = CsvDialect(
        header_map={"code": "material", "updated": "updated_at"},
        column_types={"updated_at": "datetime"},
        datetime_format="%Y/%m/%d %H:%M:%S",
    )
    result = read_csv_bytes(
        b"code,updated\nA,2024/1/5 08:30:00\nB,2024/01/05 24:00:00\n", dialect, name="t.csv"
    )
    [value] = result.frame["updated_at"].tolist()
    assert value == datetime(2024, 1, 5, 8, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert [(p.line, p.column) for p in result.problems] == [(3, "updated_at")]


def test_columns_the_caller_does_not_read_are_checked_in_the_header_but_not_converted() -> None:
    dialect = replace(KIS, read_columns=frozenset({"material", "qty"}))
    text = HEADER + "A001,成品仓,L1,5,not-a-date\nB002,,L2,x,2024-01-05\nC003,原料仓,L3,7,\n"
    result = read(text, dialect)
    # Unread: the lot and the date (a bad date rejects no row); required columns are still read and
    # checked on every row, the warehouse included.
    assert list(result.frame.columns) == ["material", "warehouse", "qty", SOURCE_LINE]
    assert result.frame["material"].tolist() == ["A001", "C003"]
    assert sorted((p.line, p.column) for p in result.problems) == [(3, "qty"), (3, "warehouse")]
    assert read(text).rejected_lines == (2, 3)  # read whole, the bad date rejects line 2 as well
    with pytest.raises(SchemaDriftError):  # the header is still the template's whole header
        read(HEADER.replace("批号", "批次") + "A001,成品仓,L1,5,2024-01-05\n", dialect)


def test_many_rows_take_the_fast_paths_and_keep_exact_line_numbers() -> None:
    rows = [f"M{i:05d},WH{i % 7},L{i},{i % 50},2024-0{1 + i % 9}-1{i % 10}" for i in range(20_000)]
    rows[12_345] = "M12345,WH1,L12345,-,2024-01-01"
    result = read(HEADER + "\n".join(rows) + "\n")
    assert [(p.line, p.value) for p in result.problems] == [(12_347, "-")]
    assert len(result.frame) == 19_999
    assert result.frame[SOURCE_LINE].iloc[-1] == 20_001


# ------------------------------------------------------------------ truncated or inconsistent files


def test_last_line_without_newline_is_truncation() -> None:
    with pytest.raises(TruncatedFileError, match="line 3 .*no line ending") as caught:
        read(HEADER + "A001,WH1,L1,1,2024-01-05\nA002,WH1,L")
    assert isinstance(caught.value, DataValidationError) and caught.value.path == "drop/inv.csv"


def test_row_count_short_of_the_manifest_is_truncation() -> None:
    text = HEADER + "A001,WH1,L1,1,2024-01-05\nA002,WH1,L2,x,2024-01-05\n"
    assert read(text, expected_rows=2).rows_read == 2  # a bad row still counts as present
    with pytest.raises(TruncatedFileError, match="manifest promises 3 data rows but the file holds 2"):
        read(text, expected_rows=3)
    with pytest.raises(FileRejectedError, match="does not match"):
        read(text, expected_rows=1)


def test_trailer_checks_row_count_and_presence() -> None:
    dialect = replace(KIS, trailer_regex=r"#EOF rows=(?P<rows>\d+)")
    body = HEADER + "A001,WH1,L1,1,2024-01-05\nA002,WH1,L2,2,2024-01-05\n"
    assert len(read(body + "#EOF rows=2\n", dialect).frame) == 2
    with pytest.raises(TruncatedFileError, match="promises 3"):
        read(body + "#EOF rows=3\n", dialect)
    with pytest.raises(TruncatedFileError, match="not the trailer"):
        read(body, dialect)


def test_empty_file_is_truncation() -> None:
    with pytest.raises(TruncatedFileError, match="empty"):
        read_csv_bytes(b"", KIS, name="inv.csv")


def test_header_only_file_has_no_rows() -> None:
    result = read(HEADER)
    assert result.rows_read == 0 and result.frame.empty


# ------------------------------------------------------------------ schema drift


def test_renamed_column_is_schema_drift_with_the_diff() -> None:
    text = "物料编码,仓库,批次,数量,入库日期\nA001,WH1,L1,1,2024-01-05\n"
    with pytest.raises(SchemaDriftError) as caught:
        read(text)
    assert caught.value.missing == ["批号"] and caught.value.added == ["批次"]
    assert "missing ['批号']" in str(caught.value) and "unexpected ['批次']" in str(caught.value)


def test_added_column_refused_unless_tolerated() -> None:
    text = "物料编码,仓库,批号,数量,入库日期,备注\nA001,WH1,L1,1,2024-01-05,hi\n"
    with pytest.raises(SchemaDriftError) as caught:
        read(text)
    assert caught.value.added == ["备注"] and caught.value.missing == []
    tolerant = replace(KIS, tolerate_added_columns=True)
    result = read(text, tolerant)
    assert "备注" not in result.frame.columns and result.frame["qty"].tolist() == [1.0]


def test_removed_or_duplicated_column_is_schema_drift() -> None:
    with pytest.raises(SchemaDriftError) as caught:
        read("物料编码,仓库,数量,入库日期\nA001,WH1,1,2024-01-05\n")
    assert caught.value.missing == ["批号"]
    with pytest.raises(SchemaDriftError) as caught:
        read("物料编码,仓库,批号,数量,数量,入库日期\nA001,WH1,L,1,1,2024-01-05\n")
    assert caught.value.duplicated == ["数量"]


def test_dialect_is_checked_when_built() -> None:
    with pytest.raises(ConfigError):
        CsvDialect(encoding="no-such-codec", header_map={"a": "a"})
    with pytest.raises(ConfigError):
        CsvDialect(header_map={"a": "x", "b": "x"})
    with pytest.raises(ConfigError):
        CsvDialect(header_map={"a": "a"}, required_columns=("b",))
    with pytest.raises(ConfigError):
        CsvDialect(header_map={"a": "a"}, column_types={"a": "money"})  # type: ignore[dict-item]
    with pytest.raises(ConfigError):
        CsvDialect(header_map={"a": "a"}, encoding="utf-16")


def test_over_long_rows_only() -> None:
    text = HEADER + "A001,WH1,L1,1,2024-01-05\nA002,WH1,L2,2,2024-01-05,x,y\n\nA003,WH1,L3,3,2024-01-05\n"
    result = read(text)
    assert [(p.line, p.column) for p in result.problems] == [(3, None)]
    assert "found 7" in result.problems[0].reason
    assert result.frame[SOURCE_LINE].tolist() == [2, 5]


def test_final_newline_may_be_optional() -> None:
    lenient = replace(KIS, require_final_newline=False)
    result = read(HEADER + "A001,WH1,L1,1,2024-01-05\nA002,WH1,L2,x,2024-01-05", lenient)
    assert [(p.line, p.value) for p in result.problems] == [(3, "x")]
