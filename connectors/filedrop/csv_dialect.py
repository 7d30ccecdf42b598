"""Read one downloaded ERP CSV file according to its template's dialect.

:func:`read_csv_file` returns the rows that parse, under their canonical column names, plus one
:class:`RowProblem` (file, 1-based physical line, column, value, reason) for every value or row that
does not. A problem with the *file* (cut off, wrong headers, wrong encoding, row count short of the
manifest or trailer) raises a :class:`~connectors.filedrop.errors.FileRejectedError` instead: a partial
snapshot must never be loaded as if it were whole.

Speed (PERF-RELIABILITY P8: 1e6 rows parsed and typed in about a second): the file is tokenised once by
pandas' C parser with every column as text, then each column is converted with vectorised pandas
operations; only rows that fail are touched one by one. Physical line numbers are derived with
arithmetic on byte counts; only a file whose counts do not add up (quoted newlines together with
over-long rows, rows with too few fields, stray carriage returns) takes a second, exact pass with
Python's :mod:`csv` module to place every record on its line.

Only ASCII-compatible encodings are supported (UTF-8, GBK, GB18030, Big5 ...): Chinese ERPs write
those. Text is decoded strictly; an undecodable byte refuses the file with the line it is on. One
exception: a file read in blocks (:class:`CsvBlockReader`) never decodes the columns its caller does
not read (:attr:`CsvDialect.read_columns`) when the others are plain ASCII, so a bad byte there is not
found (see :meth:`CsvBlockReader._plain_ascii_fields`).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from connectors.filedrop.errors import (
    FileEncodingError,
    FileRejectedError,
    SchemaDriftError,
    TruncatedFileError,
)
from connectors.filedrop.settings import CsvDialect
from connectors.filedrop.transcode import gb18030_to_utf8, transcodes

__all__ = [
    "SOURCE_LINE",
    "CsvBlockReader",
    "CsvReadResult",
    "GrowingBytes",
    "StreamAbandoned",
    "RowProblem",
    "read_csv_bytes",
    "read_csv_file",
]

SOURCE_LINE = "_source_line"
"""Column of the returned frame holding each accepted row's 1-based physical line in the file."""

_BAD_LINE = re.compile(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)")
_UTF8_NAMES = {"utf-8", "utf_8", "utf8", "u8", "utf-8-sig", "utf_8_sig", "ascii", "us-ascii"}
_PREVIEW = 80
_SAMPLE_ROWS = 10_000
_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"


@dataclass(frozen=True)
class RowProblem:
    """One value or row that could not be read; ``line`` is the 1-based physical line in ``file``."""

    file: str
    line: int
    column: str | None
    value: str | None
    reason: str


@dataclass(frozen=True)
class CsvReadResult:
    """Accepted rows (canonical columns + :data:`SOURCE_LINE`) and the problems of the rejected ones.

    ``rows_read`` counts the data records in the file (accepted + rejected; blank lines excluded), so
    ``rows_read == len(frame) + rows_rejected`` always holds.
    """

    frame: pd.DataFrame
    problems: list[RowProblem]
    rows_read: int
    blank_lines: int = 0
    rejected_lines: tuple[int, ...] = field(default=())

    @property
    def rows_rejected(self) -> int:
        """Number of data rows left out because of at least one problem."""
        return len(self.rejected_lines)


def read_csv_file(
    path: str | Path,
    dialect: CsvDialect,
    *,
    expected_rows: int | None = None,
    display_name: str | None = None,
) -> CsvReadResult:
    """Read ``path`` per ``dialect``.

    Args:
        path: the downloaded file.
        dialect: the template's :class:`~connectors.filedrop.settings.CsvDialect`.
        expected_rows: data rows the manifest promises; fewer raises :class:`TruncatedFileError`.
        display_name: how problems and errors name the file (e.g. its path on the SFTP server).

    Raises:
        TruncatedFileError, SchemaDriftError, FileEncodingError, FileRejectedError.
    """
    name = display_name or str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FileRejectedError(f"{name}: cannot read the file ({exc}).", path=name) from exc
    return read_csv_bytes(data, dialect, name=name, expected_rows=expected_rows)


def read_csv_bytes(
    data: bytes, dialect: CsvDialect, *, name: str, expected_rows: int | None = None
) -> CsvReadResult:
    """Same as :func:`read_csv_file` for content already in memory; ``name`` labels problems."""
    utf8, trailer_rows = _prepare(data, dialect, name)
    header, header_end = _read_header(utf8, dialect)
    _check_header(header, dialect, name)
    result = _parse_body(utf8, header, header_end, dialect, name)
    _check_row_count(result.rows_read, expected_rows, trailer_rows, name)
    return result


