"""End to end over a real sshd: pull complete files, read them per the dialect, archive or fail them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.filedrop import (
    CsvDialect,
    FileRejectedError,
    SftpDropClient,
    read_csv_file,
)

pytestmark = pytest.mark.sshd

DIALECT = CsvDialect(
    encoding="gb18030",
    header_map={"物料编码": "material", "仓库": "warehouse", "数量": "qty"},
    column_types={"qty": "number"},
    required_columns=("material", "warehouse", "qty"),
)
GOOD = "物料编码,仓库,数量\nA001,成品仓,10\nA002,成品仓,x\nA003,原料仓,3\n".encode("gb18030")


def test_pull_read_archive_and_refuse(sshd, drop, downloads, put_file: Callable[..., Path]) -> None:
    put_file(drop, "stock_1.csv", GOOD, manifest_rows=3)
    # The manifest's size matches, but it promises more rows than were written.
    put_file(drop, "stock_2.csv", GOOD, manifest_rows=5)
    # Cut mid-line: the producer crashed after writing the manifest for what it had.
    put_file(drop, "stock_3.csv", GOOD[:-3], manifest_rows=3)
    outcome: dict[str, str] = {}
    settings = sshd.settings(drop, downloads, pattern="stock_*.csv", completeness="manifest")
    with SftpDropClient(settings) as client:
        for downloaded in client.pull():
            try:
                result = read_csv_file(
                    downloaded.local_path,
                    DIALECT,
                    expected_rows=downloaded.expected_rows,
                    display_name=downloaded.path,
                )
            except FileRejectedError as exc:
                outcome[downloaded.path] = type(exc).__name__
                client.move_to_failed(downloaded.remote, reason=str(exc))
            else:
                outcome[downloaded.path] = f"{len(result.frame)} ok, problems at {result.rejected_lines}"
                client.archive(downloaded.remote)
    assert outcome == {
        "stock_1.csv": "2 ok, problems at (3,)",
        "stock_2.csv": "TruncatedFileError",
        "stock_3.csv": "TruncatedFileError",
    }
    assert sorted(p.name for p in (drop / "archive").iterdir()) == [
        "stock_1.csv",
        "stock_1.csv.manifest.json",
    ]
    assert "no line ending" in (drop / "failed" / "stock_3.csv.reason.txt").read_text()
