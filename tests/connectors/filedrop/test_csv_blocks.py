"""CsvBlockReader: a file read in blocks gives exactly what read_csv_bytes gives for the whole file."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pandas as pd
import pytest

from connectors.filedrop import FileEncodingError, FileRejectedError, SchemaDriftError, TruncatedFileError
from connectors.filedrop.csv_dialect import (
    SOURCE_LINE,
    CsvBlockReader,
    GrowingBytes,
    StreamAbandoned,
    read_csv_bytes,
)
from tests.connectors.filedrop.test_csv_dialect import HEADER, KIS

CASES = {
    "malformed": HEADER
    + "A001,WH1,L1,10,2024-01-05\nA002,WH1,L2,abc,2024-01-05\nA003,WH1,L3,5,2024-02-30\n\nA004,WH1,L4,5\n"
    + "A005,WH1,L5,5,2024-01-05,extra\n,WH1,L6,5,2024-01-05\nA007,WH1,L7,nan,2024-01-05\nA008,WH1,L8,3,2024-01-06\n",
    "quoted_newlines": HEADER
    + '"A001","WH1","multi\nline\nlot",1,2024-01-05\nA002,WH1,L2,x,2024-01-05\n"A003","WH1","a\n""b""",2,\n'
    + "A004,WH1,L4,2,2024-01-05\n",
    "quoted_bad_widths": HEADER
    + '"A001",WH1,"a\nb",1,2024-01-05\nA002,WH1\nA003,WH1,L3,2,2024-01-05,x\nA004,WH1,L4,2,\n',
    "crlf": (HEADER + 'A001,WH1,L1,1,2024-01-05\nA002,WH1,L2,?,2024-01-05\nA003,仓,L3,"1,234",\n').replace(
        "\n", "\r\n"
    ),
    "many": HEADER
    + "".join(
        f"M{i:04d},仓{i % 7},L{i},{'-' if i % 97 == 5 else i % 50},2024-01-1{i % 10}\n" for i in range(3000)
    ),
    "header_only": HEADER,
}


def _whole_and_blocks(data: bytes, dialect, block_bytes: int, **kwargs):  # type: ignore[no-untyped-def]
    whole = read_csv_bytes(data, dialect, name="inv.csv", **kwargs)
    reader = CsvBlockReader(data, dialect, name="inv.csv", block_bytes=block_bytes)
    blocks = list(reader)
    reader.finish(kwargs.get("expected_rows"))
    return whole, blocks, reader


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("block_bytes", [1, 17, 200, 1 << 20])
@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-8"])
@pytest.mark.parametrize("read", [None, frozenset({"material", "qty", "received"})])
def test_blocks_add_up_to_the_whole_file(
    case: str, block_bytes: int, encoding: str, read: frozenset[str] | None
) -> None:
    # With read columns, GBK/GB18030 blocks whose read fields are ASCII are tokenised untranscoded
    # (the lot is not read; the warehouse is, being required); the whole file is always transcoded.
    dialect = replace(KIS, encoding=encoding, read_columns=read)
    whole, blocks, reader = _whole_and_blocks(CASES[case].encode(encoding), dialect, block_bytes)
    frames = [b.frame for b in blocks if not b.frame.empty]
    frame = pd.concat(frames, ignore_index=True) if frames else whole.frame.iloc[:0]
    pd.testing.assert_frame_equal(frame, whole.frame, check_dtype=False)
    assert [p for b in blocks for p in b.problems] == whole.problems
    assert reader.rows_read == sum(b.rows_read for b in blocks) == whole.rows_read
    assert reader.blank_lines == whole.blank_lines
    if block_bytes == 1 and case == "many":
        assert len(blocks) == 3000 and frame[SOURCE_LINE].iloc[-1] == 3001


NAMED = replace(
    KIS,
    encoding="gb18030",
    header_map={"物料编码": "material", "名称": "name", "仓库": "warehouse", "数量": "qty"},
    column_types={"qty": "number"},
    read_columns=frozenset({"material", "qty"}),
)