def _check_row_count(rows_read: int, expected_rows: int | None, trailer_rows: int | None, name: str) -> None:
    """Refuse the file when the manifest or the trailer promises another number of data rows."""
    for expected, source in ((expected_rows, "manifest"), (trailer_rows, "trailer")):
        if expected is not None and rows_read != expected:
            cls = TruncatedFileError if rows_read < expected else FileRejectedError
            raise cls(
                f"{name}: the {source} promises {expected} data rows but the file holds {rows_read}; "
                f"{'the file is incomplete' if rows_read < expected else 'the file does not match it'}. "
                "Refused whole; the previous snapshot stays in force.",
                path=name,
            )


def _parse_body(
    utf8: bytes,
    header: list[str],
    header_end: int,
    dialect: CsvDialect,
    name: str,
    line_offset: int = 0,
    *,
    threads: bool = True,
    columns: list[pa.ChunkedArray] | None = None,
) -> CsvReadResult:
    """Tokenise, number and convert the data lines of ``utf8`` (a header line, then data lines).

    ``line_offset`` is added to every line number (a block of a file: physical lines before it - 1).
    ``threads``: let Arrow tokenise on its thread pool (a whole file); a block of a pipelined read is
    tokenised on the calling thread, the other threads (download, COPY) already keep the cores busy
    and the pool's hand-offs cost about 10% more CPU. ``columns``: the body already tokenised by
    :func:`_tokenise_arrow` (rectangular); ``utf8`` then only serves to count lines.
    """
    ncols = len(header)
    has_quotes = dialect.quotechar.encode("ascii") in utf8
    if columns is None:
        columns = _tokenise_arrow(utf8, header_end, dialect, ncols, has_quotes, threads)
    skipped: list[tuple[int, int]] = []
    rectangular = columns is not None
    if columns is None:  # not rectangular (or bad bytes): the tolerant tokenizer reports the bad rows
        if _is_utf8(dialect.encoding):
            _decode(utf8, "utf-8", name, line_offset)
        columns, skipped = _tokenise_pandas(utf8, dialect, ncols, name)
    blank = _blank_mask(columns)
    # After the tolerant tokenizer rows may be short (padded silently) even when none was too long.
    lines, long_rows, short = _line_numbers(
        utf8, columns, blank, skipped, dialect, header_end, has_quotes, rectangular=rectangular
    )
    if line_offset:
        lines = lines + line_offset
        long_rows = [(line + line_offset, saw) for line, saw in long_rows]
        short = [(line + line_offset, saw) for line, saw in short]

    problems = [
        RowProblem(
            name, line, None, None, f"expected {ncols} fields separated by {dialect.delimiter!r}, found {saw}"
        )
        for line, saw in long_rows + short
    ]
    # Blank lines (and rows of nothing but delimiters) carry no data: dropped, counted, not reported.
    keep = ~blank
    if short:
        keep &= ~np.isin(lines, [line for line, _ in short])
    blank_count = int(blank.sum())
    if not keep.all():
        mask = pa.array(keep)
        columns = [col.filter(mask) for col in columns]
        lines = lines[keep]

    frame, bad_rows = _convert(columns, header, lines, dialect, name, problems)
    rows_read = len(lines) + len(long_rows) + len(short)
    if bad_rows.any():
        frame = frame.loc[~bad_rows].reset_index(drop=True)
    rejected = tuple(sorted({p.line for p in problems}))
    problems.sort(key=lambda p: (p.line, p.column or ""))
    return CsvReadResult(frame, problems, rows_read, blank_count, rejected)


# ---------------------------------------------------------------------------------------------- blocks


class StreamAbandoned(Exception):
    """The bytes of a :class:`GrowingBytes` will not be whole: the download failed or started over."""


