"""iconv's GB18030 -> UTF-8 agrees with Python's codec except where the module says, and the reader
still refuses what Python refuses, naming the line."""

from __future__ import annotations

import pytest

from connectors.filedrop.csv_dialect import read_csv_bytes
from connectors.filedrop.errors import FileEncodingError
from connectors.filedrop.settings import CsvDialect
from connectors.filedrop.transcode import gb18030_to_utf8, transcodes

pytestmark = pytest.mark.skipif(not transcodes("gb18030"), reason="no glibc iconv here")

# Python keeps GB18030-2000's private-use mapping, glibc gives GB18030-2005's characters.
MAPPED_DIFFERENTLY = {
    "a6d9", "a6da", "a6db", "a6dc", "a6dd", "a6de", "a6df", "a6ec", "a6ed", "a6f3", "a8bc",
    "fe51", "fe52", "fe53", "fe59", "fe61", "fe66", "fe67", "fe6c", "fe6d", "fe76", "fe7e",
    "fe90", "fe91", "fea0", "8135f437",
}  # fmt: skip
# Python decodes them, iconv refuses them (the reader then decodes with Python).
REFUSED_BY_ICONV = {
    "82359037", "82359038", "82359039", "82359130", "82359131", "82359132", "82359133", "82359134",
    "84318236", "84318237", "84318238", "84318239", "84318330", "84318331", "84318332", "84318333",
    "84318334", "84318335",
}  # fmt: skip


def _python(data: bytes) -> bytes | None:
    try:
        return data.decode("gb18030").encode("utf-8")
    except UnicodeDecodeError:
        return None


def test_every_character_agrees_but_the_documented_ones() -> None:
    differ, refused, agreeing = set(), set(), []
    for code_point in range(0x80, 0x110000):
        if 0xD800 <= code_point < 0xE000:
            continue
        encoded = chr(code_point).encode("gb18030")
        if code_point < 0x10000 or code_point % 7 == 0:  # every BMP character, a sample beyond
            fast = gb18030_to_utf8(encoded)
            if fast is None:
                refused.add(encoded.hex())
            elif fast != _python(encoded):
                differ.add(encoded.hex())
            else:
                agreeing.append(encoded)
    assert differ == MAPPED_DIFFERENTLY
    assert refused == REFUSED_BY_ICONV
    text = b"".join(agreeing)  # and in one call, as the reader does it
    assert gb18030_to_utf8(text) == _python(text)


def test_nothing_python_refuses_is_accepted() -> None:
    candidates = [bytes([a]) for a in range(256)]
    candidates += [bytes([a, b]) for a in range(0x81, 0xFF) for b in range(0x30, 0x100)]
    candidates += [
        bytes([a, b, c, d])
        for a in (0x81, 0x84, 0x85, 0x90, 0xE3, 0xE4, 0xFE)
        for b in range(0x30, 0x3A)
        for c in range(0x81, 0xFF)
        for d in (0x30, 0x35, 0x39)
    ]
    accepted_wrongly = [
        data.hex() for data in candidates if _python(data) is None and gb18030_to_utf8(data) is not None
    ]
    assert accepted_wrongly == []


def test_a_character_cut_off_at_the_end_is_refused() -> None:
    assert gb18030_to_utf8("仓库".encode("gb18030")[:-1]) is None
    assert gb18030_to_utf8(b"") == b""


DIALECT = CsvDialect(
    encoding="gb18030",
    header_map={"物料编码": "material_code", "仓库": "warehouse_code", "数量": "on_hand_qty"},
    column_types={"on_hand_qty": "number"},
)


def _csv(*rows: bytes) -> bytes:
    return "物料编码,仓库,数量\n".encode("gb18030") + b"".join(row + b"\n" for row in rows)


def test_the_reader_still_names_the_line_of_a_bad_byte() -> None:
    data = _csv("A1,成品仓,3".encode("gb18030"), b"A2,\xff\xfe\xfd,4")
    with pytest.raises(FileEncodingError, match="line 3"):
        read_csv_bytes(data, DIALECT, name="stock.csv")


def test_the_reader_decodes_what_only_python_accepts() -> None:
    unusual = bytes.fromhex("82359037").decode("gb18030")  # iconv refuses it, Python decodes it
    data = _csv("A1,成品仓,3".encode("gb18030"), f"A2,仓{unusual},4".encode("gb18030"))
    result = read_csv_bytes(data, DIALECT, name="stock.csv")
    assert result.frame["warehouse_code"].tolist() == ["成品仓", f"仓{unusual}"]
    assert result.frame["on_hand_qty"].tolist() == [3.0, 4.0]