def test_ascii_codes_are_read_without_transcoding(monkeypatch: pytest.MonkeyPatch) -> None:
    import connectors.filedrop.csv_dialect as reader_module

    rows = "".join(f'A{i:03d},"六角螺栓 M{i}\n第二行",WH{i % 3},"{i},000.5"\n' for i in range(40))
    data = ("物料编码,名称,仓库,数量\n" + rows + "B001,垫圈,WH1,7\n").encode("gb18030")
    whole = read_csv_bytes(data, NAMED, name="inv.csv")

    def no_transcoding(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("a block whose read fields are ASCII was transcoded")

    monkeypatch.setattr(reader_module, "_utf8", no_transcoding)
    blocks = list(CsvBlockReader(data, NAMED, name="inv.csv", block_bytes=100))
    assert len(blocks) > 5
    frame = pd.concat([b.frame for b in blocks], ignore_index=True)
    pd.testing.assert_frame_equal(frame, whole.frame, check_dtype=False)
    assert list(frame.columns) == ["material", "warehouse", "qty", SOURCE_LINE]
    assert frame["qty"].iloc[[0, 39, 40]].tolist() == [0.5, 39000.5, 7.0]
    assert frame[SOURCE_LINE].iloc[[0, 1, 40]].tolist() == [2, 4, 82]  # each name spans two lines


def test_bad_bytes_only_matter_in_a_column_that_is_read() -> None:
    header = "物料编码,名称,仓库,数量\n".encode("gb18030")
    good = "".join(f"A{i:03d},螺栓,WH1,1\n" for i in range(20)).encode("gb18030")
    in_name = header + good + b"B001,\xff\xff,WH1,2\n"  # 0xFF starts no GB18030 character
    blocks = list(CsvBlockReader(in_name, NAMED, name="x", block_bytes=64))
    assert sum(len(b.frame) for b in blocks) == 21 and not [p for b in blocks for p in b.problems]
    in_warehouse = header + good + b"B001,\xc2\xdd\xcb\xa8,WH\xff,2\n"
    with pytest.raises(FileEncodingError, match="line 22 "):
        list(CsvBlockReader(in_warehouse, NAMED, name="x", block_bytes=64))


def test_file_level_problems_raise_before_any_block() -> None:
    with pytest.raises(TruncatedFileError, match="line 3 .*no line ending"):
        CsvBlockReader((HEADER + "A001,WH1,L1,1,2024-01-05\nA002,WH1,L").encode("gbk"), KIS, name="x")
    with pytest.raises(TruncatedFileError, match="empty"):
        CsvBlockReader(b"", KIS, name="x")
    with pytest.raises(SchemaDriftError):
        CsvBlockReader("物料编码,仓库,数量,入库日期\nA001,WH1,1,2024-01-05\n".encode("gbk"), KIS, name="x")
    trailer = replace(KIS, trailer_regex=r"#EOF rows=(?P<rows>\d+)")
    with pytest.raises(TruncatedFileError, match="not the trailer"):
        CsvBlockReader((HEADER + "A001,WH1,L1,1,2024-01-05\n").encode("gbk"), trailer, name="x")


def test_row_counts_are_checked_at_the_end() -> None:
    body = HEADER + "A001,WH1,L1,1,2024-01-05\nA002,WH1,L2,2,2024-01-05\n"
    trailer = replace(KIS, trailer_regex=r"#EOF rows=(?P<rows>\d+)")
    reader = CsvBlockReader((body + "#EOF rows=3\n").encode("gbk"), trailer, name="x", block_bytes=10)
    blocks = list(reader)
    assert sum(len(b.frame) for b in blocks) == 2  # the trailer line is no data row
    with pytest.raises(TruncatedFileError, match="trailer promises 3"):
        reader.finish()
    reader = CsvBlockReader(body.encode("gbk"), KIS, name="x", block_bytes=10)
    list(reader)
    reader.finish(2)
    with pytest.raises(FileRejectedError, match="manifest promises 1"):
        reader.finish(1)


def test_undecodable_block_names_the_file_line() -> None:
    good = "".join(f"A{i:03d},WH1,L{i},1,2024-01-05\n" for i in range(50))
    data = (HEADER + good).encode("utf-8") + "B002,仓,L,1,2024-01-05\n".encode("gbk")
    reader = CsvBlockReader(data, replace(KIS, encoding="utf-8"), name="x", block_bytes=64)
    with pytest.raises(FileEncodingError, match="line 52 "):
        list(reader)


def _feed(
    stream: GrowingBytes, data: bytes, chunk: int, *, ok: bool = True, restart_at: int | None = None
) -> None:
    stream.restart()
    for i in range(0, len(data), chunk):
        if restart_at is not None and i >= restart_at:
            stream.restart()
            restart_at = None
        stream.write(data[i : i + chunk])
        time.sleep(0)
    stream.close(ok=ok)


@pytest.mark.parametrize("case", ["malformed", "quoted_newlines", "crlf", "many", "header_only"])
@pytest.mark.parametrize("chunk", [1, 5, 333, 1 << 20])
def test_blocks_read_while_the_bytes_arrive_equal_the_whole_file(case: str, chunk: int) -> None:
    data = CASES[case].encode("gbk")
    whole = read_csv_bytes(data, KIS, name="inv.csv")
    stream = GrowingBytes()
    feeder = threading.Thread(target=_feed, args=(stream, data, chunk))
    feeder.start()
    reader = CsvBlockReader(stream, KIS, name="inv.csv", block_bytes=40)
    blocks = list(reader)
    feeder.join()
    reader.finish()
    frames = [b.frame for b in blocks if not b.frame.empty]
    frame = pd.concat(frames, ignore_index=True) if frames else whole.frame.iloc[:0]
    pd.testing.assert_frame_equal(frame, whole.frame, check_dtype=False)
    assert [p for b in blocks for p in b.problems] == whole.problems
    assert reader.rows_read == whole.rows_read


def test_a_stream_that_fails_or_starts_over_is_abandoned() -> None:
    data = CASES["many"].encode("gbk")
    for kwargs in ({"ok": False}, {"restart_at": len(data) // 2}):
        stream = GrowingBytes()
        feeder = threading.Thread(target=_feed, args=(stream, data, 4096), kwargs=kwargs)
        feeder.start()
        with pytest.raises(StreamAbandoned):
            list(CsvBlockReader(stream, KIS, name="inv.csv", block_bytes=1000))
        feeder.join()


def test_a_streamed_file_cut_off_is_refused_at_its_end() -> None:
    data = (HEADER + "A001,WH1,L1,1,2024-01-05\n" * 50 + "A002,WH1,L").encode("gbk")
    stream = GrowingBytes()
    _feed(stream, data, 64)
    with pytest.raises(TruncatedFileError, match="line 52 .*no line ending"):
        list(CsvBlockReader(stream, KIS, name="inv.csv", block_bytes=100))


def test_a_short_row_is_reported_even_when_no_row_is_too_long() -> None:
    # The tolerant tokenizer pads a short row silently; it used to be loaded with an empty date.
    data = (HEADER + "A001,WH1,L1,1,2024-01-05\nA004,WH1,L4,5\nA008,WH1,L8,3,2024-01-06\n").encode("gbk")
    result = read_csv_bytes(data, KIS, name="inv.csv")
    assert [(p.line, p.column) for p in result.problems] == [(3, None)]
    assert "found 4" in result.problems[0].reason
    assert result.frame[SOURCE_LINE].tolist() == [2, 4]


def test_a_first_row_one_field_too_long_does_not_shift_the_others() -> None:
    # pandas took such a first row for an index column and shifted every row one column left.
    data = (HEADER + "A005,WH1,L5,5,2024-01-05,extra\nA001,WH1,L1,1,2024-01-05\n").encode("gbk")
    result = read_csv_bytes(data, KIS, name="inv.csv")
    assert [(p.line, p.column) for p in result.problems] == [(2, None)]
    assert result.frame["material"].tolist() == ["A001"] and result.frame["qty"].tolist() == [1.0]