class GrowingBytes:
    """A file's bytes while they arrive (a download in progress), for a :class:`CsvBlockReader` on
    another thread. It is a :class:`~connectors.filedrop.sftp.DownloadSink`: ``restart`` / ``write``
    come from the downloading thread, which calls :meth:`close` when the download returned (``ok``:
    the file is whole and verified) or failed.

    A second ``restart`` (a retry after a disconnect) abandons the stream: readers get
    :class:`StreamAbandoned`, as after a failed download. The reader never sees bytes of two attempts.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._cond = threading.Condition()
        self._attempts = 0
        self._state = "open"  # open | done | abandoned

    # -- writer side
    def restart(self) -> None:
        with self._cond:
            self._attempts += 1
            if self._attempts > 1 or self._buffer:
                self._state = "abandoned"
            self._cond.notify_all()

    def write(self, chunk: bytes) -> None:
        with self._cond:
            if self._state == "open":
                self._buffer += chunk
                self._cond.notify_all()

    def close(self, *, ok: bool) -> None:
        with self._cond:
            if self._state == "open":
                self._state = "done" if ok else "abandoned"
            self._cond.notify_all()

    # -- reader side
    def wait_for(self, size: int) -> tuple[int, bool]:
        """Wait until ``size`` bytes arrived or the download ended; returns (bytes so far, ended whole)."""
        with self._cond:
            while len(self._buffer) < size and self._state == "open":
                self._cond.wait()
            if self._state == "abandoned":
                raise StreamAbandoned("the download failed or started over")
            return len(self._buffer), self._state == "done"

    def find(self, sub: bytes, start: int, end: int) -> int:
        with self._cond:
            return self._buffer.find(sub, start, end)

    def count(self, sub: bytes, start: int, end: int) -> int:
        with self._cond:
            return self._buffer.count(sub, start, end)

    def slice(self, start: int, end: int) -> bytes:
        with self._cond:
            # One copy (a bytearray slice would be a second): the view is gone before the lock is
            # released, so a write() never finds the buffer exported when it grows it.
            return bytes(memoryview(self._buffer)[start:end])


class CsvBlockReader:
    """Read a file in blocks of about ``block_bytes``, each one a :class:`CsvReadResult` of its own.

    For a pipeline that loads a block while the next one is parsed. The file-level checks that need no
    parsing (empty file, missing final newline, header against the template, trailer line) run when the
    reader is made, before any block is handed out; a block that cannot be decoded raises while the
    blocks are read; the row count promised by the manifest or the trailer is checked by
    :meth:`finish` once every block was read. A caller must therefore treat everything it did with the
    blocks as provisional until :meth:`finish` returned (load them in one transaction and roll it back
    on any of these errors).

    Blocks end on a record boundary (a newline outside quotes); line numbers and problems are those of
    the whole file, exactly as :func:`read_csv_bytes` reports them, and ``rows_read`` summed over the
    blocks equals its ``rows_read``. A file whose quote character could be part of a multi-byte
    character of its encoding is read as one block.
    """

    def __init__(
        self, data: bytes | GrowingBytes, dialect: CsvDialect, *, name: str, block_bytes: int = 8 << 20
    ) -> None:
        self.dialect, self.name = dialect, name
        self.rows_read = 0
        self.blank_lines = 0
        self.trailer_rows: int | None = None
        self._line_base = 1  # physical lines before the next block (the header's)
        quote = dialect.quotechar.encode("ascii")
        # In UTF-8 no byte of a multi-byte character is ASCII; in GBK/GB18030/Big5 the second byte of a
        # character can be 0x40 or above (never a newline, '"' or "'").
        self._quote = quote if _is_utf8(dialect.encoding) or quote[0] < 0x30 else None
        self._block_bytes = max(1, block_bytes) if self._quote is not None else 1 << 62
        self._stream: GrowingBytes | None = None
        if isinstance(data, GrowingBytes):
            if dialect.trailer_regex:
                raise ValueError("a file with a trailer line is read whole, not while it downloads")
            self._stream = data
        else:
            self._check_file(data)

    def _check_file(self, data: bytes) -> None:
        dialect, name = self.dialect, self.name
        if not data[:65536].strip():
            raise TruncatedFileError(
                f"{name}: the file is empty (not even a header line); refused.", path=name
            )
        if dialect.require_final_newline and not data.endswith(b"\n"):
            _prepare(data, dialect, name)  # raises TruncatedFileError naming the cut-off line
        first = data.find(b"\n")
        header_end = len(data) if first < 0 else first + 1
        end = len(data)
        if dialect.trailer_regex:
            body = data.rstrip(b"\r\n")
            cut = body.rfind(b"\n") + 1
            line_no = data.count(b"\n", 0, cut) + 1
            raw_last = body[cut:]
            if cut == 0 and _is_utf8(dialect.encoding):
                raw_last = raw_last.removeprefix(b"\xef\xbb\xbf")
            last = _decode(raw_last, dialect.encoding, name, line_no - 1).removeprefix("\ufeff").strip()
            match = re.fullmatch(dialect.trailer_regex, last)
            if match is None:
                raise TruncatedFileError(
                    f"{name}: the last line {last[:_PREVIEW]!r} is not the trailer the template expects "
                    f"({dialect.trailer_regex!r}); the file is probably cut off. Refused whole.",
                    path=name,
                )
            if match.groupdict().get("rows") is not None:
                self.trailer_rows = int(match.group("rows"))
            if cut == 0:
                raise TruncatedFileError(f"{name}: only a trailer line, no header; refused.", path=name)
            end = cut
        self._set_header(data[:header_end])
        self._data = data
        self._start = min(header_end, end)
        self._end = end

    def _set_header(self, raw_header: bytes) -> None:
        dialect, name = self.dialect, self.name
        if _is_utf8(dialect.encoding):
            raw_header = raw_header.removeprefix(b"\xef\xbb\xbf")
            _decode(raw_header, "utf-8", name)
            header_utf8 = raw_header
        else:
            header_utf8 = _decode(raw_header, dialect.encoding, name).removeprefix("\ufeff").encode("utf-8")
        if not header_utf8.endswith(b"\n"):
            header_utf8 += b"\n"
        self.header, _ = _read_header(header_utf8, dialect)
        _check_header(self.header, dialect, name)
        self._header_utf8 = header_utf8
        # The fields a block must read as text (CsvDialect.reads).
        self._text_fields = [
            i
            for i, source in enumerate(self.header)
            if (canonical := dialect.header_map.get(source)) is not None and dialect.reads(canonical)
        ]
        self._untranscoded = (
            dialect.read_columns is not None
            and _codec_name(dialect.encoding) in _DOUBLE_BYTE_CHINESE
            and dialect.delimiter.encode("ascii")[0] < 0x30
            and dialect.quotechar.encode("ascii")[0] < 0x30
        )

    def _plain_ascii_fields(self, body: bytes) -> list[pa.ChunkedArray] | None:
        """The fields of ``body`` (the UTF-8 header line, then the block's bytes as they are)
        tokenised untranscoded, if the fields read as text are all plain ASCII (then they are their
        own UTF-8); None otherwise.

        In GBK and GB18030 no byte of a multi-byte character is below 0x30, so a delimiter, quote or
        newline byte is always one. A file whose codes and numbers are ASCII (most are; names are
        not, and are not read) needs no transcoding: about 0.13 s of CPU at a million GB18030 rows
        (0.4 s for GBK, which Python decodes). The fields not read stay bytes, never decoded: a bad
        byte in them is not found, as a bad value in them rejects no row (CsvDialect.read_columns).
        """
        quotes = self.dialect.quotechar.encode("ascii") in body
        columns = _tokenise_arrow(
            body,
            len(self._header_utf8),
            self.dialect,
            len(self.header),
            quotes,
            threads=False,
            kind=pa.binary(),
        )
        if columns is None:
            return None
        for i in self._text_fields:
            if not _plain_ascii(columns[i]):
                return None
            columns[i] = columns[i].cast(pa.string())  # ASCII is valid UTF-8: no copy of the bytes
        return columns

    def __iter__(self) -> Iterator[CsvReadResult]:
        if self._stream is not None:
            yield from self._iter_stream(self._stream)
            return
        data, start, end = self._data, self._start, self._end
        while start < end:
            stop = self._block_end(start, end)
            yield self._block(data[start:stop])
            start = stop

    def _block(self, raw: bytes) -> CsvReadResult:
        """Parse the raw bytes of whole records that follow the lines read so far."""
        body, columns = b"", None
        if self._untranscoded:
            body = self._header_utf8 + (raw if raw.endswith(b"\n") else raw + b"\n")
            columns = self._plain_ascii_fields(body)
            self._untranscoded = columns is not None  # a file whose codes are not ASCII: stop trying
        if columns is None:
            text = raw
            if not _is_utf8(self.dialect.encoding):
                text = _utf8(raw, self.dialect.encoding, self.name, self._line_base)
            if not text.endswith(b"\n"):
                text += b"\n"
            body = self._header_utf8 + text
        block = _parse_body(
            body,
            self.header,
            len(self._header_utf8),
            self.dialect,
            self.name,
            line_offset=self._line_base - 1,
            threads=False,
            columns=columns,
        )
        self.rows_read += block.rows_read
        self.blank_lines += block.blank_lines
        self._line_base += raw.count(b"\n")
        return block

    def _iter_stream(self, stream: GrowingBytes) -> Iterator[CsvReadResult]:
        """Blocks as the bytes arrive; the end of the file is read once the download ended whole."""
        length, done = stream.wait_for(1)
        while not done and stream.find(b"\n", 0, length) < 0:
            length, done = stream.wait_for(length + 1)
        if done:  # the whole file arrived before its first line ended: read it as a file
            self._check_file(stream.slice(0, length))
            self._stream = None
            yield from self
            return
        header_end = stream.find(b"\n", 0, length) + 1
        self._set_header(stream.slice(0, header_end))
        start = header_end
        need = start + self._block_bytes + 1
        while True:
            length, done = stream.wait_for(need)
            if done:
                break
            stop = self._block_end_in(stream, start, length)
            if stop < 0:  # no record boundary in what arrived yet
                need = length + 1
                continue
            yield self._block(stream.slice(start, stop))
            start = stop
            need = start + self._block_bytes + 1
        data = stream.slice(0, length)  # whole and verified: the checks on the file's end apply
        self._check_file(data)
        self._data, self._start, self._end = data, max(start, self._start), self._end
        yield from self._iter_rest(start)

    def _iter_rest(self, start: int) -> Iterator[CsvReadResult]:
        data, end = self._data, self._end
        while start < end:
            stop = self._block_end(start, end)
            yield self._block(data[start:stop])
            start = stop

    def _block_end_in(self, stream: GrowingBytes, start: int, length: int) -> int:
        """Like :meth:`_block_end` on the bytes arrived so far; -1 when no boundary is known yet."""
        quote = self._quote
        if quote is None:
            return -1
        newline = stream.find(b"\n", start + self._block_bytes, length)
        if newline < 0:
            return -1
        quotes = stream.count(quote, start, newline)
        while quotes % 2:
            following = stream.find(b"\n", newline + 1, length)
            if following < 0:
                return -1
            quotes += stream.count(quote, newline, following)
            newline = following
        return newline + 1

    def _block_end(self, start: int, end: int) -> int:
        """End of the block starting at ``start``: after a newline outside quotes, or ``end``."""
        if self._quote is None or end - start <= self._block_bytes:
            return end
        data, quote = self._data, self._quote
        newline = data.find(b"\n", start + self._block_bytes, end)
        quotes = data.count(quote, start, newline) if newline >= 0 else 0
        while newline >= 0 and quotes % 2:  # inside a quoted value: the record goes on
            following = data.find(b"\n", newline + 1, end)
            if following < 0:
                return end
            quotes += data.count(quote, newline, following)
            newline = following
        return end if newline < 0 else newline + 1

    def finish(self, expected_rows: int | None = None) -> None:
        """Once every block was read: refuse the file if the manifest or trailer promised other counts."""
        _check_row_count(self.rows_read, expected_rows, self.trailer_rows, self.name)


# ---------------------------------------------------------------------------------------------- file level


_DOUBLE_BYTE_CHINESE = {"gbk", "gb18030", "gb2312"}


def _codec_name(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return encoding


def _plain_ascii(column: pa.ChunkedArray) -> bool:
    """Whether every byte of a binary column is below 0x80."""
    for chunk in column.chunks:
        if not len(chunk):
            continue
        offsets, data = chunk.buffers()[1:3]
        if data is None:
            continue
        bounds = np.frombuffer(offsets, dtype=np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
        values = np.frombuffer(data, dtype=np.uint8)[bounds[0] : bounds[-1]]
        if values.size and int(values.max()) >= 0x80:
            return False
    return True


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("_", "-") in _UTF8_NAMES


def _prepare(data: bytes, dialect: CsvDialect, name: str) -> tuple[bytes, int | None]:
    """Truncation checks, strict decoding, and the content as UTF-8 without BOM or trailer."""
    if not data[:65536].strip():  # a slice: stripping a 70 MB file would copy it
        raise TruncatedFileError(f"{name}: the file is empty (not even a header line); refused.", path=name)
    if dialect.require_final_newline and not data.endswith(b"\n"):
        last_start = data.rfind(b"\n") + 1
        line_no = data.count(b"\n") + 1
        preview = data[last_start : last_start + _PREVIEW].decode(dialect.encoding, errors="replace")
        raise TruncatedFileError(
            f"{name}: line {line_no} ({preview!r}) has no line ending: the file was cut off or is still "
            "being written. Refused whole; the previous snapshot stays in force.",
            path=name,
            context={"line": line_no},
        )
    # UTF-8 as it is: Arrow validates it as it reads (and the fallback decodes first); decoding the
    # whole file here as well would cost as much as parsing it. A BOM (also GB18030's) goes.
    utf8 = data if _is_utf8(dialect.encoding) else _utf8(data, dialect.encoding, name)
    utf8 = utf8[3:] if utf8.startswith(b"\xef\xbb\xbf") else utf8
    trailer_rows: int | None = None
    if dialect.trailer_regex:
        body = utf8.rstrip(b"\r\n")
        cut = body.rfind(b"\n") + 1
        last = body[cut:].decode("utf-8", errors="replace").strip()
        match = re.fullmatch(dialect.trailer_regex, last)
        if match is None:
            raise TruncatedFileError(
                f"{name}: the last line {last[:_PREVIEW]!r} is not the trailer the template expects "
                f"({dialect.trailer_regex!r}); the file is probably cut off. Refused whole.",
                path=name,
            )
        if match.groupdict().get("rows") is not None:
            trailer_rows = int(match.group("rows"))
        utf8 = utf8[:cut]
        if not utf8:
            raise TruncatedFileError(f"{name}: only a trailer line, no header; refused.", path=name)
    if not utf8.endswith(b"\n"):  # only when require_final_newline is off: keep line arithmetic simple
        utf8 += b"\n"
    return utf8, trailer_rows


def _utf8(data: bytes, encoding: str, name: str, line_offset: int = 0) -> bytes:
    """``data`` as UTF-8, decoded strictly (see :func:`_decode`); GB18030 by iconv where it can
    (:mod:`connectors.filedrop.transcode`: one pass, without the GIL)."""
    if transcodes(encoding):
        fast = gb18030_to_utf8(data)
        if fast is not None:
            return fast
    return _decode(data, encoding, name, line_offset).encode("utf-8")


def _decode(data: bytes, encoding: str, name: str, line_offset: int = 0) -> str:
    """Strict decode; an invalid byte refuses the file and names its line (``line_offset`` lines before)."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line_no = data.count(b"\n", 0, exc.start) + 1 + line_offset
        raise FileEncodingError(
            f"{name}: line {line_no} holds bytes that are not valid {encoding} ({exc.reason} at byte "
            f"{exc.start}). Check the template's encoding (GBK/GB18030 for most Chinese ERPs) or ask for a "
            "clean export; refused.",
            path=name,
            context={"line": line_no},
        ) from exc


def _read_header(utf8: bytes, dialect: CsvDialect) -> tuple[list[str], int]:
    end = utf8.find(b"\n")
    end = len(utf8) if end < 0 else end + 1
    line = utf8[:end].decode("utf-8", errors="replace").rstrip("\r\n")
    header = next(csv.reader([line], delimiter=dialect.delimiter, quotechar=dialect.quotechar), [])
    return [h.strip() for h in header], end


def _check_header(header: list[str], dialect: CsvDialect, name: str) -> None:
    expected = list(dialect.header_map)
    duplicated = sorted({h for h in header if header.count(h) > 1})
    missing = [h for h in expected if h not in header]
    added = [h for h in header if h not in dialect.header_map]
    if missing or duplicated or (added and not dialect.tolerate_added_columns):
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if added and not dialect.tolerate_added_columns:
            parts.append(f"unexpected {added}")
        if duplicated:
            parts.append(f"duplicated {duplicated}")
        hint = " (a renamed column shows up as one missing and one unexpected)" if missing and added else ""
        raise SchemaDriftError(
            f"{name}: the header does not match the template: {'; '.join(parts)}{hint}. Expected "
            f"{expected}, found {header}. Update the template's header_map (or have the ERP export "
            "restored); nothing from this file was loaded.",
            path=name,
            missing=missing,
            added=added,
            duplicated=duplicated,
        )


def _as_chunked(values: object, kind: pa.DataType = pa.string()) -> pa.ChunkedArray:
    array = pa.array(values) if not isinstance(values, pa.Array | pa.ChunkedArray) else values
    chunked = array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])
    return chunked if chunked.type == kind else chunked.cast(kind)


