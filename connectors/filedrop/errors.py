"""File-drop specific errors, each placed in the hub's tree (:mod:`hub.errors`) by what to do next.

ConfigError
└── HostKeyVerificationError   server key unknown or changed: refused before any credential left
TransientError
├── DownloadStalledError       no progress for stall_timeout: reconnect and start over
└── FileChangedError           the file changed while we looked at it: try again next poll
PermanentError
├── UnsafePathError            (connectors.filedrop.paths) a path would leave its root
└── RemoteFileMissingError     the file vanished from the server (taken by someone else?)
DataValidationError
└── FileRejectedError          the whole file is refused: move it to failed/, keep the old snapshot
    ├── TruncatedFileError     last line cut, row count short of the manifest or trailer
    ├── SchemaDriftError       headers differ from the template; carries the column diff
    └── FileEncodingError      bytes that are not valid in the template's encoding
"""

from __future__ import annotations

from typing import Any

from connectors.filedrop.paths import UnsafePathError
from hub.errors import ConfigError, DataValidationError, PermanentError, TransientError

__all__ = [
    "DownloadStalledError",
    "FileChangedError",
    "FileEncodingError",
    "FileRejectedError",
    "HostKeyVerificationError",
    "RemoteFileMissingError",
    "SchemaDriftError",
    "TruncatedFileError",
    "UnsafePathError",
]


class HostKeyVerificationError(ConfigError):
    """The server's host key is not the pinned one; the connection was closed before authentication."""


class DownloadStalledError(TransientError):
    """A download made no progress for ``stall_timeout`` seconds and was aborted."""


class FileChangedError(TransientError):
    """The remote file's size or mtime changed during the download; it is still being written."""


class RemoteFileMissingError(PermanentError):
    """The remote file is gone (moved or deleted by someone else)."""


class FileRejectedError(DataValidationError):
    """A whole file is refused. ``path`` names it; move it to ``failed/`` and keep the previous data."""

    def __init__(self, message: str, *, path: str, context: dict[str, Any] | None = None) -> None:
        super().__init__(message, context={"path": path, **(context or {})})
        self.path = path


class TruncatedFileError(FileRejectedError):
    """The file ends mid-line, or holds fewer rows than its manifest or trailer says."""


class FileEncodingError(FileRejectedError):
    """The file holds bytes that are invalid in the dialect's encoding."""


class SchemaDriftError(FileRejectedError):
    """The header differs from the template: ``missing`` and ``added`` hold the source header names."""

    def __init__(
        self, message: str, *, path: str, missing: list[str], added: list[str], duplicated: list[str]
    ) -> None:
        super().__init__(
            message, path=path, context={"missing": missing, "added": added, "duplicated": duplicated}
        )
        self.missing = missing
        self.added = added
        self.duplicated = duplicated
