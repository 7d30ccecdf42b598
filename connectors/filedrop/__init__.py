"""File drops: ERP CSV files fetched from SFTP servers (transport) and read per a template dialect.

- :mod:`connectors.filedrop.settings`: :class:`SftpSettings`, :class:`CsvDialect` (frozen, checked).
- :mod:`connectors.filedrop.sftp`: :class:`SftpDropClient` (list complete files, download, archive).
- :mod:`connectors.filedrop.csv_dialect`: :func:`read_csv_file` -> frame + row problems.
- :mod:`connectors.filedrop.errors` / :mod:`connectors.filedrop.paths`: errors and path checks.
"""

from connectors.filedrop.csv_dialect import (
    SOURCE_LINE,
    CsvReadResult,
    RowProblem,
    read_csv_bytes,
    read_csv_file,
)
from connectors.filedrop.errors import (
    DownloadStalledError,
    FileChangedError,
    FileEncodingError,
    FileRejectedError,
    HostKeyVerificationError,
    RemoteFileMissingError,
    SchemaDriftError,
    TruncatedFileError,
    UnsafePathError,
)
from connectors.filedrop.settings import CsvDialect, SftpSettings
from connectors.filedrop.sftp import DownloadedFile, Manifest, RemoteFile, SftpDropClient

__all__ = [
    "SOURCE_LINE",
    "CsvDialect",
    "CsvReadResult",
    "DownloadStalledError",
    "DownloadedFile",
    "FileChangedError",
    "FileEncodingError",
    "FileRejectedError",
    "HostKeyVerificationError",
    "Manifest",
    "RemoteFile",
    "RemoteFileMissingError",
    "RowProblem",
    "SchemaDriftError",
    "SftpDropClient",
    "SftpSettings",
    "TruncatedFileError",
    "UnsafePathError",
    "read_csv_bytes",
    "read_csv_file",
]