def _tokenise_arrow(
    utf8: bytes,
    header_end: int,
    dialect: CsvDialect,
    ncols: int,
    has_quotes: bool,
    threads: bool = True,
    kind: pa.DataType = pa.string(),
) -> list[pa.ChunkedArray] | None:
    """Fast path: Arrow's reader (on its thread pool if ``threads``), every field as text (``kind``
    binary: as bytes, not checked to be UTF-8). None if any row is not ncols wide."""
    if header_end >= len(utf8):
        return [pa.chunked_array([], type=kind) for _ in range(ncols)]
    names = [f"c{i}" for i in range(ncols)]
    try:
        table = pacsv.read_csv(
            io.BytesIO(utf8),
            read_options=pacsv.ReadOptions(skip_rows=1, column_names=names, use_threads=threads),
            parse_options=pacsv.ParseOptions(
                delimiter=dialect.delimiter,
                quote_char=dialect.quotechar,
                double_quote=True,
                newlines_in_values=has_quotes,
                ignore_empty_lines=False,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, kind),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowException):
        return None
    return [_as_chunked(table.column(i), kind) for i in range(ncols)]


def _tokenise_pandas(
    utf8: bytes, dialect: CsvDialect, ncols: int, name: str
) -> tuple[list[pa.ChunkedArray], list[tuple[int, int]]]:
    """Tolerant path: pandas' C parser skips over-long rows and tells which (record number, width)."""
    # pandas takes a first data row one field too long for an index column and shifts every row; an
    # empty row of exactly ncols fields put first (and dropped below) keeps it from guessing.
    header_end = utf8.find(b"\n") + 1
    buffer = utf8[:header_end] + dialect.delimiter.encode("ascii") * (ncols - 1) + b"\n" + utf8[header_end:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            raw = pd.read_csv(
                io.BytesIO(buffer),
                sep=dialect.delimiter,
                quotechar=dialect.quotechar,
                header=None,
                skiprows=1,
                names=list(range(ncols)),
                dtype=str,
                encoding="utf-8",
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=False,
                on_bad_lines="warn",
                engine="c",
            )
        except pd.errors.ParserError as exc:
            raise FileRejectedError(f"{name}: the CSV cannot be parsed ({exc}); refused.", path=name) from exc
    skipped: list[tuple[int, int]] = []
    for warning in caught:
        for match in _BAD_LINE.finditer(str(warning.message)):
            skipped.append((int(match.group(1)) - 1, int(match.group(3))))
    skipped.sort()
    raw = raw.iloc[1:]
    return [_as_chunked(raw[i].to_numpy(dtype=object)) for i in range(ncols)], skipped


def _blank_mask(columns: list[pa.ChunkedArray]) -> np.ndarray:
    blank = pc.equal(pc.binary_length(columns[0]), 0)  # lengths: text and bytes alike
    for col in columns[1:]:
        blank = pc.and_(blank, pc.equal(pc.binary_length(col), 0))
    return np.asarray(blank.to_numpy(zero_copy_only=False), dtype=bool)


def _line_numbers(
    utf8: bytes,
    columns: list[pa.ChunkedArray],
    blank: np.ndarray,
    skipped: list[tuple[int, int]],
    dialect: CsvDialect,
    header_end: int,
    has_quotes: bool,
    *,
    rectangular: bool,
) -> tuple[np.ndarray, list[tuple[int, int]], list[tuple[int, int]]]:
    """Physical lines of the parsed rows, and (line, fields) of the over-long and of the short rows.

    Fast path: when the counts of newlines (and, after the tolerant tokenizer, of delimiters) in the
    file add up to what the parse implies, line numbers follow by arithmetic. Otherwise an exact pass
    with :mod:`csv` decides.
    """
    ncols = len(columns)
    n = len(blank)
    inside_nl = np.zeros(n, dtype=np.int64)
    inside_delims = 0
    if has_quotes:
        for col in columns:
            inside_nl += np.asarray(
                pc.count_substring(col, "\n").to_numpy(zero_copy_only=False), dtype=np.int64
            )
            if not rectangular:
                inside_delims += int(pc.sum(pc.count_substring(col, dialect.delimiter)).as_py() or 0)
    records = n + len(skipped)
    has_cr = b"\r" in utf8
    if rectangular and not has_quotes and not has_cr:
        # Arrow turned every line into exactly one ncols-wide row: line = row + 2.
        return np.arange(2, n + 2, dtype=np.int64), [], []
    newlines_ok = utf8.count(b"\n") == 1 + records + int(inside_nl.sum()) and (
        not has_cr or utf8.count(b"\r") == utf8.count(b"\r\n")
    )
    delims_ok = True
    if not rectangular:
        # Over-long rows were reported; short ones were silently padded: count delimiters to find out.
        delim = dialect.delimiter.encode("ascii")
        expected = (
            utf8.count(delim, 0, header_end)
            + (ncols - 1) * int((~blank).sum())
            + sum(saw - 1 for _, saw in skipped)
            + inside_delims
        )
        delims_ok = utf8.count(delim) == expected
    if newlines_ok and delims_ok and not (skipped and has_quotes):
        if skipped:
            good = np.setdiff1d(np.arange(2, records + 2), np.array([r for r, _ in skipped]))
            return good.astype(np.int64), skipped, []
        if not n:
            return np.zeros(0, dtype=np.int64), [], []
        starts = 2 + np.concatenate(([0], np.cumsum(1 + inside_nl)[:-1]))
        return starts.astype(np.int64), [], []
    return _exact_lines(utf8, dialect, ncols, n)


def _exact_lines(
    utf8: bytes, dialect: CsvDialect, ncols: int, n: int
) -> tuple[np.ndarray, list[tuple[int, int]], list[tuple[int, int]]]:
    """Slow path: walk the records with :mod:`csv` to get each one's first physical line and width."""
    reader = csv.reader(
        io.StringIO(utf8.decode("utf-8"), newline=""),
        delimiter=dialect.delimiter,
        quotechar=dialect.quotechar,
    )
    lines: list[int] = []
    long_rows: list[tuple[int, int]] = []
    short_rows: list[tuple[int, int]] = []
    previous_end = 0
    for index, record in enumerate(reader):
        start = previous_end + 1
        previous_end = reader.line_num
        if index == 0:
            continue
        width = len(record)
        if width > ncols:
            long_rows.append((start, width))
            continue
        lines.append(start)
        if 0 < width < ncols and any(v.strip() for v in record):
            short_rows.append((start, width))
    if len(lines) != n:
        # The csv module and pandas' tokenizer disagree (exotic quoting): number rows by record instead.
        return np.arange(2, n + 2, dtype=np.int64), long_rows, short_rows
    return np.array(lines, dtype=np.int64), long_rows, short_rows


# ---------------------------------------------------------------------------------------------- values


def _convert(
    columns: list[pa.ChunkedArray],
    header: Sequence[str],
    lines: np.ndarray,
    dialect: CsvDialect,
    name: str,
    problems: list[RowProblem],
) -> tuple[pd.DataFrame, np.ndarray]:
    """Typed canonical columns and a mask of rows with at least one bad value."""
    position = {h: i for i, h in enumerate(header)}
    bad_rows = np.zeros(len(lines), dtype=bool)
    out: dict[str, object] = {}
    for source, canonical in dialect.header_map.items():
        if not dialect.reads(canonical):
            continue
        text = pc.utf8_trim_whitespace(columns[position[source]])
        empty_arrow = pc.equal(text, "")
        empty = np.asarray(empty_arrow.to_numpy(zero_copy_only=False), dtype=bool)
        kind = dialect.column_types.get(canonical, "string")
        if canonical in dialect.required_columns and empty.any():
            _report(
                problems, bad_rows, empty, text, lines, name, canonical, f"required column {source} is empty"
            )
        if kind == "string":
            values = pc.if_else(empty_arrow, pa.scalar(None, pa.string()), text) if empty.any() else text
            # pandas 3 gives its pyarrow-backed "str" dtype here (no copy); pandas 2 gives object.
            out[canonical] = values.to_pandas()
            continue
        if kind in ("integer", "number", "decimal"):
            converted, bad, reason = _numbers(text, empty, dialect, kind, source)
        else:
            converted, bad, reason = _dates(text, empty, dialect, kind, source)
        if bad.any():
            _report(problems, bad_rows, bad, text, lines, name, canonical, reason)
        out[canonical] = converted
    frame = pd.DataFrame(out)
    frame[SOURCE_LINE] = lines
    return frame, bad_rows


def _report(
    problems: list[RowProblem],
    bad_rows: np.ndarray,
    mask: np.ndarray,
    text: pa.ChunkedArray,
    lines: np.ndarray,
    name: str,
    column: str,
    reason: str,
) -> None:
    bad_rows |= mask
    index = np.flatnonzero(mask)
    values = text.take(pa.array(index)).to_pylist()
    problems.extend(
        RowProblem(name, line, column, str(value), reason)
        for line, value in zip(lines[index].tolist(), values, strict=True)
    )


def _numbers(
    text: pa.ChunkedArray, empty: np.ndarray, dialect: CsvDialect, kind: str, source: str
) -> tuple[pd.Series, np.ndarray, str]:
    cleaned = text
    if dialect.thousands:
        cleaned = pc.replace_substring(cleaned, dialect.thousands, "")
    if dialect.decimal != ".":
        cleaned = pc.replace_substring(cleaned, dialect.decimal, ".")
    nullified = (
        pc.if_else(pc.equal(cleaned, ""), pa.scalar(None, pa.string()), cleaned) if empty.any() else cleaned
    )
    try:
        # Fast path: the whole column casts; only "nan"/"inf" spellings remain to be refused below.
        numeric = pc.cast(nullified, pa.float64())
    except pa.ArrowInvalid:
        # Some value is not a number: keep plain decimal notation only and report the rest.
        plain = pc.match_substring_regex(nullified, _NUMBER)
        numeric = pc.cast(pc.if_else(plain, nullified, pa.scalar(None, pa.string())), pa.float64())
    values = np.array(numeric.to_numpy(zero_copy_only=False), dtype=np.float64)  # writable copy
    bad = ~empty & ~np.isfinite(values)
    if kind == "integer":
        with np.errstate(invalid="ignore"):
            bad |= ~np.isnan(values) & (values != np.floor(values))
        return (
            pd.Series(values).where(~bad).astype("Int64"),
            bad,
            f"value in column {source} is not a whole number",
        )
    reason = f"value in column {source} is not a number"
    if kind == "decimal":
        ok = ~bad & ~empty
        exact = np.full(len(values), None, dtype=object)
        if ok.any():
            strings = cleaned.filter(pa.array(ok)).to_pylist()
            exact[ok] = [Decimal(v) for v in strings]
        return pd.Series(exact, dtype=object), bad, reason
    values[bad] = np.nan
    return pd.Series(values), bad, reason


def _dates(
    text: pa.ChunkedArray, empty: np.ndarray, dialect: CsvDialect, kind: str, source: str
) -> tuple[pd.Series, np.ndarray, str]:
    fmt = dialect.date_format if kind == "date" else dialect.datetime_format
    # pandas parses strictly (Arrow's strptime would roll 2024-02-30 over into March). Exports repeat
    # a few dates many times, so a low-cardinality column is parsed once per distinct string; a column
    # of mostly distinct timestamps is parsed directly.
    sample = text.slice(0, _SAMPLE_ROWS)
    if len(text) > _SAMPLE_ROWS and len(pc.unique(sample)) * 2 < len(sample):
        distinct = pc.unique(text)
        parsed_distinct = pd.to_datetime(
            pd.Series(distinct.to_pandas()), format=fmt, errors="coerce"
        ).to_numpy()
        index = np.asarray(
            pc.index_in(text, value_set=distinct).to_numpy(zero_copy_only=False), dtype=np.int64
        )
        parsed = pd.Series(parsed_distinct[index])
    else:
        parsed = pd.to_datetime(pd.Series(text.to_pandas()), format=fmt, errors="coerce")
    bad = ~empty & parsed.isna().to_numpy()
    if kind == "datetime":
        parsed = parsed.dt.tz_localize(ZoneInfo(dialect.timezone), ambiguous="NaT", nonexistent="NaT")
    return parsed, bad, f"value in column {source} does not match the {kind} format {fmt!r}"
